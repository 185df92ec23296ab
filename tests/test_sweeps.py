"""Sweeps a researcher can trust: identical reruns, a failed run reported (not dropped), W&B groups, the data cache."""

import csv
import json

import pytest
import yaml
from helpers import QUICK, read_results, run_cli

pytestmark = pytest.mark.slow
STEPS = [o for o in QUICK if not o.startswith("train.max_steps")] + ["train.max_steps=6", "train.logging_steps=1"]


def test_same_config_and_seed_give_the_same_losses(tmp_path):
    """Reproducibility on CPU: a fresh process and the runs of one sweep process (seed 42 twice, then 7) give the
    same losses for the same seed, and the cached tokenized data gives exactly what fresh preparation gives."""
    code, out = run_cli([*STEPS, "strategy=lora", "train.cache_tokenized=false", f"hydra.run.dir={tmp_path / 'fresh'}"])
    assert code == 0, out[-3000:]
    code, out = run_cli(["-m", *STEPS, "strategy=lora", "seed=42,42,7", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert code == 0, out[-3000:]
    cached, cached_again, other_seed = [read_results(p) for p in sorted((tmp_path / "sweep").glob("[0-9]_*"))]
    fresh = read_results(tmp_path / "fresh")
    assert len(fresh["history"]["train"]) == 6 and len(fresh["history"]["eval"]) >= 5
    assert fresh["history"] == cached["history"] == cached_again["history"]
    assert other_seed["history"]["train"] != fresh["history"]["train"]  # the check can fail
    assert (fresh["data"]["cache"], cached_again["data"]["cache"]) == ("off", "hit")


# A diverging run in a sweep (failed, reported, retried): tests/test_tracking.py, on the trackers' sweep.


def test_a_sweep_shares_one_wandb_group_with_choices_as_tags(tmp_path):
    overrides = [o for o in QUICK if not o.startswith("wandb.")] + ["wandb.mode=offline"]
    code, out = run_cli(["-m", "strategy=lora", "seed=1,2", *overrides, f"hydra.sweep.dir={tmp_path}"])
    assert code == 0, out[-3000:]
    runs = sorted(p for p in tmp_path.iterdir() if (p / "results.json").exists())
    assert [read_results(p)["run_name"] for p in runs] == ["tiny-lora-sft-none-s1", "tiny-lora-sft-none-s2"]
    for run in runs:
        record = read_results(run)["wandb"]
        assert record["group"] == tmp_path.name
        log = next((run / "wandb").rglob("*.wandb")).read_bytes()
        for key in (
            tmp_path.name.encode(),
            b"strategy=lora",
            b"quant=none",
            b"final/tokens_per_s",
            b"params/trainable",
            b"eval/answer_accuracy",
        ):
            assert key in log, key
    with open(tmp_path / "report" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["n"] == "2", rows  # the two seeds are one configuration


def test_the_optuna_search_preset_reports_its_best_trial(tmp_path):
    code, out = run_cli(["sweep=search_lora", "hydra.sweeper.n_trials=2", *QUICK, f"hydra.sweep.dir={tmp_path}"])
    assert code == 0, out[-3000:]
    trials = [read_results(p) for p in tmp_path.iterdir() if (p / "results.json").exists()]
    assert len(trials) == 2 and all(t["status"] == "ok" for t in trials)
    assert len({json.dumps(sorted(t["overrides"])) for t in trials}) == 2  # the sampler tried two settings
    best = (tmp_path / "optimization_results.yaml").read_text()
    assert "optimizer.lr" in best and "strategy.peft.r" in best
    # scored on the validation split, never on the held-out questions
    assert yaml.safe_load(best)["best_value"] == min(t["eval"]["validation_loss"] for t in trials)
    assert "Search" in (tmp_path / "report" / "report.md").read_text()
