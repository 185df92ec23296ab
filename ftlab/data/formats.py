"""Training-data formats: detect one from a record, check every record against it, convert to what TRL reads."""

# Detected from a record's fields, most specific first. The ftlab formats (what an objective reads) are
# prompt_completion, messages, text, preference, unpaired_preference and prompt; alpaca and sharegpt are converted.
SIGNATURES = [
    ("alpaca", {"instruction", "output"}),
    ("sharegpt", {"conversations"}),
    ("messages", {"messages"}),  # OpenAI fine-tuning chat JSONL (role/content, optional weight 0/1)
    ("preference", {"prompt", "chosen", "rejected"}),
    ("unpaired_preference", {"prompt", "completion", "label"}),
    ("prompt_completion", {"prompt", "completion"}),
    ("text", {"text"}),
    ("prompt", {"prompt"}),
]
FORMATS = [name for name, _ in SIGNATURES]
REQUIRED_FIELDS = {name: sorted(fields) for name, fields in SIGNATURES}
EXPECTED = {
    "alpaca": "instruction, input (optional), output",
    "sharegpt": "conversations: [{from: human|gpt|system, value}]",
    "messages": "messages: [{role: system|user|assistant, content, weight (optional, 0 or 1)}]",
    "preference": "prompt, chosen, rejected",
    "unpaired_preference": "prompt, completion, label",
    "prompt_completion": "prompt, completion",
    "text": "text",
    "prompt": "prompt, facts (optional)",
}
ROLES = {"system", "user", "assistant"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
# What each objective's format can be made from (besides itself).
CONVERTIBLE = {  # normalised forms: Alpaca is prompt_completion, ShareGPT is messages
    "prompt_completion": {"messages"},
    "messages": {"prompt_completion"},
    "prompt": {"prompt_completion", "preference", "unpaired_preference"},
}


class RecordError(ValueError):
    """One record breaks its format: the message names the field and what was expected."""


def detect(record: dict) -> str | None:
    keys = {k for k, v in record.items() if v is not None}
    return next((name for name, fields in SIGNATURES if fields <= keys), None)


def _text(record: dict, field: str, allow_empty: bool = False) -> str:
    value = record.get(field)
    if value is None:
        raise RecordError(f"missing field '{field}'")
    if not isinstance(value, str):
        raise RecordError(f"field '{field}': expected text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RecordError(f"field '{field}' is empty")
    return value


def _turns(record: dict, field: str, role_key: str, content_key: str, roles: dict) -> list:
    """A conversation as [{role, content, weight?}], checked: known roles, text content, an assistant turn last."""
    turns = record.get(field)
    if not isinstance(turns, list) or not turns:
        raise RecordError(f"field '{field}': expected a non-empty list of turns, got {type(turns).__name__}")
    out = []
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(f"field '{where}': expected an object with {role_key} and {content_key}")
        role = turn.get(role_key)
        if role not in roles:
            raise RecordError(f"field '{where}.{role_key}': expected one of {', '.join(sorted(roles))}, got {role!r}")
        content = turn.get(content_key)
        if not isinstance(content, str) or not content.strip():
            raise RecordError(f"field '{where}.{content_key}' is empty or not text")
        item = {"role": roles[role], "content": content}
        if turn.get("weight") is not None:
            if turn["weight"] not in (0, 1) or roles[role] != "assistant":
                raise RecordError(
                    f"field '{where}.weight': expected 0 or 1 on an assistant turn, got {turn['weight']!r}"
                )
            item["weight"] = int(turn["weight"])
        out.append(item)
    if out[-1]["role"] != "assistant":
        raise RecordError(f"field '{field}': the last turn must be the assistant's (got {out[-1]['role']})")
    if out[0]["role"] == "assistant":
        raise RecordError(f"field '{field}[0]': a conversation starts with a system or user turn, not the assistant")
    return out


def normalise(record: dict, fmt: str) -> dict:
    """The record checked against its format, in ftlab's form; raises RecordError naming the field."""
    if fmt == "alpaca":
        instruction, extra = (
            _text(record, "instruction"),
            _text(record, "input", allow_empty=True) if record.get("input") is not None else "",
        )
        return {
            "prompt": f"{instruction}\n\n{extra}" if extra.strip() else instruction,
            "completion": _text(record, "output"),
        }
    if fmt == "sharegpt":
        return {"messages": _turns(record, "conversations", "from", "value", SHAREGPT_ROLES)}
    if fmt == "messages":
        return {"messages": _turns(record, "messages", "role", "content", {r: r for r in ROLES})}
    if fmt == "preference":
        row = {k: _text(record, k) for k in ("prompt", "chosen", "rejected")}
        if row["chosen"].strip() == row["rejected"].strip():
            raise RecordError("fields 'chosen' and 'rejected' are the same answer")
        return row
    if fmt == "unpaired_preference":
        if not isinstance(record.get("label"), bool):
            raise RecordError(f"field 'label': expected true or false, got {record.get('label')!r}")
        return {"prompt": _text(record, "prompt"), "completion": _text(record, "completion"), "label": record["label"]}
    if fmt == "prompt_completion":
        return {"prompt": _text(record, "prompt"), "completion": _text(record, "completion")}
    if fmt == "text":
        return {"text": _text(record, "text")}
    if fmt == "prompt":
        row = {"prompt": _text(record, "prompt")}
        return row | ({"facts": record["facts"]} if record.get("facts") is not None else {})
    raise RecordError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def convert(rows: list, fmt: str, wanted: str) -> list:
    """Normalised rows of format fmt as the objective's format; conversations become one row per trained turn."""
    form = {"alpaca": "prompt_completion", "sharegpt": "messages"}.get(fmt, fmt)  # what normalise() made of them
    if form == wanted:
        return _weighted(rows) if form == "messages" else rows
    if form not in CONVERTIBLE.get(wanted, set()):
        raise ValueError(
            f"{fmt} records cannot train an objective that reads {wanted} data (expected {EXPECTED[wanted]})"
        )
    if wanted == "messages":  # a prompt/completion pair is a two-turn conversation
        return [
            {"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
            for r in rows
        ]
    if wanted == "prompt":
        return [{"prompt": r["prompt"]} for r in rows]
    # prompt_completion from a conversation: everything before an assistant turn is the prompt, the turn the answer.
    out = []
    for row in rows:
        turns = row["messages"]
        for i, turn in enumerate(turns):
            if turn["role"] == "assistant" and turn.get("weight", 1) == 1 and (i == len(turns) - 1 or "weight" in turn):
                out.append({"prompt": [_plain(t) for t in turns[:i]], "completion": [_plain(turn)]})
    return out


def _weighted(rows: list) -> list:
    """OpenAI's per-turn weight: TRL trains every assistant turn of a conversation, so a conversation with a
    weight-0 turn becomes prompt/completion rows, one per trained turn; the others stay conversations."""
    if not any("weight" in t for r in rows for t in r["messages"]):
        return [{"messages": [_plain(t) for t in r["messages"]]} for r in rows]
    return convert(
        [{"messages": [{**t, "weight": t.get("weight", 1)} for t in r["messages"]]} for r in rows],
        "messages",
        "prompt_completion",
    )


def _plain(turn: dict) -> dict:
    return {"role": turn["role"], "content": turn["content"]}
