"""The sweep report's input: every run's results.json under the given folders, read and grouped."""

import json
import math
import os
import re
import sys
from pathlib import Path

NO_RESULTS = "no results.json found (expected a run directory or a multirun directory of runs)"
PRUNED_FOLDERS = {"wandb", "model", "checkpoints"}  # weights and logs: large, and never a run's own results.json
FAILING = ("failed", "running", "unreadable")  # "running" after a sweep: the run died before writing its status
# Cost columns: (table header, csv header, how one run gives it); a configuration shows the mean over its seeds.
COSTS = {
    "params": ("trainable params", "trainable_params", lambda run: lookup(run["results"], "params.trainable")),
    "memory_mb": ("peak train MB", "peak_train_memory_mb", lambda run: lookup(run["results"], "train.peak_memory_mb")),
    "eval_memory_mb": (
        "peak eval MB",
        "peak_eval_memory_mb",
        lambda run: lookup(run["results"], "eval.peak_memory_mb"),
    ),
    "saved_mb": ("saved MB", "saved_mb", lambda run: saved_mb(run)),
    "wall_s": (
        "wall s",
        "wall_s",
        lambda run: number(run["results"].get("wall_s")) or lookup(run["results"], "train.runtime_s"),
    ),
    "tokens_per_s": ("tokens/s", "tokens_per_s", lambda run: lookup(run["results"], "train.tokens_per_s")),
    # Compressed runs: the share of zero weights (quant=sparse_*), and for QAT the answer accuracy of the same
    # fine-tuning quantized after training: the PTQ configuration of the same report (summary.ptq_baseline), what QAT
    # is measured against. None: a column filled per configuration, not per run.
    "sparsity": ("sparsity", "sparsity", lambda run: lookup(run["results"], "compression.overall")),
    "ptq_accuracy": ("PTQ baseline accuracy", "ptq_answer_accuracy", None),
    # Preference and RL runs judged by a reward model (eval.reward_model): how often the tuned answer beat the base's.
    "reward_win_rate": (
        "reward win rate",
        "reward_win_rate",
        lambda run: lookup(run["results"], "eval.reward.win_rate"),
    ),
}


def collect_results(dirs: list[Path]) -> list[Path]:
    found = {}
    for root in dirs:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory (expected a run directory or a multirun directory)")
        before = len(found)
        for folder, subfolders, files in os.walk(root):
            # Hydra numbers a sweep's jobs without padding: 2_... before 10_...
            subfolders[:] = sorted(
                (d for d in subfolders if d not in PRUNED_FOLDERS),
                key=lambda name: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)],
            )
            if "results.json" in files:
                found.setdefault((Path(folder) / "results.json").resolve(), Path(folder) / "results.json")
        if len(found) == before and len(dirs) > 1:
            print(f"warning: {root}: {NO_RESULTS}", file=sys.stderr)
    if not found:
        raise FileNotFoundError(f"{', '.join(map(str, dirs))}: {NO_RESULTS}")
    return list(found.values())


