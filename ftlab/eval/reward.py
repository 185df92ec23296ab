"""Reward-model evaluation: pairwise accuracy on held-out pairs, and the base's vs the tuned policy's answers scored."""

import statistics
from pathlib import Path

import torch

from ftlab.data.load import chat_prompt
from ftlab.model.source import load_reward_model


@torch.no_grad()
def reward_scores(model, tokenizer, conversations: list, batch_size: int = 16) -> list:
    """One scalar per conversation (prompt + assistant answer), through the chat template the reward model saw."""
    model.eval()
    scores = []
    for start in range(0, len(conversations), batch_size):
        texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations[start : start + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        scores += model(**enc).logits[:, 0].float().tolist()
    return scores


def pairwise_accuracy(model, tokenizer, pairs, batch_size: int = 16) -> dict:
    """How often the chosen answer scores above the rejected one, and by how much on average."""
    chosen = reward_scores(model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs], batch_size)
    rejected = reward_scores(model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs], batch_size)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {
        "pairs": len(margins),
        "pairwise_accuracy": sum(m > 0 for m in margins) / len(margins),
        "mean_margin": statistics.fmean(margins),
    }


def score_answers(
    reward_path: str, rows: list, system_prompt, base_answers: list, tuned_answers: list, batch_size: int = 16
) -> dict:
    """The reward model's verdict on the held-out questions: mean score of each model's answers and how often the
    tuned answer beats the base answer (a tie counts half)."""
    model, tokenizer = load_reward_model(reward_path)

    def conversations(answers):
        return [
            chat_prompt(r["question"], system_prompt) + [{"role": "assistant", "content": a}]
            for r, a in zip(rows, answers)
        ]

    base = reward_scores(model, tokenizer, conversations(base_answers), batch_size)
    tuned = reward_scores(model, tokenizer, conversations(tuned_answers), batch_size)
    wins = [1.0 if t > b else 0.5 if t == b else 0.0 for b, t in zip(base, tuned)]
    return {
        "reward_model": str(Path(reward_path)),
        "base_mean": statistics.fmean(base),
        "tuned_mean": statistics.fmean(tuned),
        "win_rate": statistics.fmean(wins),
        "questions": len(wins),
        "wins": wins,  # per question, for answers.json (paired verdicts); results.json keeps the rate
    }
