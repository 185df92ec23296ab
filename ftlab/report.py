"""The sweep report: every run's results.json grouped by configuration, with mean, sd and a seed-spread verdict."""

import argparse
import json
import math
import os
import re
import statistics
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from ftlab.paths import write_atomic

NO_RESULTS = "no results.json found (expected a run directory or a multirun directory of runs)"
PRUNED_FOLDERS = {"wandb", "model", "checkpoints"}  # weights and logs: large, and never a run's own results.json
FAILING = ("failed", "running", "unreadable")  # "running" after a sweep: the run died before writing its status
SPREAD_RULE = (
    "`vs best` compares each configuration's mean with the best one's (highest; lowest for a loss or perplexity). Both "
    "with at least 2 seeds: a gap no larger than the sum of their sample standard deviations (their ±1 sd intervals "
    "overlap) is `≈ best (within seed spread)`: these seeds cannot tell the two apart. A larger gap is shown signed "
    "as `beyond spread`; with 1 seed on either side the spread is unknown and the gap is marked so."
)
# Cost columns: (table header, csv header, how one run gives it); a configuration shows the mean over its seeds.
COSTS = {
    "params": ("trainable params", "trainable_params", lambda run: lookup(run["results"], "params.trainable")),
    "memory_mb": ("peak train MB", "peak_train_memory_mb", lambda run: lookup(run["results"], "train.peak_memory_mb")),
    "eval_memory_mb": ("peak eval MB", "peak_eval_memory_mb",
                       lambda run: lookup(run["results"], "eval.peak_memory_mb")),
    "saved_mb": ("saved MB", "saved_mb", lambda run: saved_mb(run)),
    "wall_s": ("wall s", "wall_s", lambda run: number(run["results"].get("wall_s"))
               or lookup(run["results"], "train.runtime_s")),
    "tokens_per_s": ("tokens/s", "tokens_per_s", lambda run: lookup(run["results"], "train.tokens_per_s")),
    # Compressed runs: the share of zero weights (quant=sparse_*), and for QAT the same fine-tuning quantized after
    # training (PTQ): what QAT is measured against.
    "sparsity": ("sparsity", "sparsity", lambda run: lookup(run["results"], "compression.overall")),
    "ptq_accuracy": ("PTQ baseline accuracy", "ptq_answer_accuracy",
                     lambda run: lookup(run["results"], "eval.ptq_answer_accuracy")),
    # Preference and RL runs judged by a reward model (eval.reward_model): how often the tuned answer beat the base's.
    "reward_win_rate": ("reward win rate", "reward_win_rate",
                        lambda run: lookup(run["results"], "eval.reward.win_rate")),
}


def write_report(dirs: list[Path], out_dir: Path, metric: str = "answer_accuracy", log_wandb: bool = False) -> dict:
    """Collect, group, and write report.md, report.csv, runs.csv and the plots into out_dir; returns a summary."""
    from ftlab.report_plots import write_plots
    from ftlab.report_tables import configuration_tables, csv_text, markdown_table, report_markdown, runs_csv

    dirs = [Path(d) for d in dirs]
    runs = [load_run(path, metric) for path in collect_results(dirs)]
    columns = differing_keys(runs)
    configs = summarise_configurations(runs, columns, metric)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots, missing_plots = write_plots(configs, metric, out_dir)
    (headers, rows), (csv_headers, csv_rows) = configuration_tables(configs, columns, metric)
    counts = {s: sum(r["status"] == s for r in runs) for s in dict.fromkeys(r["status"] for r in runs)}
    summary = {
        "runs": len(runs), "statuses": counts, "failing": sum(counts.get(s, 0) for s in FAILING),
        "configurations": len(configs), "best": configs[0]["label"] if configs else None,
        "table": markdown_table(headers, rows), "report": out_dir / "report.md", "csv": out_dir / "report.csv",
        "runs_csv": out_dir / "runs.csv", "plots": plots,
    }
    write_atomic(summary["csv"], csv_text(csv_headers, csv_rows))
    write_atomic(summary["runs_csv"], csv_text(*runs_csv(runs)))
    write_atomic(summary["report"], report_markdown(dirs, runs, configs, metric, summary, missing_plots))
    if log_wandb:
        group = next((r["results"]["wandb"]["group"] for r in runs if (r["results"].get("wandb") or {}).get("group")),
                     dirs[0].resolve().name)
        summary["wandb"] = log_to_wandb(out_dir, group, csv_headers, csv_rows, plots)  # numbers W&B can sort
    return summary


