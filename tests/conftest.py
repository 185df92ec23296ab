"""Shared fixtures: composing the real configs, the tiny model, and running the CLI as a user does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ftlab.config import register
from ftlab.paths import PROJECT_ROOT

os.environ.setdefault("WANDB_MODE", "offline")  # tests never talk to a W&B server
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two pytest-xdist workers share the cores: one thread each (inherited by the CLI runs they start), so much
    # of the suite's time, spent in imports and Python, runs side by side instead of oversubscribing.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
register()


def compose_cfg(overrides=()):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_cli(args, cwd=None, timeout=900):
    """`python -m ftlab ARGS` in a subprocess: (returncode, combined output)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab", *args],
        cwd=cwd or PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    return proc.returncode, proc.stdout + proc.stderr


def read_results(run_dir) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())


@pytest.fixture(scope="session")
def tiny_path():
    from ftlab.model import model_path

    return model_path(compose_cfg().model)


# Quick settings for runs that only need to show the path works.
QUICK = ["train.max_steps=3", "train.batch_size=4", "eval.max_questions=6", "eval.max_new_tokens=12",
         "data.max_train_examples=24", "wandb.mode=disabled"]


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
