"""Cleaning and splitting training rows: duplicates, token-length filters, a seeded validation split, leakage."""

import hashlib
import re

WORDS = re.compile(r"[^\w]+")


def row_text(row: dict) -> str:
    """Everything a row says, in order: its identity for duplicates and its length in tokens."""
    parts = []
    for key in ("prompt", "messages", "completion", "chosen", "rejected", "text"):
        value = row.get(key)
        if isinstance(value, list):
            parts += [turn["content"] for turn in value]
        elif isinstance(value, str):
            parts.append(value)
    return "\n".join(parts)


def question_text(row: dict) -> str:
    """What the user asked: the prompt, or the user turns of a conversation (for the leakage check)."""
    value = row.get("prompt", row.get("messages"))
    if isinstance(value, list):
        return "\n".join(t["content"] for t in value if t["role"] == "user")
    return value if isinstance(value, str) else ""


def near_key(text: str) -> str:
    """Case, punctuation and spacing ignored; digits kept ("90 days" and "150 days" are different rules)."""
    return " ".join(WORDS.sub(" ", text.lower()).split())


def dedupe(rows: list, mode: str) -> tuple[list, int]:
    """(rows without duplicates, how many were removed); the first occurrence stays."""
    if mode == "none":
        return rows, 0
    if mode not in ("exact", "near"):
        raise ValueError(f"data.dedupe: expected none, exact or near, got {mode!r}")
    seen, kept = set(), []
    for row in rows:
        text = row_text(row)
        key = hashlib.sha256((near_key(text) if mode == "near" else text).encode()).digest()
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def length_filter(rows: list, tokenizer, min_tokens: int, max_tokens: int | None) -> tuple[list, int, int]:
    """(rows within [min_tokens, max_tokens], too short, too long), counting the row's text in tokens."""
    if not min_tokens and not max_tokens:
        return rows, 0, 0
    kept, short, long = [], 0, 0
    for row in rows:
        n = len(tokenizer(row_text(row), add_special_tokens=False)["input_ids"])
        if n < min_tokens:
            short += 1
        elif max_tokens and n > max_tokens:
            long += 1
        else:
            kept.append(row)
    return kept, short, long


def split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): each row goes by a hash of its text and the seed, so the split does not depend on the
    file's order and stays the same when rows are added."""
    if not 0 <= fraction < 1:
        raise ValueError(f"data.validation_split: expected a fraction in [0, 1), got {fraction}")
    if not fraction:
        return rows, []
    scored = sorted(rows, key=lambda r: hashlib.sha256(f"{seed}\n{row_text(r)}".encode()).hexdigest())
    n_val = max(1, round(fraction * len(rows)))
    validation = {id(r) for r in scored[:n_val]}
    return [r for r in rows if id(r) not in validation], [r for r in rows if id(r) in validation]


def leaked(train_rows: list, eval_questions: list) -> list:
    """Evaluation questions that also occur (near-exactly) as a training question: a score on them is not held-out."""
    asked = {near_key(question_text(r)) for r in train_rows}
    return [q for q in eval_questions if near_key(q) in asked]
