"""The model card of a run: Hugging Face front matter, the sections, the numbers, loading code that runs, no secrets."""

import json
import re
import shutil

import pytest
import yaml
from helpers import read_results, shared_run


@pytest.fixture(scope="module")
def card_run(tmp_path_factory):
    """A copy of the shared trained run (the card is written into it; the other test files read the original)."""
    copy = tmp_path_factory.mktemp("card") / "card_run"
    shutil.copytree(shared_run(tmp_path_factory), copy)
    (copy / "README.md").unlink(missing_ok=True)
    return copy


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    meta, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(meta), body


@pytest.mark.slow
def test_card_has_front_matter_sections_and_numbers(card_run):
    from ftlab.runs.card import write_model_card

    results = read_results(card_run)
    path = write_model_card(card_run, results)
    assert path == card_run / "README.md" and not list(card_run.glob("README.md.tmp"))
    meta, body = split_card(path.read_text())
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert {"ftlab", "lora", "sft"} <= set(meta["tags"]) and meta["license"] == "apache-2.0"
    assert "base_model" not in meta  # the tiny base is not on the Hub: named in the text, not as a Hub id
    for section in (
        "Base model",
        "Strategy",
        "Objective",
        "Data",
        "Quantization",
        "Hyperparameters",
        "Evaluation against the base",
        "How to load it",
        "Intended use and limits",
    ):
        assert f"\n## {section}\n" in body, section
    e = results["eval"]
    assert f"| held-out answer loss | {e['base_loss']:.3f} | {e['loss']:.3f} |" in body
    assert f"| answer accuracy (states the expected facts) | {e['base_answer_accuracy']:.3f} |" in body
    assert f"{results['params']['trainable']:,} of {results['params']['total']:,}" in body
    assert results["sample"]["tuned_answer"] in body and "`r=16`" in body


@pytest.mark.slow
def test_cards_loading_code_gives_the_runs_model(card_run, monkeypatch):
    """The card's plain transformers + peft code, run as written from the run's parent folder, builds the model
    that ftlab.model.load_run builds."""
    import torch

    from ftlab.model.source import load_run
    from ftlab.runs.card import write_model_card

    body = split_card(write_model_card(card_run, read_results(card_run)).read_text())[1]
    plain = body.split("With transformers and peft:", 1)[1]
    code = re.search(r"```python\n(.*?)```", plain, re.S).group(1)
    monkeypatch.chdir(card_run.parent)
    scope = {}
    exec(code, scope)
    reference, tokenizer, _ = load_run(card_run)
    ids = tokenizer("What is the notice period for an Analyst?", return_tensors="pt").input_ids
    assert scope["tokenizer"](["x y"]).input_ids == tokenizer(["x y"]).input_ids
    with torch.no_grad():
        assert torch.allclose(scope["model"].eval()(ids).logits, reference(ids).logits, atol=1e-5)


@pytest.mark.slow
def test_card_hides_secrets_and_the_cli_rewrites_it(card_run, monkeypatch, capsys):
    """A secret that slipped into the results (it never should: results.json is written with them hidden) is hidden
    in the card too."""
    from ftlab.card import main

    secret = "hf_notARealTokenButLongEnough123"
    monkeypatch.setenv("HF_TOKEN", secret)
    results = read_results(card_run)
    results["environment"]["rerun"] += f" wandb.api_key={secret}"
    (card_run / "results.json").write_text(json.dumps(results))
    main([str(card_run)])
    assert capsys.readouterr().out.strip() == f"model card: {card_run / 'README.md'}"
    text = (card_run / "README.md").read_text()
    assert secret not in text and "wandb.api_key=" in text
    for bad, code in (([], 2), (["-h"], 0), ([str(card_run.parent)], "error:")):  # argparse: 2 with usage, 0 help
        with pytest.raises(SystemExit) as stop:
            main(bad)
        assert str(stop.value.code).startswith(str(code))


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy=full", "quant=qat_int8_int4"],
        ["strategy=adapter"],
        ["strategy=prefix"],
        ["strategy=freeze"],
        ["strategy=lora", "quant=4bit", "model=qwen"],
        ["strategy=dora", "model=llama", "quant=8bit"],
        ["objective=reward", "strategy=lora"],
        ["strategy=full", "quant=sparse_2of4", "model=mistral"],
        ["strategy=lora", "quant=ptq_int8_int4"],
    ],
)
def test_card_for_every_kind_of_run(overrides, tmp_path):
    """Every strategy, quantization and objective gets a card, also from a results record with no numbers."""
    from helpers import compose_cfg
    from omegaconf import OmegaConf

    from ftlab.runs.card import write_model_card

    cfg = compose_cfg(overrides)
    (tmp_path / "model").mkdir()
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    meta, body = split_card(write_model_card(tmp_path, {"run_name": cfg.run_name}).read_text())
    hub = cfg.model.path if cfg.model.name != "tiny" else None
    assert meta.get("base_model") == hub and f"`{cfg.strategy.name}`" in body and "No evaluation results." in body
    assert meta["pipeline_tag"] == ("text-classification" if cfg.objective.trainer == "reward" else "text-generation")
    assert ("4bit" in meta["tags"]) == ("quant=4bit" in overrides)
