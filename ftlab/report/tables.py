"""The sweep report's text: the Markdown report, the per-configuration and per-run CSVs, the Optuna search section."""

import csv
import io
import math

from ftlab.report.collect import COSTS, fmt, short
from ftlab.report.forgetting import FORGETTING_RULE, csv_name, forgetting_columns
from ftlab.report.summary import VERDICT_RULE, lower_is_better, p_text


def configuration_tables(configs: list, columns: list, metric: str) -> tuple:
    """(headers, rows) as people read them (0.750 ± 0.071, 1.2M), and as numbers for report.csv and W&B."""
    # Nothing varied but the seed: the one row is named after its runs. A cost no run measured is left out.
    costs = [k for k in COSTS if any(c[k] is not None for c in configs)]
    forgot = forgetting_columns(configs)  # none in a sweep that measured no forgetting
    headers = [
        *(columns or ["configuration"]),
        "n",
        f"{metric} (mean ± sd)",
        f"base {metric}",
        "eval loss (mean ± sd)",
        *(COSTS[k][0] for k in costs),
        *forgot,
        "Δ vs best [95% CI]",
        "p (Holm)",
        "verdict",
    ]
    rows = [
        [
            *(map(short, c["columns"]) if columns else [c["label"]]),
            c["n"],
            with_sd(c["mean"], c["sd"]),
            fmt(c["base"]),
            with_sd(c["loss_mean"], c["loss_sd"]),
            *(human_count(c[k]) if k == "params" else fmt(c[k]) for k in costs),
            *(change_cell(c["forgetting"].get(k)) for k in forgot),
            *(comparison_cells(c["vs_best"]) if c["vs_best"] else ["–", "–", "best"]),
        ]
        for c in configs
    ]
    raw_headers = [
        "configuration",
        *columns,
        "n",
        f"{metric}_mean",
        f"{metric}_sd",
        f"base_{metric}",
        "eval_loss_mean",
        "eval_loss_sd",
        *(COSTS[k][1] for k in costs),
        *(csv_name(k) + end for k in forgot for end in ("", "_ci_low", "_ci_high")),
        *COMPARISON_CSV,
    ]
    raw = ["n", "mean", "sd", "base", "loss_mean", "loss_sd", *costs]
    return (headers, rows), (
        raw_headers,
        [
            [
                c["label"],
                *c["columns"],
                *(c[k] for k in raw),
                *(v for k in forgot for v in change_numbers(c["forgetting"].get(k))),
                *comparison_numbers(c["vs_best"] or {"verdict": "best"}),
            ]
            for c in configs
        ],
    )


def change_cell(change: dict | None) -> str:
    """A forgetting measure as the tables show it: +0.123 [0.100, 0.150], or – when not measured."""
    return with_interval(change["change"], change["ci"]) if change else "–"


def change_numbers(change: dict | None) -> list:
    """The same as numbers: change, ci low, ci high (blank when not measured)."""
    return [change["change"], *change["ci"]] if change else [None, None, None]


COMPARISON_CSV = [
    "diff_vs_best",
    "diff_ci_low",
    "diff_ci_high",
    "p_value",
    "p_holm",
    "mde",
    "seeds_to_halve",
    "verdict",
]


def comparison_cells(comparison: dict) -> list:
    """Δ [95% CI], the Holm-corrected p, the verdict: as the tables show them."""
    p = comparison["p_holm"]
    return [
        with_interval(comparison["diff"], comparison["ci"]),
        "–" if p is None else p_text(p).removeprefix("p = "),
        comparison["verdict"],
    ]


def comparison_numbers(comparison: dict) -> list:
    """The same as numbers (report.csv, comparisons.csv, W&B)."""
    low, high = comparison.get("ci") or (None, None)
    keys = ("p", "p_holm", "mde", "seeds_to_halve", "verdict")
    return [comparison.get("diff"), low, high, *(comparison.get(k) for k in keys)]


def comparisons_table(comparisons: list) -> tuple:
    """Every comparison of the report, A vs B, as (headers, rows) and as CSV (headers, rows)."""
    headers = ["A", "B", "seeds", "questions", "Δ (A - B) [95% CI]", "p (Holm)", "verdict (A vs B)"]
    rows = [
        [
            c["a"]["label"],
            c["b"]["label"],
            "/".join(map(str, c["seeds"])),
            c["questions"] if c["paired"] else "–",
            *comparison_cells(c),
        ]
        for c in comparisons
    ]
    csv_headers = [
        "a",
        "b",
        "seeds_a",
        "seeds_b",
        "questions",
        "diff",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "mde",
        "seeds_to_halve",
        "verdict",
    ]
    csv_rows = [
        [c["a"]["label"], c["b"]["label"], *c["seeds"], c["questions"] if c["paired"] else None, *comparison_numbers(c)]
        for c in comparisons
    ]
    return (headers, rows), (csv_headers, csv_rows)


