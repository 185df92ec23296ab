"""What a run records about itself besides its numbers: the environment, and the summary it prints."""

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from ftlab.core.secrets import hide

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
    from ftlab.core.files import PROJECT_ROOT

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
