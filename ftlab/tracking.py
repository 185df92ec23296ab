"""Run records: W&B set-up that never prompts or hangs, results.json written atomically, environment, summary."""

import json
import logging
import netrc
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

# api_key, hf_token, secret, db_password... but not max_new_tokens or target_modules.
SECRET_KEY = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd)$", re.IGNORECASE)
# WANDB_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, PGPASSWORD, ...: their values are hidden wherever ftlab writes.
SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)


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


def secret_values(plain_cfg: dict) -> set:
    """The strings to hide in anything written: values under secret-named config keys (a hub_token passed to the
    trainer, say) and the values of secret-named environment variables."""
    found = {v for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v) >= 8}

    def walk(obj):
        for key, value in obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ():
            if SECRET_KEY.search(str(key)) and isinstance(value, (str, int)) and len(str(value)) >= 4:
                found.add(str(value))
            else:
                walk(value)

    walk(plain_cfg)
    return found


def hide(text: str, secrets: set) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def hide_in_files(paths, secrets: set) -> None:
    """Hydra saves the composed config and the command-line overrides (.hydra/, multirun.yaml) before ftlab runs:
    rewrite them with the secrets hidden."""
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if any(secret in text for secret in secrets):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(hide(text, secrets), encoding="utf-8")
            os.replace(tmp, path)


# Where Hydra's launchers and sweepers print each job's overrides, the values typed on the command line included.
LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher", "hydra._internal.core_plugins.basic_sweeper",
                    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
                    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
                    "hydra_plugins.hydra_optuna_sweeper._impl")


class HideSecretsInLogs(logging.Filter, Callback):
    """A Hydra callback (conf/config.yaml: hydra.callbacks): before a sweep launches, the launchers' log lines
    ("#0 : key=value ...") get secret values (secret-named overrides, secret environment variables) hidden."""

    def __init__(self):
        super().__init__()
        self.secrets = set()

    def on_multirun_start(self, config, **kwargs):
        typed = [o.split("=", 1) for o in config.hydra.overrides.task if "=" in o]
        self.secrets = secret_values({k.lstrip("+~").rsplit(".", 1)[-1]: v for k, v in typed})
        for name in LAUNCHER_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def filter(self, record):
        if self.secrets:
            record.msg, record.args = hide(record.getMessage(), self.secrets), ()
        return True


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


PACKAGES = ("ftlab", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "torchao",
            "tokenizers", "hydra-core", "omegaconf", "wandb")


def environment(task_overrides: list, secrets: set = frozenset()) -> dict:
    """What it takes to reproduce a run: the exact command (secrets hidden), package versions, the project's
    commit, the hardware."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "command": hide(shlex.join(sys.orig_argv), secrets),  # as typed; in a sweep, the sweep's command
        "rerun": hide(shlex.join(["python", "-m", "ftlab", *task_overrides]), secrets),  # this run alone
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


def close_failed_run() -> None:
    """A run that failed mid-way closes its W&B run as failed, so the next run of a sweep starts a fresh one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=1)
