"""Loads training data for an objective (local files or a hub dataset) and the held-out questions, as datasets."""

import json
from pathlib import Path

from ftlab.paths import resolve

TABLE_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
TEXT_SUFFIXES = {".txt", ".md"}
REQUIRED = {
    "prompt_completion": ["prompt", "completion"],  # objective=sft
    "messages": ["messages"],  # objective=instruct
    "text": ["text"],  # objective=domain
    "preference": ["prompt", "chosen", "rejected"],  # objective=reward, dpo, orpo
    "unpaired_preference": ["prompt", "completion", "label"],  # objective=kto
    "prompt": ["prompt"],  # objective=rlhf (online RL: the policy writes the answers)
}
OPTIONAL = {"prompt": ["facts"]}  # kept for rule-based rewards (ftlab/rewards.py)


class DataError(ValueError):
    """Bad training or evaluation data: the message names the source and what was expected."""


def load_source(source: str, columns: dict, required: list = ()):
    """A datasets.Dataset from a table file, a text file or folder of them (one row per paragraph), or a hub id."""
    from datasets import Dataset, load_dataset

    path = resolve(source)
    if path.is_dir() and not any(path.glob("*.parquet")) and not any(path.glob("*.json*")):
        files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no .txt or .md files in this folder")
        texts = [chunk for f in files for chunk in paragraph_chunks(f.read_text(encoding="utf-8"))]
        return Dataset.from_dict({"text": texts})
    if path.suffix in TEXT_SUFFIXES:
        return Dataset.from_dict({"text": paragraph_chunks(path.read_text(encoding="utf-8"))})
    if path.suffix in TABLE_SUFFIXES:
        if path.suffix == ".jsonl":
            inverse = {new: old for old, new in columns.items()}
            _check_jsonl(path, [inverse.get(name, name) for name in required])
        dataset = load_dataset(TABLE_SUFFIXES[path.suffix], data_files=str(path), split="train")
    elif path.exists():
        dataset = load_dataset(str(path), split="train")  # a local dataset folder
    elif "/" in source and not source.startswith((".", "/")):
        dataset = load_dataset(source, split="train")  # a hub dataset (needs the network)
    else:
        raise DataError(f"{source}: no such file, folder or hub dataset")
    renames = {old: new for old, new in columns.items() if old in dataset.column_names}
    return dataset.rename_columns(renames) if renames else dataset


def paragraph_chunks(text: str, max_chars: int = 1200) -> list:
    """Paragraphs (blank-line separated), merged up to max_chars, so packing sees document-sized pieces."""
    chunks, current = [], ""
    for para in text.split("\n\n"):
        para = para.strip()
        if not para:
            continue
        if current and len(current) + len(para) > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    return chunks + [current] if current else chunks


