"""sweep=fair_ablation end to end on the tiny model (tiny budgets): the two stages, the choice made on the validation
split alone, the report with its tuning section, sensitivity plot and paired verdicts; and real runs at the default
rates whose real difference the verdict finds."""

import csv
import json
import random
import re

import pytest
from helpers import read_results, run_cli

from ftlab.core.files import PROJECT_ROOT

# Two arms, two rates each, two confirmation seeds: what the preset does, at the smallest budget.
SMOKE = [
    "sweep=fair_ablation",
    "strategy=full,prefix",
    "tune.trials=2",
    "tune.trial=range(0,2)",
    "train.max_steps=8",
    "train.batch_size=8",
    "train.eval_steps=0",
    "data.max_train_examples=48",
    "eval.max_questions=16",
    "eval.max_new_tokens=6",  # the verdicts here read losses; the answers only need to exist
    "wandb.mode=disabled",
]


def test_the_choice_reads_only_validation_loss_and_skips_what_cannot_train():
    from ftlab.report.fair import choose

    def run(arm, trial, lr, status="ok", validation=None, accuracy=None):
        results = {"tune": {"arm": arm, "trial": trial, "lr": lr}, "status": status}
        results["eval"] = {"validation_loss": validation, "answer_accuracy": accuracy, "loss": accuracy}
        return {"results": results, "status": status, "dir": f"{arm}-{trial}"}

    runs = [
        run("lora", 0, 1e-3, validation=0.5, accuracy=0.9),  # the best held-out accuracy: not what chooses
        run("lora", 1, 1e-2, validation=0.2, accuracy=0.1),
        run("full", 0, 3e-4, status="skipped"),  # full on a 4-bit base: every trial skipped
        run("full", 1, 1e-2, status="skipped"),
        run("prefix", 0, 1e-3, status="failed"),  # diverged at both rates
        run("prefix", 1, 1e-1, status="failed"),
    ]
    tuning = choose(runs)
    assert tuning["chosen"] == {"lora": 1e-2, "full": 3e-4}  # full: stage 2 skips it again; prefix: no rate
    assert tuning["budget"] == 2 and tuning["equal_budget"]
    assert not choose(runs[:3])["equal_budget"]


