"""The sweep report as a researcher reads it: grouped seeds, spread verdicts, failures listed, plots, exit codes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ftlab.core.files import PROJECT_ROOT
from ftlab.report import SweepReport, write_report

NO_RESULTS = "no results.json found (expected a run directory or a multirun directory of runs)"
PLOTS = [
    "quality_vs_params.png",
    "quality_vs_memory.png",
    "quality_vs_size.png",
    "loss_curves.png",
    "accuracy_by_strategy.png",
]


def write_run(
    sweep: Path,
    job: int,
    strategy: str,
    quant: str = "none",
    seed: int = 1,
    accuracy: float | None = None,
    status: str = "ok",
    overrides: tuple = (),
    history: bool = True,
    questions: int = 100,
    **fields,
) -> Path:
    """One run directory as ftlab.run leaves it in a multirun: results.json, and answers.json with the first
    accuracy * questions held-out questions answered correctly (the easy ones are the same in every run)."""
    name = f"tiny-{strategy}-sft-{quant}-s{seed}"
    run_dir = sweep / f"{job}_{name}"
    run_dir.mkdir(parents=True)
    results = {
        "status": status,
        "run_name": name,
        "seed": seed,
        "choices": {
            "model": "tiny",
            "strategy": strategy,
            "objective": "sft",
            "data": "hr",
            "quant": quant,
            "optimizer": "adamw",
        },
        "overrides": [f"strategy={strategy}", f"quant={quant}", f"seed={seed}", *overrides],
    }
    if status == "ok":
        trainable = {"full": 1_050_000, "lora": 65_536, "prefix": 40_960}.get(strategy, 70_000)
        results.update(
            params={"trainable": trainable, "total": 1_050_000},
            train={
                "loss": 1.0,
                "steps": 30,
                "runtime_s": 60.0,
                "tokens": 100_000,
                "tokens_per_s": 5000.0,
                "peak_memory_mb": 800.0 if quant == "none" else 500.0,
            },
            eval={"questions": 90, "loss": 1 - accuracy, "answer_accuracy": accuracy, "base_answer_accuracy": 0.1},
            saved={"bytes": 3 * 2**20},
            wall_s=75.0,
            wandb={"mode": "offline", "group": "2026-11-23_10-00-00"},
        )
        if history:
            results["history"] = {
                "train": [[s, 3.0 / s + 1 - accuracy] for s in (1, 10, 20, 30)],
                "eval": [[s, 2.0 / s + 1 - accuracy] for s in (10, 20, 30)],
            }
    results.update(fields)
    (run_dir / "results.json").write_text(json.dumps(results))
    if status == "ok" and questions:
        answers = [
            {
                "question": f"question {q}?",
                "tuned_correct": q < round(accuracy * questions),
                "tokens": 10,
                "tuned_loss_sum": 10 * (1 - accuracy),
            }
            for q in range(questions)
        ]
        (run_dir / "answers.json").write_text(json.dumps({"answers": answers}))
    return run_dir


@pytest.fixture
def sweep(tmp_path) -> Path:
    """5 configurations: two seeds each except prefix·4bit (its second seed failed), plus skipped, running and
    unreadable runs."""
    d = tmp_path / "sweep"
    jobs = [
        ("full", "none", 1, 0.80),
        ("full", "none", 2, 0.82),  # best: 0.81 ± 0.014
        ("lora", "none", 1, 0.78),
        ("lora", "none", 2, 0.80),  # 0.79 ± 0.014: gap 0.02 within spread
        ("lora", "4bit", 1, 0.70),
        ("lora", "4bit", 2, 0.80),  # 0.75 ± 0.071: gap 0.06 within spread
        ("prefix", "none", 1, 0.40),
        ("prefix", "none", 2, 0.42),  # 0.41 ± 0.014: beyond spread
        ("prefix", "4bit", 1, 0.35),
    ]  # 1 seed: spread unknown
    for job, (strategy, quant, seed, accuracy) in enumerate(jobs):
        write_run(d, job, strategy, quant, seed, accuracy)
    write_run(d, 9, "prefix", "4bit", 2, status="failed", reason="RuntimeError: CUDA out of memory")
    write_run(d, 10, "full", "4bit", 1, status="skipped", reason="strategy=full trains base weights, 4bit refuses")
    write_run(d, 11, "full", "4bit", 2, status="skipped", reason="strategy=full trains base weights, 4bit refuses")
    write_run(d, 12, "lora", "8bit", 1, status="running")
    (d / "14_cut_short").mkdir()  # a record without choices or overrides
    (d / "14_cut_short" / "results.json").write_text('{"status": "running", "run_name": "cut-short"}')
    (d / "13_broken").mkdir()
    (d / "13_broken" / "results.json").write_text('{"status": "ok", "eval": ')
    (d / "0_tiny-full-sft-none-s1" / "wandb" / "run").mkdir(parents=True)  # never searched for results
    (d / "0_tiny-full-sft-none-s1" / "wandb" / "run" / "results.json").write_text("{}")
    return d


def report_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ftlab.report", *map(str, args)],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cli_writes_the_report_tables_and_plots(sweep):
    from matplotlib.image import imread

    proc = report_cli(sweep)
    assert proc.returncode == 0, proc.stderr
    out = sweep / "report"
    assert f"report: {out / 'report.md'}" in proc.stdout
    assert "| strategy | quant | n |" in proc.stdout  # the table, printed
    for name in ["report.md", "report.csv", "runs.csv", *PLOTS]:
        assert (out / name).is_file(), name
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, channels = imread(out / name).shape
        assert 500 <= height <= 700 and 850 <= width <= 1100 and channels in (3, 4), (name, height, width)
        assert f"![{name[:-4]}]({name})" in (out / "report.md").read_text()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # written atomically


def test_seeds_of_a_configuration_are_one_row_with_mean_sd_and_n(sweep, tmp_path):
    write_report([sweep], tmp_path / "out")
    rows = {r["configuration"]: r for r in read_csv(tmp_path / "out" / "report.csv")}
    assert list(rows) == ["full · none", "lora · none", "lora · 4bit", "prefix · none", "prefix · 4bit"]  # best first
    lora_4bit = rows["lora · 4bit"]
    assert int(lora_4bit["n"]) == 2
    assert float(lora_4bit["answer_accuracy_mean"]) == pytest.approx(0.75)
    assert float(lora_4bit["answer_accuracy_sd"]) == pytest.approx(0.0707107, abs=1e-6)  # sample sd
    assert rows["prefix · 4bit"]["n"] == "1" and rows["prefix · 4bit"]["answer_accuracy_sd"] == ""
    assert float(rows["full · none"]["trainable_params"]) == 1_050_000
    assert float(rows["full · none"]["saved_mb"]) == pytest.approx(3.0)
    table = (tmp_path / "out" / "report.md").read_text()
    assert "| lora | 4bit | 2 | 0.750 ± 0.071 | 0.100 |" in table
    assert "| full | none | 2 | 0.810 ± 0.014 | 0.100 | 0.190 ± 0.014 | 1.1M | 800.0 | 3.000 | 75.0 | 5,000 |" in table


def test_vs_best_is_a_paired_verdict_with_its_interval_p_and_detectable_gap(sweep, tmp_path):
    write_report([sweep], tmp_path / "out")
    rows = {r["configuration"]: r for r in read_csv(tmp_path / "out" / "report.csv")}
    verdict = {name: row["verdict"] for name, row in rows.items()}
    assert verdict["full · none"] == "best" and rows["full · none"]["p_holm"] == ""
    # 0.79 vs 0.81 over 100 shared questions, 2 seeds each: a gap this design cannot tell from noise
    assert verdict["lora · none"].startswith("no detectable difference (p = ")
    assert "this design detects gaps of about " in verdict["lora · none"]
    assert "seeds per configuration would halve that" in verdict["lora · none"]
    assert verdict["lora · 4bit"].startswith("no detectable difference")  # 0.75 ± 0.071: the seeds disagree
    assert verdict["prefix · none"].startswith("worse (p ")  # 0.41 vs 0.81
    # One seed: it assumes the largest seed spread of the others (lora · 4bit's, from 2 seeds: 1 degree of freedom)
    assert verdict["prefix · 4bit"].startswith("no detectable difference")
    prefix = rows["prefix · none"]
    assert float(prefix["diff_vs_best"]) == pytest.approx(-0.40)
    assert float(prefix["diff_ci_low"]) < -0.40 < float(prefix["diff_ci_high"]) < 0
    assert float(prefix["p_value"]) <= float(prefix["p_holm"]) < 0.05  # Holm over the 4 comparisons
    lora = rows["lora · none"]
    assert float(lora["diff_ci_low"]) < 0 < float(lora["diff_ci_high"]) and float(lora["p_holm"]) > 0.05
    assert float(lora["mde"]) > 0.02 and int(lora["seeds_to_halve"]) > 2
    comparisons = read_csv(tmp_path / "out" / "comparisons.csv")
    assert [(c["a"], c["b"]) for c in comparisons] == [(name, "full · none") for name in list(rows)[1:]]
    assert {c["questions"] for c in comparisons} == {"100"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Paired over 100 held-out questions." in report
    assert "| Δ vs best [95% CI] | p (Holm) | verdict |" in report
    assert "±1 sd" not in report and "spread" not in report.split("|")[0].replace("seeds' spread", "")


def test_compare_names_any_two_configurations(sweep, tmp_path):
    proc = report_cli(sweep, "--out", tmp_path / "out", "--compare", "lora none", "prefix · none")
    assert proc.returncode == 0, proc.stderr
    assert "| lora · none | prefix · none | 2/2 | 100 | +0.380 [" in proc.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Comparisons you named" in report and "better (p " in report.split("## Comparisons you named")[1]
    assert len(read_csv(tmp_path / "out" / "comparisons.csv")) == 5  # 4 against the best, then the one named
    # a pair that is also a comparison against the best is tested once, and still shown as named
    summary = write_report([sweep], tmp_path / "out3", pairs=(("lora none", "full none"),))
    assert [(c["a"]["label"], c["b"]["label"]) for c in summary["comparisons"] if c["named"]] == [
        ("lora · none", "full · none")
    ]
    assert len(summary["comparisons"]) == 4 and "## Comparisons you named" in summary["report"].read_text()
    proc = report_cli(sweep, "--out", tmp_path / "out2", "--compare", "lora", "prefix · none")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: --compare: no configuration 'lora' (the table has: full · none, lora · none")


def test_without_answers_or_seeds_the_report_says_what_its_verdicts_stand_on(tmp_path):
    """Runs from before answers.json (or a metric with no per-question record) are compared over seeds alone; with
    one seed per configuration there is no verdict, only the gap."""
    for job, (strategy, seed, accuracy) in enumerate(
        [("full", 1, 0.8), ("full", 2, 0.84), ("lora", 1, 0.5), ("lora", 2, 0.54)]
    ):
        write_run(tmp_path / "old", job, strategy, seed=seed, accuracy=accuracy, questions=0)
    summary = write_report([tmp_path / "old"], tmp_path / "out")
    (comparison,) = summary["comparisons"]
    assert not comparison["paired"] and comparison["verdict"].startswith("worse (p")  # Welch over 2 + 2 seeds
    assert "1 comparison(s) used run-level numbers only" in summary["report"].read_text()
    for job, (strategy, accuracy) in enumerate([("full", 0.8), ("lora", 0.5)]):
        write_run(tmp_path / "single", job, strategy, accuracy=accuracy)
    summary = write_report([tmp_path / "single"], tmp_path / "out2")
    (comparison,) = summary["comparisons"]
    assert comparison["p"] is None and comparison["diff"] == pytest.approx(-0.3)
    assert comparison["verdict"] == "seed spread unmeasured (1 seed per configuration): no verdict"
    assert "the seed spread is unmeasured: add seeds" in summary["report"].read_text()


def test_the_reward_win_rate_is_paired_per_question(tmp_path):
    """eval.reward.win_rate (a reward model judging the tuned answer against the base's): each question's win in
    answers.json is what the verdict pairs."""
    for job, (objective, seed, wins) in enumerate([("dpo", 1, 70), ("dpo", 2, 74), ("rlhf", 1, 40), ("rlhf", 2, 44)]):
        run_dir = write_run(tmp_path / "sweep", job, "lora", seed=seed, accuracy=0.5, overrides=(f"+o={objective}",))
        results = json.loads((run_dir / "results.json").read_text())
        results["eval"]["reward"] = {"win_rate": wins / 100}
        (run_dir / "results.json").write_text(json.dumps(results))
        answers = [{"question": f"q{q}?", "reward_win": 1.0 if q < wins else 0.0} for q in range(100)]
        (run_dir / "answers.json").write_text(json.dumps({"answers": answers}))
    summary = write_report([tmp_path / "sweep"], tmp_path / "out", metric="eval.reward.win_rate")
    (comparison,) = summary["comparisons"]
    assert comparison["paired"] and comparison["questions"] == 100
    assert comparison["diff"] == pytest.approx(-0.30) and comparison["verdict"].startswith("worse (p")


def test_a_loss_metric_ranks_the_lowest_first(sweep, tmp_path):
    summary = write_report([sweep], tmp_path / "out", metric="eval.loss")
    rows = read_csv(tmp_path / "out" / "report.csv")
    assert summary["best"] == "full · none" and rows[0]["verdict"] == "best"
    verdict = {r["configuration"]: r["verdict"] for r in rows}
    assert verdict["prefix · none"].startswith("worse")  # a higher loss: worse, through the per-question loss sums
    assert [float(r["eval.loss_mean"]) for r in rows] == sorted(float(r["eval.loss_mean"]) for r in rows)


def test_runs_that_did_not_finish_are_listed_with_their_reasons(sweep, tmp_path):
    summary = write_report([sweep], tmp_path / "out")
    assert summary["statuses"] == {"ok": 9, "failed": 1, "skipped": 2, "running": 2, "unreadable": 1}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "15 runs: 9 ok, 1 failed, 2 skipped, 2 running, 1 unreadable" in report
    section = report.split("## Runs not in the table")[1]
    assert "| tiny-prefix-sft-4bit-s2 | failed | RuntimeError: CUDA out of memory |" in section
    assert section.count("| skipped | strategy=full trains base weights, 4bit refuses |") == 2
    assert "| tiny-lora-sft-8bit-s1 | running | no final status: the run crashed" in section
    assert "| 13_broken | unreadable | results.json: JSONDecodeError" in section
    assert "| cut-short | running |" in section
    runs = {r["run_name"]: r for r in read_csv(tmp_path / "out" / "runs.csv")}
    assert len(runs) == 15  # the decoy under wandb/ is not a run
    assert runs["tiny-prefix-sft-4bit-s2"]["status"] == "failed"
    assert runs["tiny-prefix-sft-4bit-s2"]["reason"] == "RuntimeError: CUDA out of memory"
    assert runs["tiny-full-sft-4bit-s1"]["reason"].startswith("strategy=full")
    assert runs["tiny-lora-sft-4bit-s2"]["eval.answer_accuracy"] == "0.8"
    assert runs["tiny-lora-sft-4bit-s2"]["quant"] == "4bit" and runs["tiny-lora-sft-4bit-s2"]["seed"] == "2"


def test_the_columns_are_what_the_sweep_varied(tmp_path):
    d = tmp_path / "lr_sweep"
    for job, (lr, seed, accuracy) in enumerate(
        [("0.001", 1, 0.6), ("0.001", 2, 0.62), ("0.003", 1, 0.7), ("0.003", 2, 0.72)]
    ):
        write_run(
            d,
            job,
            "lora",
            seed=seed,
            accuracy=accuracy,
            history=False,
            overrides=(f"optimizer.lr={lr}", "strategy.peft.r=8", "hydra.job.chdir=false"),
        )
    summary = write_report([d], d / "report")
    header = summary["table"].splitlines()[0]
    assert header.startswith("| optimizer.lr | n | answer_accuracy (mean ± sd) |")  # not strategy, r or hydra.*
    assert summary["configurations"] == 2 and summary["best"] == "lr=0.003"
    report = (d / "report" / "report.md").read_text()
    assert "`loss_curves.png` not drawn: no run recorded a loss history" in report  # said, not silently missing
    assert (d / "report" / "quality_vs_params.png").is_file()


def test_qat_is_shown_beside_the_ptq_run_of_the_same_strategy_and_scheme(tmp_path):
    """The compress sweep's QAT-vs-PTQ view: a QAT configuration's "PTQ baseline accuracy" is the mean accuracy of
    the quant=ptq_* configuration with the same strategy and scheme in the same report; nothing for the others."""
    d = tmp_path / "compress"

    def converted(method, scheme):
        return {"method": method, "scheme": scheme, "group_size": 32, "quantized_layers": 28}

    runs = [
        ("full", "qat_int8_int4", 0.80, converted("qat", "int8_int4")),
        ("full", "ptq_int8_int4", 0.70, converted("ptq", "int8_int4")),
        ("lora", "qat_int8_int4", 0.60, converted("qat", "int8_int4")),
        ("lora", "ptq_int8_int4", 0.50, converted("ptq", "int8_int4")),
        ("full", "qat_int4_weight", 0.85, converted("qat", "int4_weight")),  # no PTQ run of its scheme
        ("full", "none", 0.90, None),
    ]
    for job, (strategy, quant, accuracy, compression) in enumerate(runs):
        for seed in (1, 2):
            write_run(d, 2 * job + seed, strategy, quant, seed, accuracy + seed / 100, compression=compression)
    write_report([d], d / "report")
    rows = {(r["strategy"], r["quant"]): r for r in read_csv(d / "report" / "report.csv")}
    assert float(rows["full", "qat_int8_int4"]["ptq_answer_accuracy"]) == pytest.approx(0.715)
    assert float(rows["lora", "qat_int8_int4"]["ptq_answer_accuracy"]) == pytest.approx(0.515)
    for unpaired in (("full", "qat_int4_weight"), ("full", "ptq_int8_int4"), ("full", "none")):
        assert rows[unpaired]["ptq_answer_accuracy"] == ""
    assert "PTQ baseline accuracy" in (d / "report" / "report.md").read_text()


def test_a_seed_sweep_is_one_configuration_named_after_its_runs(tmp_path):
    for seed, accuracy in [(1, 0.7), (2, 0.8), (3, 0.75)]:
        write_run(tmp_path / "seeds", seed, "lora", seed=seed, accuracy=accuracy)
    summary = write_report([tmp_path / "seeds"], tmp_path / "out")
    assert summary["configurations"] == 1 and summary["best"] == "tiny-lora-sft-none"
    assert summary["table"].splitlines()[0].startswith("| configuration | n |")
    assert summary["table"].splitlines()[2].startswith("| tiny-lora-sft-none | 3 | 0.750 ± 0.050 |")


def test_no_results_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    proc = report_cli(tmp_path / "empty")
    assert proc.returncode == 2
    assert proc.stderr == f"error: {tmp_path / 'empty'}: {NO_RESULTS}\n"
    proc = report_cli(tmp_path / "missing")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {tmp_path / 'missing'}: no such directory") and proc.stderr.count("\n") == 1


def sweep_end(sweep_dir: Path, **config) -> None:
    SweepReport().on_multirun_end(config=OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}, **config}))


def test_callback_fails_the_sweep_when_a_run_failed(sweep, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep_end(sweep)
    assert stopped.value.code == 1
    out, err = capsys.readouterr()
    assert "15 runs: 9 ok, 1 failed, 2 skipped, 2 running, 1 unreadable; report:" in out
    assert "error: 4 of 15 runs failed or did not finish" in err
    assert (sweep / "report" / "report.md").is_file()


def test_callback_passes_when_runs_were_only_skipped(tmp_path, capsys):
    d = tmp_path / "sweep"
    write_run(d, 0, "lora", accuracy=0.7)
    write_run(d, 1, "full", "4bit", status="skipped", reason="strategy=full trains base weights")
    sweep_end(d, metric="eval.loss")  # no SystemExit
    assert f"2 runs: 1 ok, 1 skipped; report: {d / 'report' / 'report.md'}" in capsys.readouterr().out
    assert "eval.loss_mean" in read_csv(d / "report" / "report.csv")[0]  # ranked by the metric the runs returned


def test_callback_without_results_exits_1_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep_end(tmp_path)
    assert stopped.value.code == 1
    assert capsys.readouterr().err == f"error: {tmp_path}: {NO_RESULTS}\n"


def test_optuna_search_names_the_best_run(tmp_path):
    d = tmp_path / "search"
    for job, (lr, r, accuracy) in enumerate([(0.001, 8, 0.6), (0.003, 16, 0.8), (0.003, 8, 0.7)]):
        write_run(d, job, "lora", accuracy=accuracy, overrides=(f"optimizer.lr={lr}", f"strategy.peft.r={r}"))
    (d / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  optimizer.lr: 0.003\n  strategy.peft.r: 16\nbest_value: 0.8\n"
    )
    write_report([d], d / "report")
    search = (d / "report" / "report.md").read_text().split("## Search (optuna)")[1].split("## Plots")[0]
    best = d / "1_tiny-lora-sft-none-s1"
    assert "- best value: 0.8" in search and "`optimizer.lr=0.003`, `strategy.peft.r=16`" in search
    assert f"- run: `{best}` (ok); its config: `{best / 'config.yaml'}`" in search
    assert "2_tiny" not in search


def test_wandb_offline_logs_the_table_under_the_report(sweep, tmp_path):
    out = tmp_path / "out"
    proc = report_cli(sweep, "--out", out, "--wandb", env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    tables = {p.name.split("_")[0]: p for p in runs[0].rglob("*.table.json")}
    assert sorted(tables) == ["comparisons", "configurations"]
    table = json.loads(tables["configurations"].read_text())
    assert table["columns"][:3] == ["configuration", "strategy", "quant"]
    assert [row[0] for row in table["data"]][:2] == ["full · none", "lora · none"]
    assert table["columns"][-8:] == [
        "diff_vs_best",
        "diff_ci_low",
        "diff_ci_high",
        "p_value",
        "p_holm",
        "mde",
        "seeds_to_halve",
        "verdict",
    ]
    comparisons = json.loads(tables["comparisons"].read_text())
    assert [row[:2] for row in comparisons["data"]][0] == ["lora · none", "full · none"]
    assert len(list(runs[0].rglob("media/images/**/*.png"))) == len(PLOTS)
    assert b"report-2026-11-23_10-00-00" in next(runs[0].glob("*.wandb")).read_bytes()  # the sweep's group


def test_help_does_not_import_plotting_or_wandb():
    code = "import sys, ftlab.report; print(sorted({'matplotlib', 'wandb', 'torch', 'scipy'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.stdout.strip() == "[]"
