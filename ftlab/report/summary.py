"""The sweep report's statistics: each configuration's mean and spread over seeds, and its verdict."""

import re
import statistics

from ftlab.report.collect import COSTS, base_metric, fmt, lookup, number, short

SPREAD_RULE = (
    "`vs best` compares each configuration's mean with the best one's (highest; lowest for a loss or perplexity). Both "
    "with at least 2 seeds: a gap no larger than the sum of their sample standard deviations (their ±1 sd intervals "
    "overlap) is `≈ best (within seed spread)`: these seeds cannot tell the two apart. A larger gap is shown signed "
    "as `beyond spread`; with 1 seed on either side the spread is unknown and the gap is marked so."
)


def mean_sd(values) -> tuple:
    values = [v for v in map(number, values) if v is not None]
    if not values:
        return None, None, 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values)


def summarise_configurations(runs: list, columns: list, metric: str) -> list:
    """One entry per configuration with ok runs that measured the metric, best first, each with its verdict."""
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
        )
        mean, sd, n = mean_sd(m["value"] for m in members)
        loss_mean, loss_sd, _ = mean_sd(lookup(m["results"], "eval.loss") for m in members)
        configs.append(
            {
                "label": label or re.sub(r"-s\d+$", "", first["name"]),
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
            }
        )
    for config in configs:
        config["ptq_accuracy"] = ptq_baseline(config, configs)
    configs.sort(key=lambda c: c["mean"], reverse=not lower_is_better(metric))
    for config in configs:
        config["vs_best"] = spread_verdict(config, configs[0])
    return configs


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


def spread_verdict(config: dict, best: dict) -> str:
    """See SPREAD_RULE: a gap inside the seeds' spread is not a result."""
    if config is best:
        return "best"
    gap = config["mean"] - best["mean"]
    signed = ("+" if gap >= 0 else "") + fmt(gap)
    if config["n"] < 2 or best["n"] < 2:
        return f"{signed} (1 seed: spread unknown)"
    if abs(gap) <= config["sd"] + best["sd"] + 1e-12:
        return "≈ best (within seed spread)"
    return f"{signed} (beyond spread)"