def load_run(path: Path, metric: str) -> dict:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(results, dict):
            raise TypeError(f"expected a JSON object, found {type(results).__name__}")
    except (OSError, ValueError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        results = {"status": "unreadable", "reason": f"{path.name}: {type(err).__name__}: {err}"}
    value = number(lookup(results, metric))
    status = str(results.get("status") or ("ok" if value is not None else "unknown"))
    reason = str(results.get("reason") or "")
    if status == "running" and not reason:
        reason = "no final status: the run crashed or was killed before it finished (or is still going)"
    choices = {k: str(v) for k, v in (results.get("choices") or {}).items() if v is not None}
    overrides = task_overrides(results.get("overrides"))
    config = {**choices, **{k: v for k, v in overrides.items() if k not in choices}}
    return {
        "dir": path.parent,
        "name": str(results.get("run_name") or path.parent.name),
        "status": status,
        "reason": reason,
        "seed": results.get("seed"),
        "choices": choices,
        "overrides": overrides,
        "config": config,
        "results": results,
        "value": value,
    }


def task_overrides(overrides) -> dict:
    """Hydra's task overrides as key -> value, without the seed (it is what repeats a configuration) or hydra.*."""
    swept = {}
    for item in overrides if isinstance(overrides, list) else []:
        key, sep, value = str(item).partition("=")
        key = key.lstrip("+~")
        if sep and key != "seed" and not key.startswith("hydra."):
            swept[key] = value
    return swept


def lookup(results: dict, path: str):
    """A dotted path (train.tokens_per_s); a bare name is an eval metric (answer_accuracy), else a top-level key."""
    node = results if "." in path else results.get("eval")
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return results.get(path) if node is None and "." not in path else node


def number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def base_metric(metric: str) -> str:
    """The same measurement of the base model: answer_accuracy -> eval.base_answer_accuracy."""
    parent, _, name = ("eval." + metric if "." not in metric else metric).rpartition(".")
    return f"{parent}.base_{name}"


def differing_keys(runs: list) -> list:
    """The choices and overrides whose values differ between runs: what the sweep varied. A record without choices
    (unreadable, or cut short) says nothing about what varied."""
    readable = [r for r in runs if r["choices"]] or runs
    keys = dict.fromkeys(k for r in readable for k in r["config"])
    return [k for k in keys if len({r["config"].get(k) for r in readable}) > 1]


def saved_mb(run: dict) -> float | None:
    saved = number(lookup(run["results"], "saved.bytes"))
    if saved is None and (run["dir"] / "model").is_dir():
        saved = sum(f.stat().st_size for f in (run["dir"] / "model").rglob("*") if f.is_file())
    return None if saved is None else saved / 2**20


def fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def short(value: str) -> str:
    """An Optuna trial's 0.0016834549246003507 shown as 0.001683 (report.csv keeps every digit)."""
    try:
        return f"{float(value):.4g}" if len(value) > 8 else value
    except ValueError:
        return value


# Per-question values of a metric, from the run's answers.json (the one record of each question's outcome): what the
# paired verdicts resample. A loss is a ratio (summed over every question's tokens, divided by all tokens): its
# questions enter linearised, m + (loss_q - m * tokens_q) / mean tokens, whose mean is the run's loss m.
PER_QUESTION = {
    "answer_accuracy": ("tuned_correct", None),
    "base_answer_accuracy": ("base_correct", None),
    "loss": ("tuned_loss_sum", "tokens"),
    "base_loss": ("base_loss_sum", "tokens"),
    "reward.win_rate": ("reward_win", None),
}


def per_question(run: dict, metric: str) -> dict | None:
    """{question: value} of this run for the metric, None when the metric has no per-question record, answers.json
    is missing, or its values do not give the run's recorded number (answers of another evaluation). Worked out
    once per run: every comparison the run is in reads it."""
    cache = run.setdefault("per_question", {})
    if metric not in cache:
        cache[metric] = _per_question(run, metric)
    return cache[metric]


def _per_question(run: dict, metric: str) -> dict | None:
    fields = PER_QUESTION.get(metric.removeprefix("eval."))
    if fields is None:
        return None
    try:
        answers = json.loads((run["dir"] / "answers.json").read_text(encoding="utf-8")).get("answers")
    except (OSError, ValueError, AttributeError):
        return None
    field, tokens = fields
    if not isinstance(answers, list) or not answers or not all(isinstance(a, dict) and field in a for a in answers):
        return None
    values = [float(a[field]) if isinstance(a[field], bool) else number(a[field]) for a in answers]
    weights = [number(a.get(tokens)) for a in answers] if tokens else [1.0] * len(answers)
    linear = linearised(values, weights)
    if linear is None:
        return None
    recorded = number(lookup(run["results"], metric))  # the run's own number of this metric, not only the ranked one
    if recorded is None or not math.isclose(sum(linear) / len(linear), recorded, rel_tol=1e-6, abs_tol=1e-9):
        return None
    keyed = {}
    for answer, value in zip(answers, linear):  # a question asked twice is two questions
        key = str(answer.get("question"))
        while key in keyed:
            key += " (again)"
        keyed[key] = value
    return keyed


def linearised(values: list, weights: list) -> list | None:
    """A ratio's rows (sum(values) / sum(weights)) as numbers whose plain mean is that ratio, m + (v - m * w) / mean
    weight: what a bootstrap over rows resamples. None when a value or weight is missing or the weights sum to 0."""
    if None in values or None in weights or not sum(weights):
        return None
    mean, scale = sum(values) / sum(weights), len(values) / sum(weights)
    return [mean + (v - mean * w) * scale for v, w in zip(values, weights)]
