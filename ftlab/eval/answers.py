"""Held-out questions, the same for the base and the fine-tuned model: answer loss, perplexity, greedy answers,
accuracy."""

import math
import re

import torch

from ftlab.core.console import progress
from ftlab.data.load import chat_prompt
from ftlab.eval.uncertainty import accuracy_interval, loss_interval


def normalise(text: str) -> str:
    """Lower-case words and numbers (1,200 and 10:00 kept whole), hyphens split, plural -s dropped, one space apart."""
    words = re.findall(r"[\w€$£%]+(?:[.,:]\w+)*", text.lower())
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w[0].isdigit() else w for w in words)


def states_facts(answer: str, facts: list) -> bool:
    """Correct when every expected fact appears in the answer as whole words: "90 days" matches "90-day" and
    "90 Days.", not "190 days"."""
    said = f" {normalise(answer)} "
    return all(f" {normalise(fact)} " in said for fact in facts)


def answer_loss(model, tokenizer, rows: list, system_prompt, batch_size: int = 16) -> tuple[float, list, list]:
    """Mean token loss of the reference answers (end-of-turn included) given their questions, through the chat
    template: the same number for every objective, so runs compare. Also each question's summed loss and token
    count, which the held-out loss's interval resamples (eval/uncertainty.py)."""
    return token_loss(
        model,
        [chat_ids(tokenizer, chat_prompt(row["question"], system_prompt), row["answer"]) for row in rows],
        tokenizer.pad_token_id,
        batch_size,
    )


def chat_ids(tokenizer, prompt: list, answer: str) -> tuple[list, list]:
    """(the prompt's token ids with the assistant's turn opened, the whole conversation's ids with the answer)."""
    p = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
    full = tokenizer.apply_chat_template(
        prompt + [{"role": "assistant", "content": answer}], tokenize=True, return_dict=True
    )
    return p["input_ids"], full["input_ids"]


@torch.no_grad()
def token_loss(model, pairs: list, pad: int, batch_size: int = 16) -> tuple[float, list, list]:
    """(mean token loss, summed loss per row, tokens per row) of each row's tokens after its prompt: pairs are
    (prompt ids, full ids); an empty prompt scores the whole text."""
    model.eval()
    sums, counts = [], []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        ids = [full for _, full in batch]
        labels = [[-100] * len(prompt) + full[len(prompt) :] for prompt, full in batch]
        width = max(map(len, ids))
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=model.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=model.device)
        target = torch.tensor([x + [-100] * (width - len(x)) for x in labels], device=model.device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), target[:, 1:].reshape(-1), ignore_index=-100, reduction="none"
        ).view(len(batch), -1)
        sums += losses.sum(dim=1).tolist()
        counts += (target[:, 1:] != -100).sum(dim=1).tolist()
    return sum(sums) / max(sum(counts), 1), sums, counts


@torch.no_grad()
def generate_answers(model, tokenizer, questions: list, system_prompt, max_new_tokens: int, batch_size: int) -> list:
    """Greedy answers, batched with left padding (decoder-only models continue from the right end). A question is a
    string (asked after the system prompt) or a list of messages (as it is)."""
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    answers = []
    try:
        for start in progress(range(0, len(questions), batch_size), -(-len(questions) // batch_size), "answers"):
            prompts = [
                tokenizer.apply_chat_template(
                    chat_prompt(q, system_prompt) if isinstance(q, str) else q,
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for q in questions[start : start + batch_size]
            ]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            answers += [a.strip() for a in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return answers


def evaluate(model, tokenizer, rows: list, system_prompt, eval_cfg) -> dict:
    """loss, perplexity, answer accuracy and the answers themselves, on the held-out rows."""
    if not rows:
        return {}
    loss, loss_sums, tokens = answer_loss(model, tokenizer, rows, system_prompt, eval_cfg.batch_size)
    answers = generate_answers(
        model, tokenizer, [r["question"] for r in rows], system_prompt, eval_cfg.max_new_tokens, eval_cfg.batch_size
    )
    correct = [states_facts(a, r["facts"]) for a, r in zip(answers, rows)]
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "answer_accuracy": sum(correct) / len(rows),
        "answer_accuracy_ci": accuracy_interval(correct),
        "loss_ci": loss_interval(loss_sums, tokens),
        "answers": answers,
        "correct": correct,
        "loss_sums": loss_sums,
        "tokens": tokens,
    }


def paired_answers(rows: list, base: dict, tuned: dict) -> list:
    """One record per held-out question: what was expected, and what the base and the fine-tuned model answered."""
    return [
        {
            "question": r["question"],
            "expected": r["facts"],
            "reference": r["answer"],
            "base_answer": base["answers"][i],
            "base_correct": base["correct"][i],
            "tuned_answer": tuned["answers"][i],
            "tuned_correct": tuned["correct"][i],
            # per-question losses (summed over the reference answer's tokens): what paired comparisons resample
            "tokens": tuned["tokens"][i],
            "base_loss_sum": base["loss_sums"][i],
            "tuned_loss_sum": tuned["loss_sums"][i],
            # with eval.reward_model: 1 when the reward model scores the tuned answer above the base's, 0.5 a tie
            **({"reward_win": tuned["reward"]["wins"][i]} if "reward" in tuned else {}),
        }
        for i, r in enumerate(rows)
    ]


def worst_failures(answers: list, limit: int) -> list:
    """Questions the fine-tuned model gets wrong, those the base got right first (regressions are the worst)."""
    return sorted((a for a in answers if not a["tuned_correct"]), key=lambda a: not a["base_correct"])[:limit]
