"""python -m ftlab.export --to gguf: llama.cpp's converters, llama.cpp answering the run's held-out questions as the
run did, and the Ollama Modelfile read back. The default HR experiment's export (f16 and q8_0) is in test_hr_bot.py,
QAT's in test_compress.py; here a LoRA run's adapter as a GGUF LoRA, the template translation and the refusals."""

import json
import shutil
import subprocess
import sys

import pytest
from helpers import export_gguf, modelfile, render_go_template, shared_run
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from ftlab.export.gguf import declared_pre_tokenizer
from ftlab.export.ollama import chat_pieces

LLAMA3 = (  # Llama 3's template, shortened: a BOS before the conversation, header tokens around the role
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' "
    "+ m['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
DEFAULT_SYSTEM = (  # Qwen 2.5's habit: a system prompt of its own when the conversation has none
    "{% if messages[0]['role'] != 'system' %}<s>You are helpful.</s>{% endif %}{% for m in messages %}<{{ m['role'] }}>"
    "{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.mark.slow
def test_a_lora_adapter_exports_as_a_gguf_lora_that_answers_as_the_run(lora_run, tmp_path):
    """--lora: the adapter alone (llama.cpp's convert_lora_to_gguf.py) on its base's GGUF gives the run's greedy
    answers word for word, and the Modelfile names both."""
    out = tmp_path / "gguf"
    record = export_gguf(lora_run, out, "--lora", "--outtype", "f16")
    (exported,) = record["files"]
    assert exported["file"] == "adapter-f16.gguf" and exported["base"] == "base-f16.gguf"
    check = exported["check"]
    assert check["questions"] == 4 and check["identical_prompt_ids"] == 4
    assert check["identical_answers"] == 4, check["examples_differing"]
    found = modelfile(out / "Modelfile")
    assert (found["FROM"], found["ADAPTER"]) == ("./base-f16.gguf", "./adapter-f16.gguf")
    assert exported["bytes"] < exported["base_bytes"] * 1.5  # the adapter, not a second model


def test_the_modelfile_template_renders_as_the_chat_template(lora_run):
    """The TEMPLATE, executed as Ollama's Go template would be, gives the Jinja template's text for conversations
    with and without a system prompt, over several turns."""
    from ftlab.export.ollama import go_template

    tokenizer = AutoTokenizer.from_pretrained(lora_run / "model")
    template = go_template(chat_pieces(tokenizer))
    for chat in (
        [{"role": "user", "content": "What is the notice period?"}],
        [
            {"role": "system", "content": "You are the HR assistant."},
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
        ],
    ):
        expected = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert render_go_template(template, chat) == expected


def test_other_templates_translate_or_are_refused(lora_run):
    tokenizer = AutoTokenizer.from_pretrained(lora_run / "model")
    tokenizer.bos_token = "<|begin_of_text|>"
    tokenizer.chat_template = LLAMA3
    pieces = chat_pieces(tokenizer)
    assert pieces["head"] == "<|begin_of_text|>"
    assert pieces["assistant_post"] == "<|eot_id|>"
    tokenizer.chat_template = DEFAULT_SYSTEM
    with pytest.raises(ValueError, match="cannot be written as an Ollama TEMPLATE"):
        chat_pieces(tokenizer)


def test_the_pre_tokenizer_is_read_from_what_tokenizer_json_declares(lora_run, tmp_path):
    assert declared_pre_tokenizer(lora_run / "model") == "gpt-2"  # the tiny model's byte-level BPE
    declared = json.loads((lora_run / "model" / "tokenizer.json").read_text())
    declared["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(declared))
    assert declared_pre_tokenizer(tmp_path) is None


def export_cli(*args):
    return subprocess.run([sys.executable, "-m", "ftlab.export", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize(
    "strategy,settings,args,reason",
    [
        ("prefix", {"virtual_tokens": True, "mergeable": False}, [], "adds trained virtual tokens"),
        ("adapter", {"mergeable": False}, [], "adds non-linear modules"),
        ("lora", {}, ["--outtype", "q4_k_m", "--lora"], "--outtype: expected one of f32, f16, bf16, q8_0"),
    ],
)
def test_runs_gguf_cannot_hold_are_refused_with_the_reason(lora_run, tmp_path, strategy, settings, args, reason):
    """Refused from what the run's config declares, in a second (no model is loaded), with nothing written."""
    run = tmp_path / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("model"))
    (run / "model").mkdir()
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.strategy.name = strategy
    cfg.strategy.merge_with(settings)
    OmegaConf.save(cfg, run / "config.yaml")
    proc = export_cli(run, tmp_path / "out", *args)
    assert proc.returncode != 0 and reason in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_dora_run_is_refused_as_an_adapter_alone(lora_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    (run / "model" / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    proc = export_cli(run, tmp_path / "out", "--lora")
    assert proc.returncode != 0 and "saved no plain LoRA adapter" in proc.stderr


def test_unfinished_runs_and_used_folders_are_refused(lora_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    proc = export_cli(lora_run, out)
    assert proc.returncode != 0 and "exists and is not empty" in proc.stderr
    assert (out / "mine.txt").read_text() == "keep"
    run = tmp_path / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("model"))
    (run / "model").mkdir()
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, "status": "running"}))
    proc = export_cli(run, tmp_path / "out2")
    assert proc.returncode != 0 and "status running" in proc.stderr
