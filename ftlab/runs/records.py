"""What a run records about itself: results.json's record of what the recipe measured, the environment it ran in,
the tracker's final numbers, the answers, the seconds per phase, and the summary it prints."""

import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ftlab.core.console import into_log
from ftlab.core.distributed import describe
from ftlab.core.files import write_json

PACKAGES = (
    "ftlab",
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "bitsandbytes",
    "torchao",
    "tokenizers",
    "hydra-core",
    "omegaconf",
    "wandb",
    # optional: what eval.harness and tracking.backend used where chosen (None where not installed)
    "lm-eval",
    "mlflow-skinny",
    "tensorboard",
    "trackio",
)


class Phases(dict):
    """Seconds per phase of a run (results.json's phases_s: what a sweep pays for each run besides training), each
    timed by `with phase("data"): ...`."""

    @contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        with into_log():  # what libraries print (trackio's notices, ...) goes to ftlab.log; ftlab logs, not prints
            yield
        self[name] = time.perf_counter() - started
        logging.getLogger("ftlab").info("%-14s %6.1f s", name.replace("_", " "), self[name])  # a line per phase


def run_record(
    cfg,
    run,
    trainer,
    args,
    trained,
    judge,
    *,
    base: dict,
    tuned: dict,
    validation_losses: tuple,
    peak_memory_mb: tuple,
    params: dict,
    compression: dict | None,
    data: dict,
    examples: int,
    answers: list,
    forgetting: dict,
) -> dict:
    """results.json's record of what the recipe did: the numbers of training (trained: the Trainer's TrainOutput)
    and of the judge's evaluation before and after (validation_losses and peak_memory_mb: each before, after)."""
    from ftlab.train.trainer import loss_history, performance, reference_model

    history = loss_history(trainer.state.log_history)
    runtime, tokens = run.phase["train"], trainer.state.num_input_tokens_seen
    base_validation, validation = validation_losses
    record = {
        "params": params,
        "train": {
            "loss": trained.training_loss,
            "final_logged_loss": history["train"][-1][1] if history["train"] else None,
            "steps": trainer.state.global_step,
            "runtime_s": runtime,
            "tokens": tokens,
            "tokens_per_s": tokens / runtime if runtime else None,
            "peak_memory_mb": peak_memory_mb[0],
            "examples": examples,
        },
        "eval": {
            **judge.record(base, tuned),
            **(
                {"base_validation_loss": base_validation, "validation_loss": validation}
                if validation is not None
                else {}
            ),
            "peak_memory_mb": peak_memory_mb[1],
        },
        **forgetting,  # "retention" and "harness", where the run measured them (eval/forgetting.py)
        "compression": compression,
        "performance": performance(args, trainer.model),
        "phases_s": {name: round(seconds, 3) for name, seconds in run.phase.items()},
        "distributed": describe(cfg.dist.name, trainer),
        "history": history,
        "reference": reference_model(cfg, cfg.objective.trainer),
        "data": data,
        "environment": run.environment,
    }
    if answers:
        sample = next((a for a in answers if a["question"] == cfg.eval.sample_question), answers[0])
        record["sample"] = {k: sample[k] for k in ("question", "expected", "base_answer", "tuned_answer")}
    return record


def tracker_metrics(results: dict) -> dict:
    """The final numbers the tracker's summary compares across runs."""
    e, c = results["eval"], results["compression"] or {}
    metrics = {f"eval/{k}": v for k, v in e.items() if isinstance(v, (int, float))}
    metrics |= {f"eval/reward_{k}": v for k, v in (e.get("reward") or {}).items() if isinstance(v, float)}
    metrics |= {f"final/{k}": v for k, v in results["train"].items() if v is not None}
    metrics |= {
        "params/trainable": results["params"]["trainable"],
        "params/total": results["params"]["total"],
        "saved/bytes": results["saved"]["bytes"],
    }
    metrics |= {f"retention/{k}": v for k, v in (results.get("retention") or {}).items() if isinstance(v, float)}
    harness = results.get("harness") or {}
    for side in ("base", "tuned"):
        for task, scores in (harness.get(side) or {}).items():
            metrics |= {f"harness/{side}/{task}/{m}": v for m, v in scores.items() if v is not None}
    return metrics | ({"sparsity/overall": c["overall"]} if "overall" in c else {})


def saved(folder: Path) -> dict:
    return {"path": folder.name, "bytes": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())}


def write_answers(run_dir: Path, answers: list, num_failures: int) -> None:
    """answers.json, every held-out question with both models' answers; failures.json, the worst wrong ones."""
    from ftlab.eval.answers import worst_failures

    write_json(run_dir / "answers.json", {"answers": answers})
    write_json(run_dir / "failures.json", {"failures": worst_failures(answers, num_failures)})


def environment(task_overrides: list) -> dict:
    """What it takes to reproduce a run: the exact command, package versions, the project's commit, the hardware.
    (Secret values in the commands are hidden where they are written: core/secrets.py.)"""
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
            if _proc_field("/proc/meminfo", "MemTotal")
            else None,
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


