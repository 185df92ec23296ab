"""pytest set-up: offline W&B and hub, one thread per xdist worker, the typed schema registered, the tiny model built
before the workers start, GPU tests skipped without CUDA. Shared helpers live in tests/helpers.py."""

import os

import pytest

from ftlab.config.schema import register

os.environ.setdefault("WANDB_MODE", "offline")  # tests never talk to a W&B server
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two pytest-xdist workers share the cores: one thread each (inherited by the CLI runs they start), so much
    # of the suite's time, spent in imports and Python, runs side by side instead of oversubscribing.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
register()


@pytest.fixture(scope="session")
def tiny_path():
    from ftlab.model.source import model_path
    from helpers import compose_cfg

    return model_path(compose_cfg().model)


def pytest_configure(config):
    """Build the tiny model before pytest-xdist starts its workers, with every core: the workers run one thread
    each, and all of them would wait for the first one to build it."""
    if config.getoption("numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        from ftlab.model.source import model_path
        from helpers import compose_cfg

        model_path(compose_cfg().model)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
