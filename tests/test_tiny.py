"""The embedded tiny model: a cached Llama-architecture model whose chat template trains the stop token and whose
pre-training never states one of Velmora's policies."""

import json
import re
from pathlib import Path

from ftlab.model.tiny import DATA_DIR, _pretraining_texts, tiny_model_dir


def test_tiny_model_is_cached_llama_with_safetensors(tiny_path):
    folder = Path(tiny_path)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.bin"))
    assert (folder / "chat_template.jinja").exists()


def test_chat_template_masks_assistant_turns_including_end_of_turn(tiny_path):
    from transformers import AutoTokenizer
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    assert is_chat_template_stop_token_trained(tokenizer)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_start|>assistant\n")


def test_pretraining_never_states_a_velmora_policy(tiny_path):
    from transformers import AutoTokenizer

    texts = _pretraining_texts(AutoTokenizer.from_pretrained(tiny_path))
    heldout = [json.loads(line) for line in (DATA_DIR / "heldout.jsonl").read_text().splitlines()]
    for text in texts:
        # Velmora appears only in system prompts above generic answers, never beside one of its facts.
        for part in re.split(r"<\|im_start\|>", text):
            if "Velmora" in part:
                assert part.startswith("system\n"), part[:120]
    canonical = {row["answer"] for row in heldout}
    assert not [a for a in canonical if any(a in t for t in texts)]


def test_same_settings_reuse_the_cache(tiny_path):
    from helpers import compose_cfg

    assert tiny_model_dir(compose_cfg().model.tiny) == tiny_path


def test_the_retention_rows_are_held_out_of_the_build_and_their_answers_are_not(tiny_path):
    """The retention set measures forgetting only if the base never saw its rows but learned their answers: every
    retention row is out of pre-training (and the tokenizer's texts), every answer is in it under another question,
    and no answer is one the preference or KTO data train against. make_retention.py rebuilds the files unchanged."""
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from ftlab.model.tiny import _texts

    retention = [json.loads(line)["messages"] for line in (DATA_DIR / "retention.jsonl").read_text().splitlines()]
    texts = _pretraining_texts(AutoTokenizer.from_pretrained(tiny_path))
    tokenizer_texts = list(_texts())
    for user, assistant in retention:
        assert not any(user["content"] in t for t in texts + tokenizer_texts), user["content"]
        assert any(assistant["content"] in t for t in texts), assistant["content"]
    rejected = {json.loads(line)["rejected"] for line in (DATA_DIR / "preferences.jsonl").read_text().splitlines()}
    assert not {assistant["content"] for _, assistant in retention} & rejected
    before = {p: p.read_bytes() for p in [DATA_DIR / "retention.jsonl", DATA_DIR / "harness" / "hr_general.jsonl"]}
    subprocess.run([sys.executable, DATA_DIR / "make_retention.py"], check=True, capture_output=True)
    assert {p: p.read_bytes() for p in before} == before
