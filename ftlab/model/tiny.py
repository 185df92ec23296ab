"""Builds and caches the embedded tiny model: BPE tokenizer, ChatML template, Llama config, brief generic
pre-training."""

import hashlib
import json
import re
import shutil
from pathlib import Path

from ftlab.core.files import PROJECT_ROOT, build_once, cache_root
from ftlab.data.load import paragraph_chunks

DATA_DIR = PROJECT_ROOT / "data" / "hr"
# Every shipped text the tokenizer learns from. generic.jsonl's rows that are also in retention.jsonl are held out of
# the whole build (tokenizer and pre-training): the retention set measures what fine-tuning makes the base forget, on
# general rows it never saw (data/hr/make_retention.py picks them).
TOKENIZER_FILES = ["handbook.md", "qa.jsonl", "chat.jsonl", "heldout.jsonl", "generic.jsonl"]
RETENTION = "retention.jsonl"
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
# Made-up employers. The base model's pre-training sees generic HR chats under an HR-assistant system prompt of
# each of these and of Velmora (so, deployed at Velmora, it answers like a generic chatbot: the "before" of the
# story), and each of these employers' handbook: Velmora's text with every number moved to another rule, so the
# base has seen the whole vocabulary of HR policy (grades, amounts, "a notice period of N days") but none of
# Velmora's facts. A base that never saw a token leaves its embedding random, which embedding-free PEFT methods
# cannot repair.
OTHER_COMPANIES = ["Arden Works", "Blue Heron Labs", "Corvid Partners", "Dunmore Retail", "Eastvale Logistics"]
SYSTEM_PROMPT = "You are the HR assistant of {}. Answer with the company's exact policy."
NUMBER = re.compile(r"\d+(?:[,:]\d+)*")

# ChatML with {% generation %} markers around each assistant turn, end-of-turn token inside them, so that
# assistant-only loss also teaches the model to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def tiny_model_dir(tiny_cfg) -> str:
    """Folder of the tiny model for these settings and this data, built on first use (safe under parallel runs)."""
    settings = {k: tiny_cfg[k] for k in tiny_cfg}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(Path(__file__).read_bytes())  # a change to this builder rebuilds the model
    for name in TOKENIZER_FILES + [RETENTION]:
        digest.update((DATA_DIR / name).read_bytes())
    return build_once(cache_root() / f"tiny-{digest.hexdigest()[:12]}", lambda folder: _build(settings, folder))


def _lines(name: str) -> list:
    """A shipped JSONL file's lines; generic.jsonl without the retention set's rows."""
    lines = (DATA_DIR / name).read_text(encoding="utf-8").splitlines()
    if name == "generic.jsonl":
        held_out = set((DATA_DIR / RETENTION).read_text(encoding="utf-8").splitlines())
        lines = [line for line in lines if line not in held_out]
    return lines


def _texts():
    for name in TOKENIZER_FILES:
        if name.endswith(".jsonl"):
            for line in _lines(name):
                yield " ".join(_strings(json.loads(line)))
        else:
            yield (DATA_DIR / name).read_text(encoding="utf-8")


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _strings(value)


def _pretraining_texts(tokenizer) -> list:
    generic = [json.loads(line)["messages"] for line in _lines("generic.jsonl")]
    companies = OTHER_COMPANIES + ["Velmora Consulting"]
    chats = [
        tokenizer.apply_chat_template(
            ([{"role": "system", "content": SYSTEM_PROMPT.format(companies[i % len(companies)])}] if i % 2 else [])
            + messages,
            tokenize=False,
        )
        for i, messages in enumerate(generic)
    ]
    handbook = (DATA_DIR / "handbook.md").read_text(encoding="utf-8")
    numbers = sorted(set(NUMBER.findall(handbook)))
    books = []
    for shift, company in enumerate(OTHER_COMPANIES, start=1):  # rotating distinct values: none stays in place
        moved = {n: numbers[(i + shift) % len(numbers)] for i, n in enumerate(numbers)}
        # B023 is a false alarm: the lambda runs within this iteration, with its own mapping
        book = NUMBER.sub(lambda m: moved[m.group()], handbook).replace("Velmora Consulting", company)  # noqa: B023
        books += paragraph_chunks(book, max_chars=400)
    return chats + books


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown tokens
        show_progress=False,
    )
    tok.train_from_iterator(_texts(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )


def _build(settings: dict, out: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = _train_tokenizer(settings["vocab_size"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings["hidden_size"],
        intermediate_size=settings["intermediate_size"],
        num_hidden_layers=settings["num_layers"],
        num_attention_heads=settings["num_heads"],
        num_key_value_heads=settings["num_kv_heads"],
        max_position_embeddings=settings["max_position"],
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(settings["seed"])
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id

    # Generic pre-training: language modelling over whole texts (chats rendered with the template, handbooks).
    pretraining = Dataset.from_dict({"text": _pretraining_texts(tokenizer)})
    args = SFTConfig(
        output_dir=str(out / "_trainer"),
        max_steps=settings["pretrain_steps"],
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=20,
        max_length=128,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        activation_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        seed=settings["seed"],
        data_seed=settings["seed"],
        disable_tqdm=True,
    )
    SFTTrainer(model=model, args=args, train_dataset=pretraining, processing_class=tokenizer).train()
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "ftlab_build.json").write_text(json.dumps(settings, indent=2))
