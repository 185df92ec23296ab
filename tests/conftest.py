"""pytest set-up: offline W&B and hub, one thread per xdist worker, the typed schema registered, the tiny model built
before the workers start, GPU tests skipped without CUDA. Shared helpers live in tests/helpers.py."""

import os

import pytest
from helpers import CHROMEDRIVER, CHROMIUM, compose_cfg

from ftlab.config.schema import register

os.environ.setdefault("WANDB_MODE", "offline")  # tests never talk to a W&B server
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two pytest-xdist workers share the cores: one thread each (inherited by the CLI runs they start), so much
    # of the suite's time, spent in imports and Python, runs side by side instead of oversubscribing.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
register()


def tiny_model() -> str:
    """The tiny model's folder, built (once per machine) on first use."""
    from ftlab.model.source import model_path

    return model_path(compose_cfg().model)


@pytest.fixture(scope="session")
def tiny_path():
    return tiny_model()


def pytest_configure(config):
    """Build the tiny model before pytest-xdist starts its workers, with every core: the workers run one thread
    each, and all of them would wait for the first one to build it."""
    if config.getoption("numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        tiny_model()


def pytest_collection_modifyitems(config, items):
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return  # torch is not imported: the fast files (test_architecture, ...) stay fast
    import torch

    if not torch.cuda.is_available():
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture
def browser():
    """Headless Chromium driven by selenium, every request it makes logged (the demo and the lab tests)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))  # both given: nothing is downloaded
    yield driver
    driver.quit()
