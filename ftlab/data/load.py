"""Loads training data for an objective (local files or a hub dataset) and the held-out questions, as datasets."""

import json
from pathlib import Path

from ftlab.core.files import resolve
from ftlab.data import clean, formats

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


def read_records(source: str) -> list:
    """[(where, record or error text)] for every record of a source; where is "file:line" for JSONL, "file: row N"
    for tables and hub datasets, "file: paragraph N" for text. A record that cannot be read is an error text."""
    path = resolve(source)
    if path.is_dir() and not any(path.glob("*.parquet")) and not any(path.glob("*.json*")):
        files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no .txt or .md files in this folder")
        return [
            (f"{f}: paragraph {i}", {"text": chunk})
            for f in files
            for i, chunk in enumerate(paragraph_chunks(_read_text(f)), start=1)
        ]
    if path.suffix in TEXT_SUFFIXES:
        return [(f"{path}: paragraph {i}", {"text": c}) for i, c in enumerate(paragraph_chunks(_read_text(path)), 1)]
    if path.suffix == ".jsonl":
        return [
            (f"{path}:{n}", _json_line(raw))
            for n, raw in enumerate(path.read_bytes().split(b"\n"), start=1)
            if raw.strip()
        ]
    if path.suffix == ".json":
        try:
            rows = json.loads(_read_text(path))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
        return [
            (
                f"{path}: record {i}",
                row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}",
            )
            for i, row in enumerate(rows, start=1)
        ]
    if path.suffix in (".csv", ".parquet"):
        import pandas as pd

        try:
            frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        except (ValueError, OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read as {path.suffix[1:]} ({str(err).splitlines()[0]})") from None
        frame = frame.astype(object).where(frame.notna(), None)
        return [(f"{path}: row {i}", row) for i, row in enumerate(frame.to_dict("records"), start=1)]
    if path.exists() or ("/" in source and not source.startswith((".", "/"))):
        from datasets import load_dataset

        try:
            dataset = load_dataset(str(path) if path.exists() else source, split="train")  # local folder or hub id
        except Exception as err:  # offline, no such dataset, no train split: one line, not the hub client's trace
            raise DataError(
                f"{source}: cannot load as a dataset ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'no details'})"
            ) from None
        return [(f"{source}: row {i}", row) for i, row in enumerate(dataset, start=1)]
    raise DataError(f"{source}: no such file, folder or hub dataset")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {err.object[err.start]:#x})") from None


def _json_line(raw: bytes):
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return f"not UTF-8 text (byte {raw[err.start]:#x})"
    except json.JSONDecodeError as err:
        return f"not valid JSON ({err.msg})"
    return row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"


def load_source(source: str, columns: dict):
    """A datasets.Dataset of a source's records, columns renamed (held-out questions; text for the tiny model)."""
    from datasets import Dataset

    records = []
    for where, record in read_records(source):
        if isinstance(record, str):
            raise DataError(f"{where}: {record}")
        records.append({columns.get(k, k): v for k, v in record.items()})
    return Dataset.from_list(records)


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


def checked_rows(source: str, data_cfg, wanted: str) -> tuple[list, dict]:
    """(rows in the objective's format, a record of what was read): every record checked against its format
    (data.format, or the one most of the first records have); a bad record stops the run with file, line and
    field (data.on_error=stop) or is dropped and counted (drop)."""
    columns = _columns(data_cfg)
    records = [
        (where, {columns.get(k, k): v for k, v in r.items()} if isinstance(r, dict) else r)
        for where, r in read_records(source)
    ]
    fmt = data_cfg.format if data_cfg.format != "auto" else _majority_format(records, wanted)
    if fmt not in formats.FORMATS:
        raise DataError(f"data.format: expected auto or one of {', '.join(formats.FORMATS)}, got {fmt!r}")
    if data_cfg.on_error not in ("stop", "drop"):
        raise DataError(f"data.on_error: expected stop or drop, got {data_cfg.on_error!r}")
    tables = [r for w, r in records if isinstance(r, dict) and ": row " in w]
    missing = [f for f in formats.REQUIRED_FIELDS[fmt] if tables and all(f not in r for r in tables)]
    if missing:
        raise DataError(
            f"{source}: no column {', '.join(map(repr, missing))} (found: {', '.join(tables[0])}; "
            f"{fmt} data needs {formats.EXPECTED[fmt]}; map yours with data.columns)"
        )
    rows, dropped = [], {}
    for where, record in records:
        try:
            if isinstance(record, str):
                raise formats.RecordError(record)
            rows.append(formats.normalise(record, fmt))
        except formats.RecordError as err:
            message = str(err) + (f" (expected {formats.EXPECTED[fmt]})" if str(err).startswith("missing") else "")
            if data_cfg.on_error == "stop":
                raise DataError(f"{where}: {message}") from None
            dropped[message] = dropped.get(message, 0) + 1
    if not rows:
        raise DataError(f"{source}: no valid records" + (f" ({sum(dropped.values())} dropped)" if dropped else ""))
    try:
        converted = formats.convert(rows, fmt, wanted)
    except ValueError as err:
        raise DataError(f"{source}: {err}") from None
    return converted, {
        "source": source,
        "format": fmt,
        "records": len(records),
        "invalid_dropped": sum(dropped.values()),
        "invalid_reasons": dropped,
        "examples": len(converted),
    }


def _majority_format(records: list, wanted: str) -> str:
    counts = {}
    for _, record in records[:200]:
        fmt = formats.detect(record) if isinstance(record, dict) else None
        if (
            fmt
            and wanted in formats.REQUIRED_FIELDS
            and set(formats.REQUIRED_FIELDS[fmt]) < set(formats.REQUIRED_FIELDS[wanted])
        ):
            fmt = wanted  # {"prompt"} where prompt and completion are needed: an incomplete record, not a format
        if fmt:
            counts[fmt] = counts.get(fmt, 0) + 1
    # Ties go to what the objective reads; with nothing recognisable, records are checked against that.
    return max(counts, key=lambda f: (counts[f], f == wanted)) if counts else wanted


def prepare(data_cfg, data_format: str, system_prompt: str | None, tokenizer=None, seed: int = 0) -> tuple:
    """(train, validation or None, record): the data.train source of this format, checked, cleaned (duplicates,
    token lengths), split (data.validation_split), checked for leakage into data.eval, in the chat form TRL reads."""
    from datasets import Dataset

    source = data_cfg.train.get(data_format)
    if not source:
        raise DataError(
            f"data.train.{data_format}: objective needs a '{data_format}' source and data={data_cfg.name} has none "
            f"(it has: {', '.join(k for k, v in data_cfg.train.items() if v) or 'nothing'})"
        )
    rows, record = checked_rows(source, data_cfg, data_format)
    try:
        rows, record["duplicates_removed"] = clean.dedupe(rows, data_cfg.dedupe)
        if tokenizer is not None:
            rows, record["too_short"], record["too_long"] = clean.length_filter(
                rows, tokenizer, data_cfg.min_tokens, data_cfg.max_tokens
            )
        rows, validation = clean.split(rows, data_cfg.validation_split, seed)
    except ValueError as err:
        raise DataError(str(err)) from None
    if data_cfg.max_train_examples:
        rows = rows[: data_cfg.max_train_examples]
    questions = [r["question"] for r in eval_questions(data_cfg, None)] if data_cfg.eval else []
    leaks = clean.leaked(rows, questions)
    record["leaked_eval_questions"] = len(leaks)
    if leaks and data_cfg.leakage == "error":
        raise DataError(
            f"{data_cfg.eval}: {len(leaks)} held-out question(s) also in training, e.g. {leaks[0]!r} "
            f"(data.leakage=drop removes them from training)"
        )
    if leaks and data_cfg.leakage == "drop":
        leaked = {clean.near_key(q) for q in leaks}
        rows = [r for r in rows if clean.near_key(clean.question_text(r)) not in leaked]
    if not rows:
        raise DataError(f"{source}: no training examples left after cleaning ({record})")
    record |= {"train": len(rows), "validation": len(validation)}
    chat = [_chat_form(r, data_format, system_prompt) for r in rows]
    keep = REQUIRED[data_format] + [c for c in OPTIONAL.get(data_format, []) if c in chat[0]]
    if "completion" in chat[0] and data_format == "messages":  # OpenAI weights: prompt/completion rows
        keep = ["prompt", "completion"]
    train = Dataset.from_list([{k: r[k] for k in keep} for r in chat])
    held = (
        Dataset.from_list(
            [{k: r[k] for k in keep} for r in (_chat_form(r, data_format, system_prompt) for r in validation)]
        )
        if validation
        else None
    )
    return train, held, record


def train_dataset(data_cfg, data_format: str, system_prompt: str | None):
    """The checked training rows of this format as TRL reads them (no token filters, no validation split)."""
    return prepare(data_cfg, data_format, system_prompt)[0]


def _chat_form(row: dict, data_format: str, system_prompt: str | None) -> dict:
    """Question/answer strings become chat turns, so every objective trains and evaluates through the chat template
    exactly like the deployed bot is asked (TRL then masks the prompt: loss on the answer only)."""
    row = dict(row)
    if isinstance(row.get("prompt"), str) and data_format != "text":
        row["prompt"] = chat_prompt(row["prompt"], system_prompt)
        for answer in ("chosen", "rejected", "completion"):
            if isinstance(row.get(answer), str):
                row[answer] = [{"role": "assistant", "content": row[answer]}]
    elif isinstance(row.get("prompt"), list):
        row["prompt"] = _with_system(row["prompt"], system_prompt)
    if "messages" in row:
        row["messages"] = _with_system(row["messages"], system_prompt)
    return row


def eval_pairs(data_cfg, system_prompt: str | None, limit: int | None = None):
    """Held-out preference pairs (prompt, chosen, rejected) in chat form: a reward model's pairwise accuracy and
    the eval curve of the preference objectives. None when the data config names none."""
    if not data_cfg.eval_pairs:
        return None
    from omegaconf import OmegaConf

    pairs_cfg = OmegaConf.merge(
        data_cfg,
        {
            "train": {"preference": data_cfg.eval_pairs},
            "max_train_examples": limit,
            "format": "auto",
            "dedupe": "none",
            "validation_split": 0.0,
            "eval": None,
        },
    )
    return train_dataset(pairs_cfg, "preference", system_prompt)


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