def test_a_runs_rate_is_its_trial_of_the_range_or_its_arms_choice():
    from helpers import compose_cfg

    def lr(*overrides):
        return compose_cfg(["sweep=fair_ablation", *overrides]).optimizer.lr

    assert lr("strategy=lora", "tune.trial=0") == pytest.approx(1e-3)  # conf/strategy/lora.yaml lr_range
    assert lr("strategy=lora", "tune.trial=3") == pytest.approx(3e-2)
    assert lr("strategy=lora", "tune.trial=1", "tune.trials=3") == pytest.approx((1e-3 * 3e-2) ** 0.5)
    # strategy x quant arms: the arm's name is what tune.arm interpolates
    arm = ["strategy=lora", "quant=4bit", "tune.arm=${strategy.name}_${quant.name}", "tune.trial=null"]
    assert lr(*arm, "++tune.chosen={lora_4bit:0.02,lora_none:0.005}") == 0.02
    for overrides, message in [
        (["strategy=lora", "tune.trial=4"], "tune.trial: expected 0 .. 3 (tune.trials=4), got 4"),
        (["tune.trial=1", "data.validation_split=0"], "data.validation_split: a fair ablation chooses on a validation"),
        ([*arm, "++tune.chosen={lora_none:0.005}"], "tune.chosen: no learning rate for arm 'lora_4bit'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):  # one line, naming the key
            lr(*overrides)


@pytest.fixture(scope="module")
def fair(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("fair")
    code, out = run_cli([*SMOKE, "tune.seeds=2", f"hydra.sweep.dir={sweep_dir}"])
    assert code == 0, out[-3000:]
    return sweep_dir


@pytest.mark.slow
def test_every_arm_gets_the_same_budget_and_its_best_validation_rate(fair):
    tuning = json.loads((fair / "tuning.json").read_text())
    assert tuning["budget"] == 2 and tuning["equal_budget"] and sorted(tuning["arms"]) == ["full", "prefix"]
    for arm, low, high in (("full", 3e-4, 1e-2), ("prefix", 1e-2, 1.0)):  # conf/strategy/<arm>.yaml lr_range
        trials = tuning["arms"][arm]
        assert [t["lr"] for t in trials] == pytest.approx([low, high])
        assert {read_results(t["dir"])["tune"]["arm"] for t in trials} == {arm}
        best = min(trials, key=lambda t: t["validation_loss"])
        assert tuning["chosen"][arm] == best["lr"]
        assert best["validation_loss"] == read_results(best["dir"])["eval"]["validation_loss"]
    # Stage 2: each arm at its chosen rate, seeds 1 and 2, in its own folder.
    confirm = [read_results(d) for d in sorted((fair / "confirm").glob("*_tiny-*"))]
    assert sorted((r["tune"]["arm"], r["seed"]) for r in confirm) == [
        (a, s) for a in ("full", "prefix") for s in (1, 2)
    ]
    for results in confirm:
        assert results["status"] == "ok" and results["tune"]["lr"] == tuning["chosen"][results["tune"]["arm"]]


@pytest.mark.slow
def test_the_report_states_the_budget_the_choice_and_the_verdict(fair):
    report = (fair / "report" / "report.md").read_text()
    assert "## Tuning (stage 1)" in report and "Every arm had 2 trials" in report
    assert "| full | 2 | 0.0003, 0.01 |" in report
    assert (fair / "report" / "lr_sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    with (fair / "report" / "report.csv").open() as f:
        rows = {r["configuration"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"full", "prefix"} and all(r["n"] == "2" for r in rows.values())
    assert sorted(r["verdict"] == "best" for r in rows.values()) == [False, True]  # one best, one with a verdict
    assert "Paired over 16 held-out questions." in report


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    """Full fine-tuning and prefix tuning at their files' default rates, 3 seeds each, 12 steps."""
    sweep_dir = tmp_path_factory.mktemp("defaults")
    overrides = [o for o in SMOKE if o.split("=")[0] not in ("sweep", "tune.trials", "tune.trial", "train.max_steps")]
    code, out = run_cli(["-m", *overrides, "seed=1,2,3", "train.max_steps=12", f"hydra.sweep.dir={sweep_dir}"])
    assert code == 0, out[-3000:]
    return sweep_dir


@pytest.mark.slow
def test_a_real_difference_between_real_runs_gets_p_below_005(defaults, tmp_path):
    """The held-out loss of full fine-tuning is lower than prefix tuning's on the same questions: the verdict says
    so with p < 0.05. Two single runs of one configuration get no verdict at all."""
    from ftlab.report import write_report
    from ftlab.report.collect import load_run, per_question
    from ftlab.report.verdicts import compare

    summary = write_report([defaults], tmp_path, metric="eval.loss")
    (comparison,) = summary["comparisons"]
    assert comparison["a"]["label"] == "prefix" and comparison["b"]["label"] == "full"
    assert comparison["diff"] > 0 and comparison["ci"][0] > 0 and comparison["p_holm"] < 0.05
    assert comparison["verdict"].startswith("worse (p")
    seeds = [load_run(d / "results.json", "eval.loss") for d in sorted(defaults.glob("*_tiny-full-*"))]
    one, two = ([list(per_question(run, "eval.loss").values())] for run in seeds[:2])
    assert compare(one, two)["p"] is None  # seed spread unmeasured: no verdict, whatever the gap


@pytest.mark.slow
def test_the_seed_pairs_benchmark_compares_seeds_of_one_configuration(defaults, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "pairs.json"
    args = [sys.executable, "benchmarks/seed_pairs.py", str(defaults), "--metric", "eval.loss", "--out", str(out)]
    proc = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pairs = json.loads(out.read_text())["pairs"]
    assert sorted((p["configuration"], *p["seeds"]) for p in pairs) == [
        (name, a, b) for name in ("full", "prefix") for a, b in ((1, 2), (1, 3), (2, 3))
    ]
    assert all(0 <= p["p_verdict"] <= 1 for p in pairs) and "6 seed pairs called different" in proc.stdout


@pytest.mark.slow
def test_the_held_out_answers_never_influence_the_choice(fair, tmp_path):
    """Stage 1 again with the held-out questions' answers and facts shuffled among them: the held-out numbers
    change, the validation losses and the chosen rates do not."""
    rows = [json.loads(line) for line in (PROJECT_ROOT / "data" / "hr" / "heldout.jsonl").read_text().splitlines()]
    shuffled = [
        r | {"answer": o["answer"], "facts": o["facts"]} for r, o in zip(rows, random.Random(0).sample(rows, len(rows)))
    ]
    heldout = tmp_path / "shuffled.jsonl"
    heldout.write_text("".join(json.dumps(r) + "\n" for r in shuffled))
    one_arm = [o.replace("strategy=full,prefix", "strategy=full") for o in SMOKE]  # full's two trials suffice
    code, out = run_cli([*one_arm, "tune.seeds=0", f"data.eval={heldout}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert code == 0, out[-3000:]
    assert not (tmp_path / "sweep" / "confirm").exists()  # tune.seeds=0: stage 1 only
    original = json.loads((fair / "tuning.json").read_text())
    again = json.loads((tmp_path / "sweep" / "tuning.json").read_text())
    assert again["chosen"] == {"full": original["chosen"]["full"]}
    for before, after in zip(original["arms"]["full"], again["arms"]["full"], strict=True):
        assert after["validation_loss"] == before["validation_loss"]
        # ...while what the held-out questions measure did change
        assert read_results(after["dir"])["eval"]["loss"] != read_results(before["dir"])["eval"]["loss"]
