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
