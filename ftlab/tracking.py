"""Run records: W&B set-up that never prompts or hangs, results.json written atomically, environment, summary."""

import json
import netrc
import os
import platform
import re
import shlex
import subprocess
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
    """Final numbers into the run's summary (what W&B's tables and parallel-coordinates views compare across a
    sweep) and the base-vs-tuned answers as a table."""
    if run is None:
        return
    import wandb

    run.summary.update(metrics)
    columns = ["question", "expected", "base_answer", "tuned_answer", "tuned_correct"]
    run.log({"eval/answers": wandb.Table(columns=columns, data=sample_rows), **metrics})


PACKAGES = ("ftlab", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "torchao",
            "tokenizers", "hydra-core", "omegaconf", "wandb")


def environment(task_overrides: list) -> dict:
    """What it takes to reproduce a run: the exact command, package versions, the project's commit, the hardware."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "command": shlex.join(sys.orig_argv),  # as typed; in a sweep, the sweep's command
        "rerun": shlex.join(["python", "-m", "ftlab", *task_overrides]),  # this run alone
        "packages": {name: installed(name) for name in PACKAGES},
        "python": sys.version.split()[0],
        "git": _git_state(),
        "hardware": {
            "platform": platform.platform(),
            "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
            "cpu_count": os.cpu_count(),
            "memory_gb": round(int(_proc_field("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1)
            if _proc_field("/proc/meminfo", "MemTotal") else None,
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        },
    }


def _git_state() -> dict | None:
    """The commit of the ftlab checkout and whether it had uncommitted changes (None outside a git checkout)."""
    from ftlab.paths import PROJECT_ROOT

    def git(*args):
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        return {"commit": head.stdout.strip(), "dirty": bool(git("status", "--porcelain").stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def write_json(path: Path, data: dict) -> None:
    """Written to a temporary name and renamed: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def print_summary(results: dict, run_dir: Path) -> None:
    e, t, p = results["eval"], results["train"], results["params"]
    r, c = e.get("reward") or {}, results.get("compression") or {}
    lines = [
        f"\n== ftlab run {results['run_name']}: {results['status']} ==",
        f"answer accuracy  base {e['base_answer_accuracy']:.2f} -> fine-tuned {e['answer_accuracy']:.2f}"
        if e.get("answer_accuracy") is not None else "",
        f"held-out loss    base {e['base_loss']:.3f} -> fine-tuned {e['loss']:.3f}  (perplexity {e['perplexity']:.1f})"
        if e.get("loss") is not None else "",
        f"pair accuracy    base {e['base_pairwise_accuracy']:.2f} -> trained {e['pairwise_accuracy']:.2f}  "
        f"(chosen scored above rejected, {e['pairs']} held-out pairs)" if "pairwise_accuracy" in e else "",
        f"reward model     base answers {r['base_mean']:.2f} -> fine-tuned {r['tuned_mean']:.2f}, "
        f"win rate {r['win_rate']:.2f}" if r else "",
        f"QAT vs PTQ       converted QAT model {e['answer_accuracy']:.2f}; the same fine-tuning quantized afterwards "
        f"{e['ptq_answer_accuracy']:.2f} (before quantizing {e['ptq_float_answer_accuracy']:.2f})"
        if "ptq_answer_accuracy" in e else "",
        f"sparsity         {c['overall']:.1%} of the block weights are zero ({c['pattern']}, {c['criterion']}); "
        f"{c['kernels']}" if "overall" in c else "",
        f"trainable params {p['trainable']:,} of {p['total']:,} ({100 * p['trainable'] / p['total']:.2f}%)",
        f"training         {t['steps']} steps, {t['runtime_s']:.0f} s, {t['tokens_per_s'] or 0:.0f} tokens/s, "
        f"peak memory {t['peak_memory_mb']:.0f} MB",
    ]
    if "sample" in results:
        s = results["sample"]
        lines += [f"Q: {s['question']}  (expected: {', '.join(s['expected'])})",
                  f"  base:       {s['base_answer']}", f"  fine-tuned: {s['tuned_answer']}"]
    lines.append(f"results: {run_dir / 'results.json'}")
    print("\n".join(line for line in lines if line), flush=True)
