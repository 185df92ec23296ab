"""Run records: Weights & Biases set-up that never prompts or hangs, results.json written atomically, environment."""

import json
import netrc
import os
import platform
import re
import sys
from pathlib import Path

# api_key, hf_token, secret, db_password... but not max_new_tokens or target_modules.
SECRET_KEY = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd)$", re.IGNORECASE)


def wandb_mode(requested: str) -> str:
    """auto: online only when credentials exist (a run must never prompt for a key or wait ~100 s for a network
    that is not there); offline writes the run under wandb/ for a later `wandb sync`."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    return "online" if logged_in else "offline"


def redact(obj):
    """A copy of a plain config with every value under a key/token/secret/password name hidden."""
    if isinstance(obj, dict):
        return {k: "***" if SECRET_KEY.search(str(k)) and v else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def start_wandb(cfg_dict: dict, wandb_cfg, run_dir: Path, run_name: str, group: str | None, tags: list):
    """The W&B run (or None when disabled); transformers' WandbCallback logs training curves into it."""
    mode = wandb_mode(wandb_cfg.mode)  # passed to wandb.init, not to the environment: each run of a sweep decides
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    return wandb.init(
        project=wandb_cfg.project,
        entity=wandb_cfg.entity,
        name=run_name,
        group=group,
        tags=tags,
        config=redact(cfg_dict),
        dir=str(run_dir),
        mode=mode,
        settings=wandb.Settings(console="off", init_timeout=30),
    )


def log_eval(run, metrics: dict, sample_rows: list) -> None:
    if run is None:
        return
    import wandb

    run.summary.update(metrics)
    columns = ["question", "expected", "base_answer", "tuned_answer", "tuned_correct"]
    run.log({"eval/answers": wandb.Table(columns=columns, data=sample_rows), **metrics})


def environment() -> dict:
    import torch
    import transformers
    import trl

    import peft

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
        "command": " ".join(sys.argv),
    }


def write_json(path: Path, data: dict) -> None:
    """Written to a temporary name and renamed: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