def with_interval(value, ci) -> str:
    """+0.123 [0.100, 0.150]: a change and its 95% interval."""
    return f"{'+' if value >= 0 else ''}{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def with_sd(mean, sd) -> str:
    return fmt(mean) if sd is None else f"{fmt(mean)} ± {fmt(sd)}"


def human_count(value) -> str:
    """1234567 -> 1.2M."""
    if value is None:
        return "–"
    size, suffix = next(((s, x) for s, x in ((1e9, "B"), (1e6, "M"), (1e3, "K")) if abs(value) >= s), (1, ""))
    return f"{value / size:.1f}{suffix}" if suffix else f"{value:.0f}"


def markdown_table(headers: list, rows: list) -> str:
    def cells(values):
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    return "\n".join([cells(headers), cells(["---"] * len(headers)), *map(cells, rows)])


def measured(results: dict) -> dict:
    """Every scalar a run recorded in its measurement sections, flattened: train.tokens_per_s, eval.loss, ..."""
    flat = {"wall_s": results["wall_s"]} if "wall_s" in results else {}
    for section in ("params", "train", "eval", "saved", "data"):
        values = results.get(section)
        if isinstance(values, dict):
            flat.update({f"{section}.{k}": v for k, v in values.items() if not isinstance(v, (dict, list))})
    return flat


def runs_csv(runs: list) -> tuple:
    """One row per run: where, what happened, every choice and override, every measurement."""
    choices = list(dict.fromkeys(k for r in runs for k in r["choices"]))
    overrides = list(dict.fromkeys(k for r in runs for k in r["overrides"]))
    metrics = list(dict.fromkeys(k for r in runs for k in measured(r["results"])))
    headers = [
        "run_dir",
        "run_name",
        "status",
        "reason",
        "seed",
        *choices,
        *(f"override:{k}" for k in overrides),
        *metrics,
    ]
    return headers, [
        [
            r["dir"],
            r["name"],
            r["status"],
            r["reason"],
            r["seed"],
            *(r["choices"].get(k) for k in choices),
            *(r["overrides"].get(k) for k in overrides),
            *(measured(r["results"]).get(k) for k in metrics),
        ]
        for r in runs
    ]


def csv_text(headers: list, rows: list) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([headers, *([("" if v is None else v) for v in r] for r in rows)])
    return out.getvalue()


def count_line(summary: dict) -> str:
    return f"{summary['runs']} runs: " + ", ".join(f"{n} {status}" for status, n in summary["statuses"].items())


def report_markdown(dirs, runs, configs, metric, summary, missing_plots, tuning=None) -> str:
    """report.md: the table, the comparisons the user named, the tuning stage of a fair ablation, the runs left
    out, an Optuna search, the plots."""
    lines = [
        "# ftlab sweep report",
        "",
        (
            f"Runs from {', '.join(f'`{d}`' for d in dirs)}. **{count_line(summary)}**; {len(configs)} configurations "
            "(runs that differ only in seed are one configuration, one row)."
        ),
        "",
        (
            f"Metric: `{metric}` ({'lower' if lower_is_better(metric) else 'higher'} is better), mean ± sample sd over "
            "seeds (`n`), best first. Base: the same metric for the base model before fine-tuning. MB = 2^20 bytes; "
            "peak train MB is the GPU's peak allocation on CUDA, the process's peak resident memory on CPU."
        ),
        "",
        VERDICT_RULE,
        "",
        *([FORGETTING_RULE, ""] if forgetting_columns(configs) else []),
        summary["table"] if configs else f"No finished run recorded `{metric}`.",
        "",
        *design_notes(summary["comparisons"]),
    ]
    if "named" in summary:
        lines += ["## Comparisons you named", "", summary["named"], ""]
    if tuning:
        lines += tuning_section(tuning)
    left_out = [r for r in runs if r["status"] != "ok" or r["value"] is None]
    if left_out:
        lines += ["## Runs not in the table", "", "| run | status | reason | directory |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {r['name']} | {r['status']} | {(r['reason'] or f'no {metric} recorded').replace('|', '/')} | "
            f"`{r['dir']}` |"
            for r in left_out
        ] + [""]
    lines += search_section(dirs, runs) + ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in summary["plots"]]
    return "\n".join(lines + [f"- `{name}` not drawn: {why}" for name, why in missing_plots.items()]) + "\n"


