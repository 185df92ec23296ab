"""`ftlab runs [DIR ...]`: every run under outputs/ (or DIR) as one table, newest first: when it started, its name,
its status (ok, failed and why, skipped, interrupted, running, or crashed: a run that stopped without a final
status), the group choices, answer accuracy base -> tuned, held-out loss and wall time. Filters and --json."""

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from ftlab.report.collect import collect_results, load_run, lookup

ALIVE_S = 300  # a "running" run whose log has not grown for this long is taken as crashed (killed, out of memory)
COLUMNS = ("started", "run", "status", "choices", "accuracy", "loss", "wall")
SHOWN_CHOICES = ("model", "strategy", "objective", "quant")  # what tells runs apart; data, optimizer, dist rarely do


def number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def choices_text(choices: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in choices.items() if k in SHOWN_CHOICES)


def runs(dirs: list) -> list:
    """One row per run directory under dirs (results.json read as the report reads it), newest first."""
    rows = []
    for path in collect_results([Path(d) for d in dirs]):
        run = load_run(path, "answer_accuracy")
        results, folder = run["results"], run["dir"]
        started = (folder / "config.yaml" if (folder / "config.yaml").exists() else path).stat().st_mtime
        status = run["status"]
        if status == "running" and time.time() - _last_write(folder) > ALIVE_S:
            status = "crashed"
        rows.append(
            {
                "dir": str(folder),
                "started": datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M"),
                "started_s": started,
                "run": run["name"],
                "status": status,
                "reason": run["reason"] if status not in ("ok", "running") else "",
                "choices": run["choices"],
                "overrides": run["overrides"],
                "base_accuracy": lookup(results, "base_answer_accuracy"),
                "accuracy": lookup(results, "answer_accuracy"),
                "base_loss": lookup(results, "base_loss"),
                "loss": lookup(results, "loss"),
                "wall_s": results.get("wall_s"),
            }
        )
    return sorted(rows, key=lambda row: row["started_s"], reverse=True)


def _last_write(folder: Path) -> float:
    return max((p.stat().st_mtime for p in (folder / "ftlab.log", folder / "results.json") if p.exists()), default=0)


def matches(row: dict, status: str | None, where: list) -> bool:
    """--status (ok, failed, ...) and every --where key=value: a group choice (strategy=lora) or an override the
    run was given (optimizer.lr=3e-3)."""
    if status and row["status"] != status:
        return False
    given = {**row["overrides"], **row["choices"]}
    return all(given.get(key) == value for key, _, value in (w.partition("=") for w in where))


def table(rows: list) -> str:
    """Plain text, one line per run (a failed run's reason on the line below it)."""

    lines = []
    for row in rows:
        cells = [
            row["started"],
            row["run"],
            row["status"],
            choices_text(row["choices"]),
            f"{number(row['base_accuracy'])} -> {number(row['accuracy'])}",
            number(row["loss"], 3),
            "-" if row["wall_s"] is None else f"{row['wall_s']:.0f} s",
        ]
        lines.append(cells)
    widths = [max(len(str(c)) for c in column) for column in zip(COLUMNS, *lines)] if lines else []
    out = ["  ".join(f"{h:<{w}}" for h, w in zip(COLUMNS, widths))] if lines else []
    for cells, row in zip(lines, rows):
        out.append("  ".join(f"{c:<{w}}" for c, w in zip(cells, widths)).rstrip())
        if row["reason"]:
            out.append(f"    {row['reason'][:200]}")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="ftlab runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="folders of runs or sweeps (default: outputs)")
    parser.add_argument("--status", choices=["ok", "failed", "skipped", "interrupted", "running", "crashed"])
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE", help="strategy=lora, ...")
    parser.add_argument("--json", action="store_true", help="the rows as JSON")
    args = parser.parse_args(argv)
    for where in args.where:
        if "=" not in where:
            raise SystemExit(f"error: --where {where}: expected KEY=VALUE (strategy=lora)")
    try:
        rows = [r for r in runs(args.dirs or [Path("outputs")]) if matches(r, args.status, args.where)]
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    if args.json:
        json.dump([{k: v for k, v in r.items() if k != "started_s"} for r in rows], sys.stdout, indent=1)
        print()
    else:
        print(table(rows) if rows else "no runs match")
