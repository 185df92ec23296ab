"""Every experiment and sweep preset runs on the tiny model (the default HR experiment in full: test_hr_bot.py)."""

import pytest
from helpers import QUICK, check_export, check_sweep_preset, compose_cfg, read_results, run_cli, run_sweep_preset
from omegaconf import OmegaConf

from ftlab.core.files import PROJECT_ROOT

pytestmark = pytest.mark.slow
# Run elsewhere, and not twice (each CLI process costs about 6 s of imports): hr_bot, the default experiment, in full
# (tests/test_hr_bot.py); the RLHF pipeline's presets (pipeline_reward, then pipeline_compare: pipeline_dpo and
# pipeline_rlhf) chained as `make pipeline` chains them (tests/test_preference.py); compress, whose QAT, PTQ and
# sparse runs tests/test_compress.py reads; fair_ablation's two stages (tests/test_fair.py), search_lora's trials
# (tests/test_sweeps.py), and ablation, whose grid (full, lora, prefix x none, 4bit) is part of
# full_vs_peft_vs_quant's. Every preset's header command composes (tests/test_conf_files.py).
RUN_ELSEWHERE = {"hr_bot", "pipeline_reward", "pipeline_dpo", "pipeline_rlhf", "pipeline_compare"}
RUN_ELSEWHERE |= {"compress", "fair_ablation", "search_lora", "ablation"}
EXPERIMENTS = sorted(p.stem for p in (PROJECT_ROOT / "experiments").glob("*.yaml") if p.stem not in RUN_ELSEWHERE)
SWEEPS = sorted(p for p in (PROJECT_ROOT / "sweeps").glob("*.yaml") if p.stem not in RUN_ELSEWHERE)


@pytest.mark.parametrize("preset", EXPERIMENTS)
def test_experiment_preset_runs(preset, tmp_path):
    overrides = [f"experiment={preset}"]
    if compose_cfg(overrides).model.path != "tiny":  # a hub model: run the preset's recipe on the tiny model
        overrides += ["model=tiny", "model.dtype=float32"]
    code, out = run_cli([*overrides, *QUICK, f"hydra.run.dir={tmp_path}"])
    assert code == 0, out[-3000:]
    assert read_results(tmp_path)["status"] == "ok"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Each sweep preset run once: {name: (sweep dir, number of points)}."""
    done = {}

    def get(name):
        if name not in done:
            sweep_dir = tmp_path_factory.mktemp(name)
            done[name] = sweep_dir, run_sweep_preset(name, sweep_dir)[0]
        return done[name]

    return get


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.stem)
def test_sweep_preset_runs_every_point_and_reports(sweep, swept):
    check_sweep_preset(sweep.stem, *swept(sweep.stem))


def test_a_sweep_skips_incompatible_pairs_and_runs_the_rest(swept):
    """full_vs_peft_vs_quant: a 4-bit base cannot train its own weights (full) or ftlab's adapter layers: those two
    points are recorded as skipped with the way out; the other ten run."""
    sweep_dir, _ = swept("full_vs_peft_vs_quant")
    runs = {p.name.split("_", 1)[1]: read_results(p) for p in sweep_dir.iterdir() if (p / "results.json").exists()}
    skipped = {name for name, r in runs.items() if r["status"] == "skipped"}
    assert skipped == {"tiny-full-sft-4bit-s42", "tiny-adapter-sft-4bit-s42"}
    assert all("strategy=lora" in runs[name]["reason"] for name in skipped)
    assert all(r["status"] == "ok" for name, r in runs.items() if name not in skipped)


@pytest.mark.parametrize(
    "strategy,files",
    [("adapter", ["adapter.safetensors"]), ("full", ["model.safetensors"]), ("prefix", ["adapter_model.safetensors"])],
)
def test_other_strategies_save_and_reload(strategy, files, swept):
    """Each strategy's saved model/ reloads (ftlab.model.source.load_run) to the held-out loss its run recorded."""
    from ftlab.data.load import eval_questions
    from ftlab.eval.answers import answer_loss
    from ftlab.model.source import load_run

    sweep_dir, _ = swept("full_vs_peft_vs_quant")
    (run_dir,) = [p for p in sweep_dir.glob(f"*_tiny-{strategy}-sft-none-s42")]
    assert read_results(run_dir)["status"] == "ok"
    for name in files:
        assert (run_dir / "model" / name).exists(), name
    model, tokenizer, cfg = load_run(run_dir)
    loss = answer_loss(model, tokenizer, eval_questions(cfg.data, 6), cfg.data.system_prompt)[0]
    assert loss == pytest.approx(read_results(run_dir)["eval"]["loss"], rel=1e-4)


@pytest.mark.parametrize("strategy", ["ia3", "adapter"])
def test_exported_model_loads_alone_and_matches_the_run(strategy, swept, tmp_path):
    """python -m ftlab.merge on float32 runs (test_export.py has the bfloat16 case and the checks)."""
    sweep_dir, _ = swept("full_vs_peft_vs_quant")
    (run_dir,) = sweep_dir.glob(f"*_tiny-{strategy}-sft-none-s42")
    check_export(run_dir, tmp_path / "export", strategy, "float32")


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