def design_notes(comparisons: list) -> list:
    """What the verdicts stand on: how many questions were paired, and where a run had no per-question record."""
    if not comparisons:
        return []
    paired = sorted({c["questions"] for c in comparisons if c["paired"]})
    notes = []
    if paired:
        notes.append(f"Paired over {' or '.join(map(str, paired))} held-out questions.")
    unpaired = [c for c in comparisons if not c["paired"]]
    if unpaired:
        notes.append(
            f"{len(unpaired)} comparison(s) used run-level numbers only (no per-question record of the metric in "
            "answers.json): a Welch test over seeds."
        )
    if any(c["p"] is None for c in comparisons):
        notes.append("With one seed per configuration the seed spread is unmeasured: add seeds (seed=1,2,3).")
    return [" ".join(notes), ""]


def search_section(dirs: list, runs: list) -> list:
    """Hydra's Optuna sweeper leaves optimization_results.yaml: its best params, and the run that had them."""
    import yaml

    lines = []
    for path in (d / "optimization_results.yaml" for d in dirs):
        try:
            found = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError, yaml.YAMLError) as err:
            lines += ["## Search", "", f"`{path}` could not be read: {type(err).__name__}: {err}", ""]
            continue
        if not isinstance(found, dict):
            continue
        lines += [f"## Search ({found.get('name', 'optuna')})", "", f"From `{path}`.", ""]
        # Single-objective: best_params/best_value; multi-objective: a Pareto front of {params, values}.
        for solution in found.get("solutions") or [
            {"params": found.get("best_params"), "values": [found.get("best_value")]}
        ]:
            params = solution.get("params") or {}
            matches = [
                r for r in runs if params and all(same_value(r["overrides"].get(k), v) for k, v in params.items())
            ]
            lines += [
                f"- best value: {', '.join(str(v) for v in solution.get('values') or [])}",
                f"- best params: {', '.join(f'`{k}={v}`' for k, v in params.items()) or '–'}",
            ]
            lines += [
                f"- run: `{r['dir']}` ({r['status']}); its config: `{r['dir'] / 'config.yaml'}`" for r in matches
            ] or ["- run: none of the collected runs has these overrides"]
            lines.append("")
    return lines


def same_value(recorded, wanted) -> bool:
    if recorded is None:
        return False
    try:  # the override says 0.003 or 3e-3; Optuna's yaml says 0.003
        return math.isclose(float(recorded), float(wanted), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(recorded).strip("'\"").lower() == str(wanted).lower()


def tuning_section(tuning: dict) -> list:
    """The report's account of the tuning stage: the budget, each arm's range and choice."""
    lines = [
        "## Tuning (stage 1)",
        "",
        (
            f"Every arm had {tuning['budget']} trials (learning rates log-spaced over its strategy's `lr_range`, one "
            f"seed), chosen by `{tuning['select']}` on the validation split of the training data; the held-out "
            "questions played no part. The table above compares the arms at their chosen rates."
        ),
        "",
    ]
    if not tuning["equal_budget"]:
        lines += ["**The arms did not all get the same number of trials**: see the counts below.", ""]
    lines += [
        "| arm | trials | learning rates tried | validation loss | chosen rate |",
        "| --- | --- | --- | --- | --- |",
    ]
    edge = []  # chosen at an end of its range
    for arm, trials in tuning["arms"].items():
        rates = ", ".join(f"{t['lr']:.3g}" for t in trials if t["lr"])
        losses = ", ".join("–" if t["validation_loss"] is None else f"{t['validation_loss']:.3f}" for t in trials)
        chosen = tuning["chosen"].get(arm)
        finished = [t for t in trials if t["validation_loss"] is not None]
        shown = f"{chosen:.3g}" if finished else "skipped: cannot train" if chosen is not None else "none finished"
        lines.append(f"| {arm} | {len(trials)} | {rates} | {losses} | {shown} |")
        if finished and any(math.isclose(chosen, t["lr"]) for t in (trials[0], trials[-1])):
            edge.append(arm)
    if edge:
        lines += ["", f"Chosen at the edge of its range (the best rate may lie beyond it): {', '.join(edge)}."]
    return [*lines, ""]