def ci(interval: list, digits: int) -> str:
    low, high = interval
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def retention_lines(results: dict) -> list:
    """The summary's second half: what the tuned model kept of the base's general ability."""
    k, h = results.get("retention"), results.get("harness")
    lines = []
    if k:
        lines.append(
            f"retention loss   base {k['base_loss']:.3f} -> fine-tuned {k['loss']:.3f}, change "
            f"{k['loss_change']:+.3f} {ci(k['loss_change_ci'], 3)}  (higher: forgotten; {k['rows']} general rows)"
        )
    for task, scores in (h or {}).get("tuned", {}).items():
        metric = h["metric"] if h["metric"] in scores else next(iter(scores))
        change = h["change"].get(task, {}).get(metric)
        lines.append(
            f"{task:<16} base {h['base'][task][metric]:.2f} -> fine-tuned {scores[metric]:.2f} {metric}"
            + (f", change {change['change']:+.2f} {ci(change['ci'], 2)}" if change else "")
            + "  (lm-eval-harness)"
        )
    return lines


def summary(results: dict, run_dir: Path) -> str:
    """What a finished run prints at its end: its numbers before and after, the sample question, where it is."""
    e, t, p = results["eval"], results["train"], results["params"]
    r, c = e.get("reward") or {}, results.get("compression") or {}
    lines = [
        f"\n== ftlab run {results['run_name']}: {results['status']} ==",
        f"answer accuracy  base {e['base_answer_accuracy']:.2f} {ci(e['base_answer_accuracy_ci'], 2)} -> fine-tuned "
        f"{e['answer_accuracy']:.2f} {ci(e['answer_accuracy_ci'], 2)}  (95% intervals over {e['questions']} questions)"
        if e.get("answer_accuracy") is not None
        else "",
        f"held-out loss    base {e['base_loss']:.3f} {ci(e['base_loss_ci'], 3)} -> fine-tuned {e['loss']:.3f} "
        f"{ci(e['loss_ci'], 3)}  (perplexity {e['perplexity']:.1f})"
        if e.get("loss") is not None
        else "",
        f"pair accuracy    base {e['base_pairwise_accuracy']:.2f} -> trained {e['pairwise_accuracy']:.2f}  "
        f"(chosen scored above rejected, {e['pairs']} held-out pairs)"
        if "pairwise_accuracy" in e
        else "",
        f"reward model     base answers {r['base_mean']:.2f} -> fine-tuned {r['tuned_mean']:.2f}, "
        f"win rate {r['win_rate']:.2f}"
        if r
        else "",
        f"sparsity         {c['overall']:.1%} of the block weights are zero ({c['pattern']}, {c['criterion']}); "
        f"{c['kernels']}"
        if "overall" in c
        else "",
        *retention_lines(results),
        f"trainable params {p['trainable']:,} of {p['total']:,} ({100 * p['trainable'] / p['total']:.2f}%)",
        f"training         {t['steps']} steps, {t['runtime_s']:.0f} s, {t['tokens_per_s'] or 0:.0f} tokens/s, "
        f"peak memory {t['peak_memory_mb']:.0f} MB",
    ]
    if "sample" in results:
        s = results["sample"]
        lines += [
            f"Q: {s['question']}  (expected: {', '.join(s['expected'])})",
            f"  base:       {s['base_answer']}",
            f"  fine-tuned: {s['tuned_answer']}",
        ]
    lines.append(f"results: {run_dir / 'results.json'}")
    return "\n".join(line for line in lines if line)


def sweep_line(results: dict, position: str) -> str:
    """A sweep's line for one of its runs: where it stands in the sweep, its status and its numbers (or why not)."""
    e, head = results.get("eval") or {}, f"[{position}] {results['run_name']}: {results['status']}"
    if results["status"] != "ok":
        return f"{head}: {results.get('reason', '')}"
    numbers = [
        f"accuracy {e['base_answer_accuracy']:.2f} -> {e['answer_accuracy']:.2f}" if "answer_accuracy" in e else "",
        f"loss {e['base_loss']:.3f} -> {e['loss']:.3f}" if e.get("loss") is not None else "",
        f"{results['wall_s']:.0f} s",
    ]
    return f"{head}, " + ", ".join(n for n in numbers if n)


def finished_results(run_dir: Path, done_to: str) -> dict:
    """A finished run's results, or SystemExit with one line: only a finished run is pushed (or exported)."""
    from ftlab.core.files import is_run_dir

    if not is_run_dir(run_dir) or not (run_dir / "results.json").is_file():
        raise SystemExit(f"error: {run_dir}: not a finished ftlab run directory (expected results.json and model/)")
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    if results.get("status") != "ok":
        reason = f": {results['reason']}" if results.get("reason") else ""
        raise SystemExit(f"error: {run_dir}: status {results.get('status')}{reason}; only a finished run is {done_to}")
    return results
