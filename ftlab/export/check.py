"""An exported GGUF checked against its run: llama.cpp answers the run's held-out questions greedily, through the same
chat template and the same token ids, and its answers are compared with those the run recorded (answers.json)."""

import json
import os
from pathlib import Path

from ftlab.data.load import chat_prompt


def recorded_answers(run_dir: Path, limit: int | None) -> list:
    """(question, the fine-tuned model's answer) as the run evaluated them, the first `limit` of them."""
    rows = json.loads((run_dir / "answers.json").read_text(encoding="utf-8"))["answers"]
    return [(r["question"], r["tuned_answer"]) for r in rows[:limit]]


def agreement(gguf: Path, tokenizer, recorded: list, system_prompt, max_new_tokens: int, lora: Path | None) -> dict:
    """How many of llama.cpp's greedy answers are the run's own, word for word; also whether llama.cpp's tokenizer
    gives the prompts the same ids as the model's (a pre-tokenizer mismatch shows here first)."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(gguf),
        lora_path=str(lora) if lora else None,
        n_ctx=0,  # the model's own context length
        n_threads=os.cpu_count() or 1,
        seed=0,
        verbose=False,
    )
    same, same_ids, differing = 0, 0, []
    for question, expected in recorded:
        text = tokenizer.apply_chat_template(
            chat_prompt(question, system_prompt), add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # as the run's evaluation tokenized it
        same_ids += llm.tokenize(text.encode(), add_bos=False, special=True) == ids
        llm.reset()
        out = llm.create_completion(
            ids, max_tokens=max_new_tokens, temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0
        )
        answer = out["choices"][0]["text"].strip()
        same += answer == expected
        if answer != expected and len(differing) < 3:
            differing.append({"question": question, "run": expected, "gguf": answer})
    llm.close()
    return {
        "questions": len(recorded),
        "identical_answers": same,
        "agreement": same / len(recorded) if recorded else None,
        "identical_prompt_ids": same_ids,
        "examples_differing": differing,
    }
