"""Every experiment and sweep preset runs on the tiny model (the default HR experiment in full: test_hr_bot.py)."""

import math

import pytest
from helpers import QUICK, compose_cfg, read_results, run_cli
from omegaconf import OmegaConf

from ftlab.core.files import PROJECT_ROOT

pytestmark = pytest.mark.slow
# hr_bot, the default experiment, runs in full in tests/test_hr_bot.py
EXPERIMENTS = sorted(p.stem for p in (PROJECT_ROOT / "experiments").glob("*.yaml") if p.stem != "hr_bot")
# Run elsewhere, and not twice: fair_ablation's two stages (tests/test_fair.py), search_lora's trials
# (tests/test_sweeps.py), and ablation, whose grid (full, lora, prefix x none, 4bit) is part of
# full_vs_peft_vs_quant's. Every preset's header command composes (tests/test_conf_files.py).
RUN_ELSEWHERE = {"fair_ablation", "search_lora", "ablation"}
SWEEPS = sorted(p for p in (PROJECT_ROOT / "sweeps").glob("*.yaml") if p.stem not in RUN_ELSEWHERE)


@pytest.fixture(scope="module")
def earlier_runs(tmp_path_factory):
    """What the pipeline presets name (model.path=SFT run, eval.reward_model=reward run): quick runs of their own."""
    root = tmp_path_factory.mktemp("earlier")
    for name, overrides in [("sft", ["strategy=lora"]), ("reward", ["objective=reward", f"model.path={root / 'sft'}"])]:
        code, out = run_cli([*QUICK, *overrides, f"hydra.run.dir={root / name}"])
        assert code == 0, out[-3000:]
    return {"model.path": root / "sft", "eval.reward_model": root / "reward"}


def needed(overrides: list, earlier_runs) -> list:
    """The run directories a preset leaves to the command line (`<...>` placeholders), from earlier_runs."""
    cfg = compose_cfg(overrides)
    return [f"{key}={value}" for key, value in earlier_runs.items() if str(OmegaConf.select(cfg, key)).startswith("<")]


@pytest.mark.parametrize("preset", EXPERIMENTS)
def test_experiment_preset_runs(preset, tmp_path, request):
    overrides = [f"experiment={preset}"]
    if "<the " in (PROJECT_ROOT / "experiments" / f"{preset}.yaml").read_text():
        overrides += needed(overrides, request.getfixturevalue("earlier_runs"))
        assert len(overrides) > 1, "the preset's placeholders were not found"
    elif compose_cfg(overrides).model.path != "tiny":  # a hub model: run the preset's recipe on the tiny model
        overrides += ["model=tiny", "model.dtype=float32"]
    code, out = run_cli([*overrides, *QUICK, f"hydra.run.dir={tmp_path}"])
    assert code == 0, out[-3000:]
    results = read_results(tmp_path)
    assert results["status"] == "ok"
    for key, value in (o.split("=", 1) for o in overrides if o.startswith(("model.path=", "eval.reward_model="))):
        assert OmegaConf.load(tmp_path / "config.yaml")[key.split(".")[0]][key.split(".")[1]] == value


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.stem)
def test_sweep_preset_runs_every_point_and_reports(sweep, tmp_path, request):
    preset = OmegaConf.load(sweep)
    # multirun without -m; the ablation presets' harness task on 8 of its questions (a quarter second per model)
    overrides = [f"sweep={sweep.stem}", *QUICK, "eval.harness.limit=8", f"hydra.sweep.dir={tmp_path}"]
    if "RUN_DIR" in sweep.read_text():  # a pipeline stage: it names earlier runs
        overrides += [f"{k}={v}" for k, v in request.getfixturevalue("earlier_runs").items()]
    params = dict(preset.hydra.sweeper.params)
    if "seed" in params and len(params) > 1:  # every point of the grid, for one seed: seeds differ only in seed
        overrides.append("seed=1")
        del params["seed"]
    expected = math.prod(len(str(values).split(",")) for values in params.values())
    code, out = run_cli(overrides)
    assert code == 0, out[-3000:]
    runs = [read_results(p) for p in tmp_path.iterdir() if (p / "results.json").exists()]
    statuses = [r["status"] for r in runs]
    assert len(statuses) == expected
    assert set(statuses) <= {"ok", "skipped"} and "ok" in statuses
    if OmegaConf.select(preset, "data.retention"):  # the ablation presets measure forgetting in every run
        assert all("retention" in r and "harness" in r for r in runs if r["status"] == "ok")
    for name in ("report.md", "report.csv", "runs.csv"):
        assert (tmp_path / "report" / name).stat().st_size > 0, name


def test_the_ablation_grid_is_run_within_full_vs_peft_vs_quant():
    """Why the ablation preset is not run above: every point of it, bar the seed, is a point of the bigger grid."""
    grids = {}
    for name in ("ablation", "full_vs_peft_vs_quant"):
        preset = OmegaConf.load(PROJECT_ROOT / "sweeps" / f"{name}.yaml")
        params = {k: set(str(v).split(",")) for k, v in preset.hydra.sweeper.params.items() if k != "seed"}
        grids[name] = (
            OmegaConf.to_container(preset.defaults),
            {k: v for k, v in preset.items() if k != "hydra"},
            params,
        )
    (defaults, settings, small), (big_defaults, big_settings, big) = grids["ablation"], grids["full_vs_peft_vs_quant"]
    assert defaults == big_defaults and settings == big_settings  # the same runs, point for point
    assert small.keys() == big.keys() and all(small[k] <= big[k] for k in small)
