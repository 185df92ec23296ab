"""The README's `make run` in full: the default HR experiment beats the base model. Its own file, the suite's longest
test: pytest-xdist hands out files, and this one then runs beside the other files rather than after them."""

import pytest
from helpers import export_gguf, modelfile, read_results, render_go_template, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hr_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("hr_bot")
    code, out = run_cli(["experiment=hr_bot", "wandb.mode=disabled", f"hydra.run.dir={run}"])
    assert code == 0, out[-3000:]
    (run / "terminal.txt").write_text(out)  # what the user saw (stdout and stderr, not a terminal: plain lines)
    return run


def test_default_hr_experiment_beats_the_base_model(hr_run):
    """The README's `make run`: the fine-tuned model states the company's policies on held-out questions."""
    results = read_results(hr_run)
    assert results["eval"]["base_answer_accuracy"] <= 0.1
    assert results["eval"]["answer_accuracy"] >= 0.6
    assert results["eval"]["loss"] < results["eval"]["base_loss"] / 2
    assert results["sample"]["question"] == "What is the notice period for a Senior Consultant?"


def test_the_terminal_shows_ftlabs_lines_and_the_log_keeps_the_rest(hr_run):
    """A quiet console: a line per phase, a few training lines, the summary; no library warnings or notices, no
    raw trainer dicts, no progress bars (not a terminal). ftlab.log holds the trainer's logs and the rest."""
    lines = (hr_run / "terminal.txt").read_text().splitlines()
    assert len(lines) <= 40, "\n".join(lines)
    assert not [line for line in lines if "WARNING" in line or "Failed to load" in line or line.startswith("{")]
    assert not [line for line in lines if "\r" in line or "it/s]" in line]
    for phase in ("data", "model load", "base eval", "train", "eval", "save"):
        assert any(line.startswith(f"{phase} ") and line.endswith(" s") for line in lines), phase
    assert sum(line.startswith("train: step ") for line in lines) == 4  # a line a quarter of the steps
    assert any(line.startswith("== ftlab run tiny-full-sft-none-s42: ok ==") for line in lines)
    assert lines[-1].startswith("results: ")
    log = (hr_run / "ftlab.log").read_text()
    assert "'loss':" in log and "'learning_rate':" in log  # the trainer's own logs, every one of them
    assert len(log.splitlines()) > len(lines)


def test_the_hr_bot_exports_to_gguf_and_llama_cpp_answers_as_the_run(hr_run, tmp_path):
    """python -m ftlab.export --to gguf --outtype f16,q8_0: llama.cpp, given the same prompt ids, answers all 90
    held-out questions greedily as the run did: word for word in f16; q8_0's agreement is recorded. The Modelfile's
    TEMPLATE, executed as Go's template would be, renders the run's prompts; its SYSTEM is the run's."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    out = tmp_path / "gguf"
    record = export_gguf(hr_run, out, "--outtype", "f16,q8_0")
    f16, q8 = record["files"]
    assert f16["check"]["questions"] == 90 and f16["check"]["identical_prompt_ids"] == 90
    assert f16["check"]["identical_answers"] == 90, f16["check"]["examples_differing"]
    assert q8["check"]["agreement"] >= 0.8, q8["check"]["examples_differing"]
    assert q8["bytes"] < 0.6 * f16["bytes"]
    found = modelfile(out / "Modelfile")
    assert found["FROM"] == "./model-f16.gguf"
    system = OmegaConf.load(hr_run / "config.yaml").data.system_prompt
    assert found["SYSTEM"] == system and ("stop", "<|im_end|>") in found["PARAMETER"]
    tokenizer = AutoTokenizer.from_pretrained(hr_run / "model")
    chat = [{"role": "system", "content": system}, {"role": "user", "content": "What is the notice period?"}]
    expected = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert render_go_template(found["TEMPLATE"], chat) == expected
