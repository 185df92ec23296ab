"""Runs per hour of a 12-run ablation (sweep=ablation: full, LoRA, prefix x float, 4-bit x 2 seeds) through Hydra's
basic launcher (one run after another, one process) and through `hydra/launcher=parallel` (joblib) at several job
counts, each the same command apart from the launcher. It prints a table and writes every figure to JSON."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import environment  # noqa: E402


def variants(jobs: list) -> dict:
    """label -> the launcher's overrides."""
    return {
        "basic": [],
        **{f"parallel n_jobs={n}": ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={n}"] for n in jobs},
    }


def run_sweep(overrides: list, sweep_dir: Path) -> dict:
    command = [sys.executable, "-m", "ftlab", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    results = [json.loads(p.read_text()) for p in sweep_dir.glob("*/results.json")]
    finished = [r for r in results if r.get("status") == "ok"]
    skipped = [r for r in results if r.get("status") == "skipped"]  # full fine-tuning of a 4-bit base
    return {
        "wall_s": wall,
        "returncode": done.returncode,
        "runs_finished": len(finished),
        "runs_skipped": len(skipped),
        "runs_per_hour": (len(finished) + len(skipped)) / wall * 3600,
        "train_s": [r["train"]["runtime_s"] for r in finished],
        "error": done.stderr.strip().splitlines()[-1] if done.returncode and done.stderr.strip() else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep", default="ablation", help="the sweep preset (12 runs: sweep=ablation)")
    parser.add_argument("--steps", type=int, default=40, help="train.max_steps of every run (-1: the full epochs)")
    parser.add_argument("--jobs", default="2,3,4", help="n_jobs values of the parallel launcher")
    parser.add_argument("--repeats", type=int, default=1, help="sweeps per launcher; the order alternates")
    parser.add_argument("--out", default="benchmarks/sweep_throughput.json")
    a = parser.parse_args(argv)
    common = [f"sweep={a.sweep}", f"train.max_steps={a.steps}", "tracking.backend=none"]
    launchers = variants([int(n) for n in a.jobs.split(",") if n])
    labels = list(launchers)
    runs = {label: [] for label in labels}
    with tempfile.TemporaryDirectory(prefix="ftlab-sweeps-") as tmp:
        for r in range(a.repeats):
            for i, label in enumerate(labels if r % 2 == 0 else labels[::-1]):
                print(f"[{label}] sweep {r + 1}/{a.repeats}", flush=True)
                runs[label].append(run_sweep([*common, *launchers[label]], Path(tmp) / f"{r}-{i}"))
    summary = {label: max(rs, key=lambda x: x["runs_per_hour"]) | {"sweeps": rs} for label, rs in runs.items()}
    lines = ["| launcher | wall s | runs finished (+ skipped) | runs/hour | vs basic |", "|---|---:|---:|---:|---:|"]
    base = summary["basic"]["runs_per_hour"]
    for label, s in summary.items():
        lines.append(
            f"| {label} | {s['wall_s']:.0f} | {s['runs_finished']} (+{s['runs_skipped']}) | "
            f"{s['runs_per_hour']:.0f} | x{s['runs_per_hour'] / base:.2f} |"
        )
    result = {**environment(), "command": " ".join(sys.argv), "overrides": common, "launchers": summary}
    Path(a.out).write_text(json.dumps(result, indent=2, default=str))
    print("\n" + "\n".join(lines) + f"\n\nfigures: {a.out}")


if __name__ == "__main__":
    main()
