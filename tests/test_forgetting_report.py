"""The sweep report's second axis, as a researcher reads it: what each configuration forgot (retention loss, harness
scores) beside what it learned, pooled over seeds and paired row by row (ftlab/report/forgetting.py)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ftlab.core.files import PROJECT_ROOT
from ftlab.report import write_report
from ftlab.report.collect import collect_results, differing_keys, load_run
from ftlab.report.summary import summarise_configurations
from ftlab.report.verdicts import bootstrap_interval


def write_run(sweep: Path, job: int, strategy: str, seed: int, correct: tuple, retention=(), harness=None) -> Path:
    """One run directory shaped as a run with data.retention and eval.harness.tasks leaves it: results.json,
    answers.json and retention.json. correct: (base, tuned) 0/1 per held-out question; retention: (tokens, base loss
    sum, tuned loss sum) per row; harness: {task: (base scores, tuned scores)} of its acc."""
    name = f"tiny-{strategy}-sft-none-s{seed}"
    run_dir = sweep / f"{job}_{name}"
    run_dir.mkdir(parents=True)
    base, tuned = correct
    overrides = [f"strategy={strategy}", f"seed={seed}"]
    results = {
        "status": "ok",
        "run_name": name,
        "choices": {"model": "tiny", "strategy": strategy, "objective": "sft", "data": "hr", "quant": "none"},
        "overrides": overrides,
        "seed": seed,
        "params": {"trainable": 1000, "total": 1000},
        "eval": {
            "questions": len(tuned),
            "loss": 1.0,
            "answer_accuracy": sum(tuned) / len(tuned),
            "base_answer_accuracy": sum(base) / len(base),
        },
    }
    items = {}
    if retention:
        tokens, before, after = (sum(column) for column in zip(*retention))
        results["retention"] = {
            "source": "data/hr/retention.jsonl",
            "rows": len(retention),
            "base_loss": before / tokens,
            "base_loss_ci": [before / tokens] * 2,
            "loss": after / tokens,
            "loss_ci": [after / tokens] * 2,
            "loss_change": (after - before) / tokens,
            "loss_change_ci": [(after - before) / tokens] * 2,
        }
        items["retention"] = [{"tokens": n, "base_loss_sum": b, "tuned_loss_sum": t} for n, b, t in retention]
    if harness:
        scores = {
            side: {task: {"acc": sum(s[i]) / len(s[i]), "acc_stderr": 0.1} for task, s in harness.items()}
            for i, side in enumerate(("base", "tuned"))
        }
        change = {
            task: {"acc": {"change": (sum(t) - sum(b)) / len(b), "ci": [-1, 1]}} for task, (b, t) in harness.items()
        }
        results["harness"] = {"tasks": list(harness), "limit": None, "metric": "acc", **scores, "change": change}
        items["harness"] = {task: {"acc": {"base": list(b), "tuned": list(t)}} for task, (b, t) in harness.items()}
    (run_dir / "results.json").write_text(json.dumps(results))
    answers = [
        {
            "question": f"question {q}?",
            "base_correct": bool(b),
            "tuned_correct": bool(t),
            "tokens": 10,
            "base_loss_sum": 20.0,
            "tuned_loss_sum": 10.0,
        }
        for q, (b, t) in enumerate(zip(base, tuned))
    ]
    (run_dir / "answers.json").write_text(json.dumps({"answers": answers}))
    if items:
        (run_dir / "retention.json").write_text(json.dumps(items))
    return run_dir


def read_csv(path: Path) -> dict:
    with path.open(newline="", encoding="utf-8") as f:
        return {row["configuration"]: row for row in csv.DictReader(f)}


def configurations(sweep: Path) -> list:
    runs = [load_run(path, "answer_accuracy") for path in collect_results([sweep])]
    return summarise_configurations(runs, differing_keys(runs), "answer_accuracy")[0]


NOTHING = (0, 0, 0, 0)  # the base answers no held-out question


@pytest.fixture
def sweep(tmp_path) -> Path:
    """full: two seeds with retention and harness, numbers small enough to work out by hand; lora: harness only."""
    d = tmp_path / "sweep"
    write_run(
        d,
        0,
        "full",
        1,
        (NOTHING, (1, 1, 0, 0)),
        [(10, 5, 7), (30, 15, 27)],
        {"hr_general": ((1, 1, 0, 1), (1, 0, 0, 1))},
    )
    write_run(
        d,
        1,
        "full",
        2,
        (NOTHING, (1, 0, 0, 0)),
        [(10, 5, 6), (30, 15, 22)],
        {"hr_general": ((1, 1, 0, 1), (0, 0, 0, 1))},
    )
    write_run(d, 2, "lora", 1, (NOTHING, (1, 0, 0, 0)), harness={"hr_general": ((1, 1, 0, 1), (1, 1, 0, 1))})
    return d


def test_the_columns_are_the_change_pooled_over_seeds_and_rows(sweep):
    """`python -m ftlab.report` as a user runs it: each column is tuned minus base, token-weighted per run (seed 1:
    (2 + 12) / 40, seed 2: (1 + 7) / 40) and pooled over seeds, with the two-level bootstrap's interval of rows
    linearised per run (m + (d - m * tokens) / mean tokens); a configuration that did not measure it shows –."""
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab.report", str(sweep)],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| retention Δloss | hr_general Δacc |" in proc.stdout
    rows = read_csv(sweep / "report" / "report.csv")
    full = rows["full"]
    retention = bootstrap_interval(np.array([[0.275, 0.425], [0.15, 0.25]]), np.zeros((2, 2)))
    assert float(full["retention_loss_change"]) == pytest.approx((0.35 + 0.2) / 2)
    assert [float(full["retention_loss_change_ci_low"]), float(full["retention_loss_change_ci_high"])] == pytest.approx(
        retention
    )
    harness = bootstrap_interval(np.array([[0, -1, 0, 0], [-1, -1, 0, 0]]), np.zeros((2, 4)))
    assert float(full["hr_general_acc_change"]) == pytest.approx(-0.375)
    assert [float(full["hr_general_acc_change_ci_low"]), float(full["hr_general_acc_change_ci_high"])] == pytest.approx(
        harness
    )
    assert rows["lora"]["retention_loss_change"] == "" and float(rows["lora"]["hr_general_acc_change"]) == 0
    report = (sweep / "report" / "report.md").read_text()
    cells = f"| +0.275 [{retention[0]:.3f}, {retention[1]:.3f}] | -0.375 [{harness[0]:.3f}, {harness[1]:.3f}] |"
    assert cells in report
    assert "| – | +0.000 [0.000, 0.000] |" in report  # lora: no retention set
    assert "positive = forgotten" in report and "resamples the seeds, then the rows" in report
    gain = {c["label"]: c["gain"]["change"] for c in configurations(sweep)}  # the plot's y: (2/4 + 1/4) / 2
    assert gain == pytest.approx({"full": 0.375, "lora": 0.25})


def test_a_single_run_gives_the_change_its_results_json_records(tmp_path):
    rows = [(12, 9.0, 11.5), (30, 20.0, 21.0), (7, 8.0, 14.0)]
    run = write_run(tmp_path / "sweep", 0, "full", 1, (NOTHING, NOTHING), rows)
    (config,) = configurations(tmp_path / "sweep")
    recorded = json.loads((run / "results.json").read_text())["retention"]["loss_change"]
    assert config["forgetting"]["retention Δloss"]["change"] == pytest.approx(recorded)


def test_the_interval_widens_with_the_seed_spread(tmp_path):
    """Two configurations forget 0.3 per token on average with the same row-to-row noise; in one the seeds agree, in
    the other they differ by ±0.2: its interval is the wider, by more than the rows alone would make it."""
    d = tmp_path / "sweep"
    noise = [0.05 * (i % 5 - 2) for i in range(20)]
    for job, (strategy, offsets) in enumerate([("steady", (0, 0, 0)), ("spread", (-0.2, 0, 0.2))]):
        for seed, offset in enumerate(offsets, 1):
            rows = [(10, 10.0, 10.0 + 10 * (0.3 + offset + e)) for e in noise]
            write_run(d, 3 * job + seed, strategy, seed, (NOTHING, NOTHING), rows)
    changes = {c["label"]: c["forgetting"]["retention Δloss"] for c in configurations(d)}
    width = {label: change["ci"][1] - change["ci"][0] for label, change in changes.items()}
    assert changes["steady"]["change"] == pytest.approx(0.3) and changes["spread"]["change"] == pytest.approx(0.3)
    assert changes["steady"]["ci"][0] < 0.3 < changes["steady"]["ci"][1]
    assert width["spread"] > 3 * width["steady"], width


def test_a_sweep_without_forgetting_measures_has_no_such_columns_or_plot(tmp_path):
    d = tmp_path / "sweep"
    for job, (strategy, seed) in enumerate([("full", 1), ("full", 2), ("lora", 1), ("lora", 2)]):
        write_run(d, job, strategy, seed, (NOTHING, (1, 0, seed - 1, 0)))
    summary = write_report([d], tmp_path / "out")
    assert all(c["forgetting"] == {} and c["gain"] is None for c in configurations(d))
    headers = (tmp_path / "out" / "report.csv").read_text().splitlines()[0]
    assert "_change" not in headers and "Δloss" not in summary["table"]
    assert "learned_vs_forgotten" not in (tmp_path / "out" / "report.md").read_text()
    assert not (tmp_path / "out" / "learned_vs_forgotten.png").exists()
    assert "learned_vs_forgotten.png" not in [p.name for p in summary["plots"]]


@pytest.mark.parametrize(
    "measures, x_label",
    [("retention", "retention loss increase"), ("harness", "hr_general acc drop")],
)
def test_the_plot_has_one_point_per_configuration(tmp_path, measures, x_label):
    """Learned (answer accuracy gain) against forgotten: the retention loss increase, or without a retention set the
    harness score's drop; one point with error bars both ways per configuration, in the report beside the others."""
    from ftlab.report.plots import learned_vs_forgotten

    d = tmp_path / "sweep"
    for job, (strategy, seed, tuned) in enumerate(
        [("full", 1, 0.5), ("full", 2, 0.6), ("lora", 1, 0.2), ("lora", 2, 0.3), ("prefix", 1, 0.0)]
    ):
        rows = [(10, 5.0, 5.0 + 10 * tuned + i) for i in range(4)] if measures == "retention" else ()
        harness = {"hr_general": ((1, 1, 1, 0), (1, 1, 0, 0) if tuned > 0.3 else (1, 1, 1, 0))}
        write_run(d, job, strategy, seed, (NOTHING, (1, tuned > 0.3, tuned > 0.5, 0)), rows, harness)
    summary = write_report([d], tmp_path / "out")
    plot = tmp_path / "out" / "learned_vs_forgotten.png"
    assert plot in summary["plots"] and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![learned_vs_forgotten](learned_vs_forgotten.png)" in (tmp_path / "out" / "report.md").read_text()
    configs = configurations(d)
    (ax,) = learned_vs_forgotten(configs).axes
    assert len(ax.containers) == len(configs) == 3  # an error-bar container per point
    assert x_label in ax.get_xlabel()
    assert {t.get_text() for t in ax.texts} == {c["label"] for c in configs}  # named as the table names them


def test_runs_with_different_retention_rows_are_not_pooled(tmp_path, capsys):
    """Seed 2 read a retention file with another number of rows: its rows cannot be paired with seed 1's. The
    configuration gets no retention number, and a warning names both runs; its harness column stands."""
    d = tmp_path / "sweep"
    harness = {"hr_general": ((1, 1), (0, 0))}
    one = write_run(d, 0, "full", 1, (NOTHING, NOTHING), [(10, 5, 7), (30, 15, 27)], harness)
    two = write_run(d, 1, "full", 2, (NOTHING, NOTHING), [(10, 5, 7), (30, 15, 27), (5, 1, 2)], harness)
    summary = write_report([d], tmp_path / "out")
    warning = capsys.readouterr().err
    assert "warning: tiny-full-sft-none: retention Δloss left out: its runs measured different rows" in warning
    assert f"{one}: 2" in warning and f"{two}: 3" in warning
    assert "retention Δloss" not in summary["table"] and "| -1.000 [-1.000, -1.000] |" in summary["table"]
