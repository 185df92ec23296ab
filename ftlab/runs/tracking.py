"""The experiment tracker of a run (W&B): set up so it never prompts or hangs, fed, and closed."""

import netrc
import os
import sys
from pathlib import Path

from ftlab.core.secrets import hide, redact, secret_values


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


def start_wandb(cfg_dict: dict, wandb_cfg, run_dir: Path, run_name: str, group: str | None, tags: list):
    """The W&B run (or None when disabled); transformers' WandbCallback logs training curves into it."""
    mode = wandb_mode(wandb_cfg.mode)  # passed to wandb.init, not to the environment: each run of a sweep decides
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    argv, sys.argv = sys.argv, [hide(arg, secret_values(cfg_dict)) for arg in sys.argv]  # W&B records the command
    try:
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
    finally:
        sys.argv = argv


def log_eval(run, metrics: dict, sample_rows: list) -> None:
    """Final numbers into the run's summary (what W&B's tables and parallel-coordinates views compare across a
    sweep) and the base-vs-tuned answers as a table."""
    if run is None:
        return
    import wandb

    run.summary.update(metrics)
    columns = ["question", "expected", "base_answer", "tuned_answer", "tuned_correct"]
    run.log({"eval/answers": wandb.Table(columns=columns, data=sample_rows), **metrics})


def close_failed_run() -> None:
    """A run that failed mid-way closes its W&B run as failed, so the next run of a sweep starts a fresh one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=1)
