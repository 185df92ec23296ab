"""The report's second axis: what each configuration forgot while it learned. Its runs judged the same retention rows
(data.retention) and harness questions (eval.harness.tasks) with the base and the tuned model, and wrote both per row
into retention.json (eval/forgetting.py); here each change, tuned minus base, is pooled over the configuration's seeds
and paired row by row, with the 95% interval of report/verdicts.py (seeds resampled, then rows)."""

import json
import sys

from ftlab.report.collect import linearised, lookup, number, per_question

RETENTION = "retention Δloss"
FORGETTING_RULE = (
    f"`{RETENTION}` and `<task> Δ<metric>` are what fine-tuning cost outside its own task: the change from the base "
    "model to the tuned one on the same rows, on the retention set's token loss (data.retention; positive = "
    "forgotten: general text became less likely) and on each lm-eval-harness task's score (eval.harness.tasks; "
    "negative = forgotten). Each is the mean over the configuration's seeds and rows (token-weighted for the loss), "
    "with a 95% interval that resamples the seeds, then the rows. `–`: not measured, or its runs measured different "
    "rows (a warning named them). learned_vs_forgotten.png sets them against the answer accuracy gain."
)


def forgetting(runs: list, label: str) -> dict:
    """One configuration's {"forgetting": {column: {"change", "ci"}}, "gain": {"change", "ci"} or None}: a column per
    measure its runs took (RETENTION, "<task> Δ<metric>"), and where there is one, the answer accuracy gain on the
    held-out questions (what the plot sets it against)."""
    per_run = {}
    for run in runs:
        for column, rows in changes(run).items():
            per_run.setdefault(column, []).append((run, rows))
    measured = {column: pooled(label, column, rows) for column, rows in per_run.items()}
    measured = {column: m for column, m in measured.items() if m}
    gain = pooled(label, "answer accuracy gain", [(run, accuracy_gain(run)) for run in runs]) if measured else None
    return {"forgetting": measured, "gain": gain}


def changes(run: dict) -> dict:
    """{column: per-row changes, tuned minus base} of one run's retention.json. The retention rows are linearised
    (collect.linearised), so that their plain mean is the token-weighted change results.json records."""
    try:
        items = json.loads((run["dir"] / "retention.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a run that measured no forgetting has no retention.json
        return {}
    out = {}
    if items.get("retention"):
        rows = items["retention"]
        diffs = [r["tuned_loss_sum"] - r["base_loss_sum"] for r in rows]
        out[RETENTION] = linearised(diffs, [r["tokens"] for r in rows])
    wanted = lookup(run["results"], "harness.metric")
    for task, metrics in (items.get("harness") or {}).items():
        metric = wanted if wanted in metrics else next(iter(metrics), None)  # a task without acc: its first metric
        if metric:
            out[f"{task} Δ{metric}"] = [t - b for b, t in zip(metrics[metric]["base"], metrics[metric]["tuned"])]
    return out


def accuracy_gain(run: dict) -> list | None:
    """Per held-out question, tuned_correct - base_correct (answers.json); the run's two accuracies when it has no
    per-question record of both."""
    tuned, base = per_question(run, "answer_accuracy"), per_question(run, "base_answer_accuracy")
    if tuned and base and tuned.keys() == base.keys():
        return [tuned[q] - base[q] for q in sorted(tuned)]
    accuracy, before = (number(lookup(run["results"], m)) for m in ("answer_accuracy", "base_answer_accuracy"))
    return None if accuracy is None or before is None else [accuracy - before]


def pooled(label: str, column: str, per_run: list) -> dict | None:
    """{"change", "ci"} over the runs x rows of (run, rows) pairs, None when no run measured it. Runs that measured
    different numbers of rows (another retention file, another harness limit) cannot be paired row by row: the
    configuration gets no number, and a warning names the runs."""
    import numpy as np

    from ftlab.report.verdicts import bootstrap_interval

    per_run = [(run, rows) for run, rows in per_run if rows]
    if not per_run:
        return None
    if len({len(rows) for _, rows in per_run}) > 1:
        counts = ", ".join(f"{run['dir']}: {len(rows)}" for run, rows in per_run)
        print(f"warning: {label}: {column} left out: its runs measured different rows ({counts})", file=sys.stderr)
        return None
    values = np.array([rows for _, rows in per_run], float)
    # Against zeros: the interval of the change itself, resampled as every verdict's is (seeds, then rows).
    return {"change": float(values.mean()), "ci": bootstrap_interval(values, np.zeros_like(values))}


def forgetting_columns(configs: list) -> list:
    """The measures some configuration of the report took, in the order they were first met."""
    return list(dict.fromkeys(column for c in configs for column in c["forgetting"]))


def csv_name(column: str) -> str:
    """report.csv's name of a column: "retention Δloss" -> retention_loss_change."""
    return column.replace(" Δ", "_") + "_change"
