"""The README's `make run` in full: the default HR experiment beats the base model. Its own file, the suite's longest
test: pytest-xdist hands out files, and this one then runs beside the other files rather than after them."""

import pytest
from helpers import read_results, run_cli

pytestmark = pytest.mark.slow


def test_default_hr_experiment_beats_the_base_model(tmp_path):
    """The README's `make run`: the fine-tuned model states the company's policies on held-out questions."""
    code, out = run_cli(["experiment=hr_bot", "wandb.mode=disabled", f"hydra.run.dir={tmp_path}"])
    assert code == 0, out[-3000:]
    results = read_results(tmp_path)
    assert results["eval"]["base_answer_accuracy"] <= 0.1
    assert results["eval"]["answer_accuracy"] >= 0.6
    assert results["eval"]["loss"] < results["eval"]["base_loss"] / 2
    assert results["sample"]["question"] == "What is the notice period for a Senior Consultant?"