def collect_results(dirs: list[Path]) -> list[Path]:
    found = {}
    for root in dirs:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory (expected a run directory or a multirun directory)")
        before = len(found)
        for folder, subfolders, files in os.walk(root):
            # Hydra numbers a sweep's jobs without padding: 2_... before 10_...
            subfolders[:] = sorted((d for d in subfolders if d not in PRUNED_FOLDERS),
                                   key=lambda name: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)])
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
    return {"dir": path.parent, "name": str(results.get("run_name") or path.parent.name), "status": status,
            "reason": reason, "seed": results.get("seed"), "choices": choices, "overrides": overrides,
            "config": config, "results": results, "value": value}


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
        label = " · ".join(first["config"].get(k, "-") if k in first["choices"] else
                           f"{k.rsplit('.', 1)[-1]}={short(first['config'].get(k, '-'))}" for k in columns)
        mean, sd, n = mean_sd(m["value"] for m in members)
        loss_mean, loss_sd, _ = mean_sd(lookup(m["results"], "eval.loss") for m in members)
        configs.append({
            "label": label or re.sub(r"-s\d+$", "", first["name"]), "runs": members,
            "columns": [first["config"].get(k, "") for k in columns], "strategy": first["choices"].get("strategy", "-"),
            "n": n, "mean": mean, "sd": sd, "values": [m["value"] for m in members],
            "loss_mean": loss_mean, "loss_sd": loss_sd,
            "base": mean_sd(lookup(m["results"], base_metric(metric)) for m in members)[0],
            **{key: mean_sd(map(of_run, members))[0] for key, (_, _, of_run) in COSTS.items()},
        })
    configs.sort(key=lambda c: c["mean"], reverse=not lower_is_better(metric))
    for config in configs:
        config["vs_best"] = spread_verdict(config, configs[0])
    return configs


def lower_is_better(metric: str) -> bool:
    return "loss" in metric or "perplexity" in metric


def saved_mb(run: dict) -> float | None:
    saved = number(lookup(run["results"], "saved.bytes"))
    if saved is None and (run["dir"] / "model").is_dir():
        saved = sum(f.stat().st_size for f in (run["dir"] / "model").rglob("*") if f.is_file())
    return None if saved is None else saved / 2**20


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


def log_to_wandb(out_dir: Path, group: str, headers: list, rows: list, plots: list) -> dict:
    """A W&B run of job_type report beside the sweep's runs; offline when not logged in, never a prompt.
    Returns {"mode": ...}, or {"error": ...} when W&B fails: the report files are written regardless."""
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    from ftlab.tracking import wandb_mode

    try:
        run = wandb.init(project="ftlab", job_type="report", group=group, name=f"report-{group}", dir=str(out_dir),
                         mode=wandb_mode("auto"), settings=wandb.Settings(console="off", init_timeout=30))
        run.log({"report/configurations": wandb.Table(columns=headers, data=rows, allow_mixed_types=True),
                 **{f"report/{p.stem}": wandb.Image(str(p)) for p in plots}})
        run.finish()
    except (wandb.errors.Error, OSError) as err:  # no network, bad credentials, a full disk
        return {"error": f"{type(err).__name__}: {err}"}
    return {"mode": run.settings.mode}


class SweepReport(Callback):
    """Hydra callback: after a multirun, the report in <sweep dir>/report, and exit 1 when a run failed."""

    def __init__(self, metric: str | None = None, log_wandb: bool = False) -> None:
        self.metric, self.log_wandb = metric, log_wandb

    def on_multirun_end(self, config, **kwargs) -> None:
        from omegaconf import OmegaConf

        from ftlab.report_tables import count_line

        sweep_dir = Path(config.hydra.sweep.dir)
        # The metric the runs return to the sweeper (cfg.metric) is the one the report ranks by, unless given here.
        metric = self.metric or OmegaConf.select(config, "metric", default=None) or "answer_accuracy"
        try:
            summary = write_report([sweep_dir], sweep_dir / "report", str(metric), self.log_wandb)
        except OSError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        print(f"{summary['table']}\n\n{count_line(summary)}; report: {summary['report']}", flush=True)
        if summary["failing"]:  # skipped runs are known-incompatible combinations, not failures
            print(f"error: {summary['failing']} of {summary['runs']} runs failed or did not finish (see "
                  f"{summary['report']})", file=sys.stderr, flush=True)
            raise SystemExit(1)  # the sweep's exit status says so too


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ftlab.report", description="Compare the runs of a sweep: which "
                                     "configuration wins, at what cost, and is the difference beyond seed spread?")
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                        help="a multirun directory, a run directory, or any folder: every results.json below it")
    parser.add_argument("--out", type=Path, help="where the report goes (default: FIRST_DIR/report)")
    parser.add_argument("--metric", default="answer_accuracy",
                        help="an eval metric or a dotted path into results.json (default: answer_accuracy)")
    parser.add_argument("--wandb", action="store_true", help="also log the table and plots as a W&B report run")
    args = parser.parse_args(argv)
    from ftlab.report_tables import count_line

    try:
        summary = write_report(args.dirs, args.out or args.dirs[0] / "report", args.metric, args.wandb)
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{summary['table']}\n\n{count_line(summary)}; report: {summary['report']}")
    if "error" in summary.get("wandb", {}):
        raise SystemExit(f"error: report written, but logging it to W&B failed: {summary['wandb']['error']}")


if __name__ == "__main__":
    main()
