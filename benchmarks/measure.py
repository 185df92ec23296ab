"""Timing, memory and reporting helpers of the benchmarks: timed train() calls, alternating repeats, the table."""

import ctypes
import gc
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from ftlab.train.trainer import peak_memory_mb, reset_peak_memory

ROOT = Path(__file__).resolve().parents[1]


def release_memory():
    """Drop what earlier runs left, so one run's peak is not another's leftovers (freed heap back to the OS)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def current_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.memory_allocated() / 2**20
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def timed_train(trainer) -> dict:
    """train() alone: wall time, the trainer's non-padding token count, peak memory (CUDA: allocated; CPU: process RSS
    since just before train(), and what train() added over the memory held before it). Checkpoint saves inside
    train() (ftlab's final resumable checkpoint) are timed too, so they can be told apart from the steps."""
    saving = {"s": 0.0, "count": 0}
    save = trainer._save_checkpoint

    def timed_save(*args, **kwargs):
        started = time.perf_counter()
        save(*args, **kwargs)
        saving["s"] += time.perf_counter() - started
        saving["count"] += 1

    trainer._save_checkpoint = timed_save  # measurement only: the same save runs
    release_memory()
    before = current_memory_mb()
    reset_peak_memory()
    start = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - start
    peak = peak_memory_mb()
    tokens = trainer.state.num_input_tokens_seen
    return {
        "steps": trainer.state.global_step,
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "checkpoints": saving["count"],
        "checkpoint_s": saving["s"],
        "tokens_per_s_without_checkpoints": tokens / (wall - saving["s"]),
        "peak_memory_mb": peak,
        "train_memory_mb": peak - before,
        "loss": out.training_loss,
    }


def run_case(name: str, variants: dict, repeats: int, warmup_steps: int, note: str = "") -> dict:
    """variants: label -> build(steps or None) returning (trainer, settings). A short untimed warm-up of each, then
    `repeats` timed runs each, the order alternating (A B C, C B A, ...) so no variant always runs first. A variant
    that fails is recorded with its error; the others go on."""
    labels = list(variants)
    runs = {label: [] for label in labels}
    settings, errors = {}, {}
    for label in labels if warmup_steps else []:
        try:
            variants[label](warmup_steps)[0].train()
        except Exception as err:  # e.g. a setting TRL refuses: recorded, not fatal
            errors[label] = f"{type(err).__name__}: {err}"
    for r in range(repeats):
        for label in labels if r % 2 == 0 else labels[::-1]:
            if label in errors:
                continue
            print(f"[{name}] {label}: run {r + 1}/{repeats}", flush=True)
            release_memory()
            started = time.perf_counter()
            try:
                trainer, settings[label] = variants[label](None)
            except Exception as err:
                errors[label] = f"{type(err).__name__}: {err}"
                continue
            setup = time.perf_counter() - started
            settings[label]["trainable_params"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
            runs[label].append({**timed_train(trainer), "setup_s": setup})
            del trainer
    summary = {}
    for label in labels:
        if label in errors:
            summary[label] = {"error": errors[label]}
            continue
        best = max(runs[label], key=lambda run: run["tokens_per_s"])
        summary[label] = {
            **best,
            "peak_memory_mb": max(run["peak_memory_mb"] for run in runs[label]),
            "train_memory_mb": max(run["train_memory_mb"] for run in runs[label]),
            "median_tokens_per_s": statistics.median(run["tokens_per_s"] for run in runs[label]),
            "settings": settings[label],
            "runs": runs[label],
        }
    return {"note": note, "variants": summary}


def ratio(case: dict, a: str, b: str) -> dict | None:
    x, y = case["variants"][a], case["variants"][b]
    if "error" in x or "error" in y:
        return None
    return {
        "of": f"{a} / {b}",
        "tokens_per_s": x["tokens_per_s"] / y["tokens_per_s"],
        "median_tokens_per_s": x["median_tokens_per_s"] / y["median_tokens_per_s"],
        "peak_memory": x["peak_memory_mb"] / y["peak_memory_mb"],
        "wall_s": x["wall_s"] / y["wall_s"],
    }


def environment() -> dict:
    import accelerate
    import datasets
    import peft
    import transformers
    import trl

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "datasets": datasets.__version__,
            "accelerate": accelerate.__version__,
        },
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "ftlab_git": git.stdout.strip() or None,
    }


def table(cases: dict) -> str:
    """The markdown table of every variant, then one line per ratio."""
    lines = [
        "| case | variant | steps | tokens | wall s | tokens/s | peak MB | train +MB | ckpt s | MFU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for name, case in cases.items():
        if "skipped" in case:
            notes.append(f"{name}: skipped ({case['skipped']})")
            continue
        for label, v in case["variants"].items():
            if "error" in v:
                lines.append(f"| {name} | {label} | failed: {v['error'][:80]} ||||||||")
                continue
            mfu = f"{v['mfu']:.1%}" if "mfu" in v else ""
            lines.append(
                f"| {name} | {label} | {v['steps']} | {v['tokens']} | {v['wall_s']:.2f} | "
                f"{v['tokens_per_s']:.0f} | {v['peak_memory_mb']:.0f} | {v['train_memory_mb']:.0f} | "
                f"{v['checkpoint_s']:.2f} | {mfu} |"
            )
        for key, r in case.items():
            if isinstance(r, dict) and "of" in r:
                notes.append(
                    f"{name} {key} ({r['of']}): tokens/s x{r['tokens_per_s']:.2f} (median "
                    f"x{r['median_tokens_per_s']:.2f}), peak memory x{r['peak_memory']:.2f}, "
                    f"wall time x{r['wall_s']:.2f}"
                )
    return "\n".join(lines + [""] + notes)
