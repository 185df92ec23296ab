"""The sweep report: every run's results.json grouped by configuration, with mean, sd and paired verdicts."""

import argparse
import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from ftlab.core.files import write_atomic
from ftlab.report.collect import FAILING, collect_results, differing_keys, load_run
from ftlab.report.summary import summarise_configurations


def write_report(
    dirs: list[Path],
    out_dir: Path,
    metric: str = "answer_accuracy",
    log_wandb: bool = False,
    pairs: tuple = (),
    tuning: dict | None = None,
) -> dict:
    """Collect, group, compare, and write report.md, report.csv, comparisons.csv, runs.csv and the plots into
    out_dir; returns a summary. pairs: (label, label) comparisons asked for beside each one against the best (a
    ValueError names an unknown label); tuning: a fair ablation's stage 1 (report/fair.py)."""
    from ftlab.report.plots import write_plots
    from ftlab.report.tables import (
        comparisons_table,
        configuration_tables,
        csv_text,
        markdown_table,
        report_markdown,
        runs_csv,
    )

    dirs = [Path(d) for d in dirs]
    runs = [load_run(path, metric) for path in collect_results(dirs)]
    columns = differing_keys(runs)
    configs, comparisons = summarise_configurations(runs, columns, metric, pairs)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots, missing_plots = write_plots(configs, metric, out_dir, tuning)
    (headers, rows), (csv_headers, csv_rows) = configuration_tables(configs, columns, metric)
    _, (comparison_headers, comparison_rows) = comparisons_table(comparisons)
    counts = {s: sum(r["status"] == s for r in runs) for s in dict.fromkeys(r["status"] for r in runs)}
    summary = {
        "runs": len(runs),
        "statuses": counts,
        "failing": sum(counts.get(s, 0) for s in FAILING),
        "configurations": len(configs),
        "best": configs[0]["label"] if configs else None,
        "table": markdown_table(headers, rows),
        "report": out_dir / "report.md",
        "csv": out_dir / "report.csv",
        "runs_csv": out_dir / "runs.csv",
        "comparisons_csv": out_dir / "comparisons.csv",
        "comparisons": comparisons,
        "plots": plots,
    }
    named = [c for c in comparisons if c["named"]]
    if named:
        summary["named"] = markdown_table(*comparisons_table(named)[0])
    write_atomic(summary["csv"], csv_text(csv_headers, csv_rows))
    write_atomic(summary["comparisons_csv"], csv_text(comparison_headers, comparison_rows))
    write_atomic(summary["runs_csv"], csv_text(*runs_csv(runs)))
    write_atomic(summary["report"], report_markdown(dirs, runs, configs, metric, summary, missing_plots, tuning))
    if log_wandb:
        group = next(
            (r["results"]["wandb"]["group"] for r in runs if (r["results"].get("wandb") or {}).get("group")),
            dirs[0].resolve().name,
        )
        tables = {"configurations": (csv_headers, csv_rows), "comparisons": (comparison_headers, comparison_rows)}
        summary["wandb"] = log_to_wandb(out_dir, group, tables, plots)  # numbers W&B can sort
    return summary


def log_to_wandb(out_dir: Path, group: str, tables: dict, plots: list) -> dict:
    """A W&B run of job_type report beside the sweep's runs; offline when not logged in, never a prompt.
    Returns {"mode": ...}, or {"error": ...} when W&B fails: the report files are written regardless."""
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    from ftlab.runs.trackers import wandb_mode

    try:
        run = wandb.init(
            project="ftlab",
            job_type="report",
            group=group,
            name=f"report-{group}",
            dir=str(out_dir),
            mode=wandb_mode("auto"),
            settings=wandb.Settings(console="off", init_timeout=30),
        )
        run.log(
            {
                **{
                    f"report/{name}": wandb.Table(columns=headers, data=rows, allow_mixed_types=True)
                    for name, (headers, rows) in tables.items()
                },
                **{f"report/{p.stem}": wandb.Image(str(p)) for p in plots},
            }
        )
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

        from ftlab.report.tables import count_line

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
            print(
                f"error: {summary['failing']} of {summary['runs']} runs failed or did not finish (see "
                f"{summary['report']})",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)  # the sweep's exit status says so too


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ftlab.report",
        description="Compare the runs of a sweep: which configuration wins, at what cost, and is the difference "
        "real? Paired verdicts over the held-out questions and seeds (docs/verdicts.md).",
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="a multirun directory, a run directory, or any folder: every results.json below it",
    )
    parser.add_argument("--out", type=Path, help="where the report goes (default: FIRST_DIR/report)")
    parser.add_argument(
        "--metric",
        default="answer_accuracy",
        help="an eval metric or a dotted path into results.json (default: answer_accuracy)",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="also compare these two configurations, named as in the table ('lora · 4bit', or 'lora 4bit'); repeatable",
    )
    parser.add_argument("--wandb", action="store_true", help="also log the table and plots as a W&B report run")
    args = parser.parse_args(argv)
    from ftlab.report.tables import count_line

    try:
        out = args.out or args.dirs[0] / "report"
        summary = write_report(args.dirs, out, args.metric, args.wandb, tuple(map(tuple, args.compare)))
    except (OSError, ValueError) as err:  # no runs; an unknown --compare name
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    named = f"\n\n{summary['named']}" if "named" in summary else ""
    print(f"{summary['table']}{named}\n\n{count_line(summary)}; report: {summary['report']}")
    if "error" in summary.get("wandb", {}):
        raise SystemExit(f"error: report written, but logging it to W&B failed: {summary['wandb']['error']}")


if __name__ == "__main__":
    main()
