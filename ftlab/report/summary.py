"""The sweep report's statistics: each configuration's mean and spread over seeds, what it forgot, and its paired
verdicts."""

import re
import statistics

from ftlab.report.collect import COSTS, base_metric, fmt, lookup, number, per_question, short
from ftlab.report.forgetting import forgetting

VERDICT_RULE = (
    "`Δ vs best` is each configuration's mean minus the best one's, paired over the same held-out questions and "
    "pooled over seeds, with its 95% interval (a bootstrap over seeds, then questions). `p (Holm)` is a paired test "
    "that counts both the seeds' spread and the questions', Holm-corrected over every comparison of this report. "
    "The verdict says `worse`/`better` when p < 0.05; otherwise `no detectable difference`, with the gap this design "
    "would detect 80% of the time and the seeds that would halve that gap. How to read them: docs/verdicts.md."
)


def mean_sd(values) -> tuple:
    values = [v for v in map(number, values) if v is not None]
    if not values:
        return None, None, 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values)


def summarise_configurations(runs: list, columns: list, metric: str, pairs: tuple = ()) -> tuple[list, list]:
    """One entry per configuration with ok runs that measured the metric, best first, each with its verdict against
    the best; and every comparison made (each against the best, then the pairs named), Holm-corrected together."""
    groups = {}
    for run in runs:
        if run["status"] == "ok" and run["value"] is not None:
            groups.setdefault(tuple(sorted(run["config"].items())), []).append(run)
    configs = []
    for members in groups.values():
        first = members[0]
        label = " · ".join(
            first["config"].get(k, "-")
            if k in first["choices"]
            else f"{k.rsplit('.', 1)[-1]}={short(first['config'].get(k, '-'))}"
            for k in columns
        ) or re.sub(r"-s\d+$", "", first["name"])
        mean, sd, n = mean_sd(m["value"] for m in members)
        loss_mean, loss_sd, _ = mean_sd(lookup(m["results"], "eval.loss") for m in members)
        configs.append(
            {
                "label": label,
                "runs": members,
                "columns": [first["config"].get(k, "") for k in columns],
                "strategy": first["choices"].get("strategy", "-"),
                "n": n,
                "mean": mean,
                "sd": sd,
                "values": [m["value"] for m in members],
                "loss_mean": loss_mean,
                "loss_sd": loss_sd,
                "base": mean_sd(lookup(m["results"], base_metric(metric)) for m in members)[0],
                **{key: mean_sd(map(of_run, members))[0] if of_run else None for key, (_, _, of_run) in COSTS.items()},
                **forgetting(members, label),  # the second axis: what it forgot (report/forgetting.py)
            }
        )
    for config in configs:
        config["ptq_accuracy"] = ptq_baseline(config, configs)
    configs.sort(key=lambda c: c["mean"], reverse=not lower_is_better(metric))
    return configs, compare_configurations(configs, metric, pairs)


def ptq_baseline(config: dict, configs: list) -> float | None:
    """A QAT configuration's yardstick: the mean answer accuracy of the PTQ configuration beside it (quant=ptq_*:
    the same scheme and group size applied after plain training; every other choice and override the same). None
    for other configurations, or when the report has no such PTQ runs."""
    scheme = compression_scheme(config, "qat")
    if scheme is None:
        return None
    rest = {k: v for k, v in config["runs"][0]["config"].items() if not k.startswith("quant")}
    twin = next(
        (
            c
            for c in configs
            if compression_scheme(c, "ptq") == scheme
            and {k: v for k, v in c["runs"][0]["config"].items() if not k.startswith("quant")} == rest
        ),
        None,
    )
    return mean_sd(lookup(run["results"], "eval.answer_accuracy") for run in twin["runs"])[0] if twin else None


def compression_scheme(config: dict, method: str) -> tuple | None:
    """(scheme, group size) of a configuration whose runs converted their weights with this method (qat or ptq)."""
    results = config["runs"][0]["results"]
    if lookup(results, "compression.method") != method:
        return None
    return lookup(results, "compression.scheme"), lookup(results, "compression.group_size")


