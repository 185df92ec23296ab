"""Sweeps through Hydra's own launcher plugins (conf/hydra/launcher/): the presets compose into the plugins' configs,
and the joblib and submitit_local launchers run a sweep's runs in separate processes at the same time."""

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from helpers import read_results
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ftlab.core.files import PROJECT_ROOT

LAUNCHERS = PROJECT_ROOT / "conf" / "hydra" / "launcher"
PLUGIN = "hydra_plugins.hydra_{}_launcher.{}_launcher."
TARGETS = {
    "slurm": PLUGIN.format("submitit", "submitit") + "SlurmLauncher",
    "local": PLUGIN.format("submitit", "submitit") + "LocalLauncher",
    "parallel": PLUGIN.format("joblib", "joblib") + "JoblibLauncher",
}
# Small runs; W&B offline because its run logs name the process (pid) and the time of every line.
SMALL = [
    "train.max_steps=3",
    "train.batch_size=4",
    "data.max_train_examples=24",
    "eval.max_questions=2",
    "eval.max_new_tokens=12",
    "train.save_steps=0",
    "wandb.mode=offline",
]


def launcher_cfg(name: str, overrides=()) -> dict:
    """hydra.launcher as `python -m ftlab hydra/launcher=NAME ...` composes it (interpolations left as written)."""
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"hydra/launcher={name}", "hydra.sweep.dir=/sweeps/x", *overrides],
            return_hydra_config=True,
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    launcher["submitit_folder_resolved"] = OmegaConf.select(cfg, "hydra.launcher.submitit_folder", default=None)
    return launcher


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_launcher_preset_composes_into_the_plugin_config(name):
    text = (LAUNCHERS / f"{name}.yaml").read_text().splitlines()
    assert text[0] == "# @package hydra.launcher"  # Hydra reads the header only before any other comment line
    assert text[1].startswith(f"# python -m ftlab -m hydra/launcher={name} ")
    launcher = launcher_cfg(name)
    assert launcher["_target_"] == TARGETS[name]
    if name == "parallel":
        assert launcher["n_jobs"] == -1 and launcher["prefer"] == "processes"
        return
    assert launcher["submitit_folder"].startswith("${hydra.sweep.dir}/")
    assert launcher["submitit_folder_resolved"] == "/sweeps/x/.submitit/%j"  # inside the sweep directory
    assert launcher["tasks_per_node"] == 1 and launcher["timeout_min"] > 0
    if name == "slurm":
        assert launcher["partition"] is None  # the cluster's default until set
        assert launcher["gpus_per_node"] == 1 and launcher["cpus_per_task"] >= 1 and launcher["mem_gb"] > 0
        assert launcher["array_parallelism"] >= 1 and launcher["nodes"] == 1


def test_slurm_keys_are_set_from_the_command_line_and_misspelt_ones_refused():
    launcher = launcher_cfg(
        "slurm",
        [
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.timeout_min=600",
            "hydra.launcher.array_parallelism=2",
            "hydra.launcher.setup=[module load cuda]",
        ],
    )
    assert launcher["partition"] == "gpu" and launcher["gpus_per_node"] == 4 and launcher["timeout_min"] == 600
    assert launcher["array_parallelism"] == 2 and launcher["setup"] == ["module load cuda"]
    with pytest.raises(Exception, match="partiton"):
        launcher_cfg("slurm", ["hydra.launcher.partiton=gpu"])  # the plugin's schema is structured: typos fail


def sweep(args, sweep_dir: Path, env=None):
    """`python -m ftlab -m ARGS` in a subprocess: (returncode, output, the sweep process's pid)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftlab", "-m", *args, f"hydra.sweep.dir={sweep_dir}"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out, proc.pid


# W&B's debug.log: "2026-11-23 14:13:15,274 INFO    MainThread:12844 [wandb_setup.py:...] ..."
WANDB_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) +[A-Z]+ +\S*:(\d+) \[")


def run_process(run_dir: Path):
    """The process a run trained in and when: (pid, first, last) from its W&B offline run's debug.log."""
    log = next((run_dir / "wandb").glob("offline-run-*/logs/debug.log"))
    lines = [m for m in map(WANDB_LINE.match, log.read_text().splitlines()) if m]
    pids = {int(m[2]) for m in lines}
    assert len(pids) == 1, pids
    times = [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") for m in lines]
    return pids.pop(), min(times), max(times)


def check_sweep(sweep_dir: Path, seeds: list, parent_pid: int) -> list:
    """Every run finished with its model and answers; they ran in processes of their own, all at the same time; the
    parent's report lists them all."""
    runs = sorted(p for p in sweep_dir.iterdir() if (p / "results.json").exists())
    assert [read_results(p)["seed"] for p in runs] == seeds
    for run in runs:
        assert read_results(run)["status"] == "ok", run
        assert (run / "model" / "model.safetensors").stat().st_size > 0
        assert (run / "answers.json").is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    processes = [run_process(run) for run in runs]
    pids = [pid for pid, _, _ in processes]
    assert len(set(pids)) == len(runs) and parent_pid not in pids, pids
    assert max(start for _, start, _ in processes) < min(end for _, _, end in processes), processes  # overlapping
    report = (sweep_dir / "report" / "report.md").read_text()
    assert f"{len(runs)} runs: {len(runs)} ok" in report
    rows = (sweep_dir / "report" / "runs.csv").read_text().splitlines()[1:]
    assert len(rows) == len(runs) and all(",ok," in row for row in rows)
    return runs


@pytest.mark.slow
def test_parallel_preset_runs_runs_side_by_side(tmp_path):
    # Two runs show the runs share the machine (2 cores here); the preset's n_jobs (-1, one per core) is checked above.
    code, out, pid = sweep(["hydra/launcher=parallel", "seed=1,2", *SMALL], tmp_path)
    assert code == 0, out[-3000:]
    assert "Joblib.Parallel(" in out and "n_jobs=-1" in out and "is launching 2 jobs" in out
    check_sweep(tmp_path, [1, 2], pid)


@pytest.mark.slow
def test_local_preset_runs_through_submitit(tmp_path):
    """submitit_local: SLURM's launch path (a pickled job in a process of its own) on this machine, one run."""
    code, out, pid = sweep(["hydra/launcher=local", "seed=3", *SMALL], tmp_path)
    assert code == 0, out[-3000:]
    runs = [p for p in tmp_path.iterdir() if (p / "results.json").exists()]
    assert len(runs) == 1 and read_results(runs[0])["status"] == "ok"
    assert run_process(runs[0])[0] != pid  # the run ran in the submitted job's process, not the launching one
    jobs = [p for p in (tmp_path / ".submitit").iterdir() if list(p.glob("*_result.pkl"))]
    assert len(jobs) == 1, jobs  # the submitted job, with its pickled result and logs