def _check_jsonl(path: Path, required: list) -> None:
    """One clear line for a malformed file or record (file:line: field) instead of pyarrow's trace."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {err.object[err.start]:#x})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        for field in required:
            if field not in row:
                raise DataError(f"{path}:{number}: missing field '{field}' (expected {', '.join(required)})")
            if row[field] in ("", None, []):
                raise DataError(f"{path}:{number}: field '{field}' is empty")


def train_dataset(data_cfg, data_format: str, system_prompt: str | None):
    """The data.train source of this format, checked and put in the conversational form TRL expects."""
    source = data_cfg.train.get(data_format)
    if not source:
        raise DataError(
            f"data.train.{data_format}: objective needs a '{data_format}' source and data={data_cfg.name} has none "
            f"(it has: {', '.join(k for k, v in data_cfg.train.items() if v) or 'nothing'})"
        )
    dataset = load_source(source, _columns(data_cfg), REQUIRED[data_format])
    missing = [c for c in REQUIRED[data_format] if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{source}: expected column(s) {missing} for {data_format} data, found {dataset.column_names} "
            f"(map yours with data.columns)"
        )
    if len(dataset) == 0:
        raise DataError(f"{source}: no examples")
    if data_cfg.max_train_examples:
        dataset = dataset.select(range(min(len(dataset), data_cfg.max_train_examples)))
    if data_format == "prompt_completion" and isinstance(dataset[0]["prompt"], str):
        # Question/answer strings become one chat turn, so SFT trains and evaluates through the chat template
        # exactly like instruction tuning does (TRL then masks the prompt: loss on the answer only).
        dataset = dataset.map(
            lambda row: {
                "prompt": chat_prompt(row["prompt"], system_prompt),
                "completion": [{"role": "assistant", "content": row["completion"]}],
            }
        )
    if data_format == "messages" and system_prompt:
        dataset = dataset.map(lambda row: {"messages": _with_system(row["messages"], system_prompt)})
    if data_format in ("preference", "unpaired_preference", "prompt") and isinstance(dataset[0]["prompt"], str):
        # The same chat form as SFT, so a policy or reward model sees what the deployed bot sees.
        answers = [c for c in ("chosen", "rejected", "completion") if c in dataset.column_names]
        dataset = dataset.map(lambda row: {"prompt": chat_prompt(row["prompt"], system_prompt),
                                           **{c: [{"role": "assistant", "content": row[c]}] for c in answers}})
    keep = REQUIRED[data_format] + [c for c in OPTIONAL.get(data_format, []) if c in dataset.column_names]
    return dataset.select_columns(keep)


def eval_pairs(data_cfg, system_prompt: str | None, limit: int | None = None):
    """Held-out preference pairs (prompt, chosen, rejected) in chat form: a reward model's pairwise accuracy and
    the eval curve of the preference objectives. None when the data config names none."""
    if not data_cfg.eval_pairs:
        return None
    pairs_cfg = {"train": {"preference": data_cfg.eval_pairs}, "columns": data_cfg.columns,
                 "name": data_cfg.name, "max_train_examples": limit}
    from omegaconf import OmegaConf

    return train_dataset(OmegaConf.create(pairs_cfg), "preference", system_prompt)


def eval_dataset(rows: list, data_format: str, system_prompt: str | None):
    """The held-out question/answer rows in the objective's training format: the trainer's eval-loss curve."""
    from datasets import Dataset

    if not rows or data_format not in ("text", "messages", "prompt_completion"):
        return None
    if data_format == "text":
        return Dataset.from_dict({"text": [f"{r['question']}\n{r['answer']}" for r in rows]})
    prompts = [chat_prompt(r["question"], system_prompt) for r in rows]
    answers = [[{"role": "assistant", "content": r["answer"]}] for r in rows]
    if data_format == "messages":
        return Dataset.from_dict({"messages": [p + a for p, a in zip(prompts, answers)]})
    return Dataset.from_dict({"prompt": prompts, "completion": answers})


def _columns(data_cfg) -> dict:
    columns = data_cfg.columns or {}
    if not hasattr(columns, "items"):
        raise DataError(f"data.columns: expected a mapping like {{q: prompt, a: completion}}, got {columns!r}")
    return dict(columns)


def chat_prompt(question: str, system_prompt: str | None) -> list:
    return _with_system([{"role": "user", "content": question}], system_prompt)


def _with_system(messages: list, system_prompt: str | None) -> list:
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return messages
    return [{"role": "system", "content": system_prompt}] + messages


def eval_questions(data_cfg, limit: int | None) -> list:
    """Held-out rows {question, answer, facts}: facts are the strings a correct answer must state."""
    if not data_cfg.eval:
        return []
    dataset = load_source(data_cfg.eval, _columns(data_cfg))
    for column in ("question", "answer"):
        if column not in dataset.column_names:
            raise DataError(f"{data_cfg.eval}: expected a '{column}' column, found {dataset.column_names}")
    rows = [dict(r) for r in dataset]
    for number, row in enumerate(rows, start=1):
        row["facts"] = row.get("facts") or [row["answer"]]
        if not row["question"] or not row["answer"]:
            raise DataError(f"{data_cfg.eval}: row {number}: empty question or answer")
    return rows[:limit] if limit else rows