def lower_is_better(metric: str) -> bool:
    return "loss" in metric or "perplexity" in metric


def compare_configurations(configs: list, metric: str, pairs: tuple = ()) -> list:
    """Each configuration against the best, then each named pair (labels): the paired statistics of
    report/verdicts.py, p-values Holm-corrected over all of them, and the verdict in words."""
    from ftlab.report import verdicts  # scipy: imported when a report is written, not by every run's callback

    named = [(find(configs, a), find(configs, b)) for a, b in pairs]
    wanted = [(c, configs[0]) for c in configs[1:]] + [p for p in named if p[0] is not p[1]]
    wanted = list({(id(a), id(b)): (a, b) for a, b in wanted}.values())  # a pair named twice is tested once
    # A configuration with one seed borrows the largest seed spread of those with several (verdicts.py says why).
    borrowed = verdicts.borrowed_seed_variance([paired_matrices(c, None, metric)[0] for c in configs])
    comparisons = []
    for a, b in wanted:
        matrices = paired_matrices(a, b, metric)
        result = verdicts.compare(*matrices, borrowed=borrowed)
        paired = matrices[0].shape[1] > 1
        comparisons.append(
            {"a": a, "b": b, "paired": paired, "named": any(a is x and b is y for x, y in named), **result}
        )
    for comparison, adjusted in zip(comparisons, verdicts.holm([c["p"] for c in comparisons])):
        comparison["p_holm"] = adjusted
        comparison["verdict"] = verdict_words(comparison, metric)
    for config in configs:
        config["vs_best"] = next((c for c in comparisons if c["a"] is config and c["b"] is configs[0]), None)
    return comparisons


def paired_matrices(a: dict, b: dict | None, metric: str) -> tuple:
    """(runs x questions) arrays of a and b (None: a alone) over the questions every run of both answered, in one
    order; one column of run-level numbers when a run has no per-question record of the metric."""
    import numpy as np

    arms = [a] if b is None else [a, b]
    per_run = [per_question(run, metric) for arm in arms for run in arm["runs"]]
    shared = set.intersection(*(set(q) for q in per_run)) if None not in per_run else set()
    if len(shared) < 2:
        return tuple(np.array([[run["value"]] for run in arm["runs"]]) for arm in arms)
    order = sorted(shared)
    rows = np.array([[values[q] for q in order] for values in per_run])
    return (rows,) if b is None else (rows[: len(a["runs"])], rows[len(a["runs"]) :])


def find(configs: list, name: str) -> dict:
    """The configuration a user named as the table shows it ('lora · 4bit'; 'lora 4bit' and 'lora,4bit' too)."""
    parts = [p for p in re.split(r"[·,/\s]+", name) if p]
    for config in configs:
        if [p for p in re.split(r"[·,/\s]+", config["label"]) if p] == parts:
            return config
    raise ValueError(f"--compare: no configuration {name!r} (the table has: {', '.join(c['label'] for c in configs)})")


def verdict_words(comparison: dict, metric: str) -> str:
    """What a reader can act on: better/worse with the corrected p, or what this design could have detected."""
    from ftlab.report.verdicts import ALPHA

    p, mde, halve = comparison["p_holm"], comparison["mde"], comparison["seeds_to_halve"]
    if p is None:
        return "seed spread unmeasured (1 seed per configuration): no verdict"
    better = (comparison["diff"] > 0) != lower_is_better(metric)
    if comparison["se"] == 0:  # nothing varies: not a statistical question
        if comparison["diff"] == 0:
            return "identical: every run of both gave the same results"
        return f"{'better' if better else 'worse'} on every question in every run (nothing varied)"
    if p < ALPHA:
        assumed = " (1 seed: the largest seed spread of the others assumed)" if 1 in comparison["seeds"] else ""
        return f"{'better' if better else 'worse'} ({p_text(p)}){assumed}"
    more = (
        f"; {halve} seeds per configuration would halve that"
        if halve
        else "; more seeds alone cannot halve that: the questions limit it"
    )
    return f"no detectable difference ({p_text(p)}): this design detects gaps of about {fmt(mde)} or more{more}"


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"
