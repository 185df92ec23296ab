"""Data sources load in every supported form, bad files get one clear line, and answers are scored as documented."""

import json
import re

import pytest
from helpers import compose_cfg

from ftlab.data.load import DataError, eval_questions, load_source, train_dataset
from ftlab.eval.answers import states_facts
from ftlab.model.tiny import DATA_DIR

ROWS = [{"q": "How long is the notice?", "a": "It is 90 days."}, {"q": "Probation?", "a": "4 months."}]


def write_table(tmp_path, suffix):
    import pandas as pd

    frame = pd.DataFrame(ROWS)
    path = tmp_path / f"qa{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS))
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_table_files_load_with_column_mapping(suffix, tmp_path):
    path = write_table(tmp_path, suffix)
    cfg = compose_cfg(
        [
            "data=custom",
            "objective=sft",
            f"data.train.prompt_completion={path}",
            "data.columns={q: prompt, a: completion}",
            "data.system_prompt=Be exact.",
        ]
    )
    data = train_dataset(cfg.data, "prompt_completion", cfg.data.system_prompt)
    assert len(data) == 2
    assert data[0]["prompt"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "How long is the notice?"},
    ]
    assert data[0]["completion"] == [{"role": "assistant", "content": "It is 90 days."}]


def test_text_folder_becomes_paragraph_chunks(tmp_path):
    (tmp_path / "a.md").write_text("# Leave\n\nEveryone gets 25 days.\n\n# Notice\n\nNotice is 90 days.\n")
    (tmp_path / "b.txt").write_text("Payroll runs on the 25th.")
    data = load_source(str(tmp_path), {})
    assert data.column_names == ["text"]
    assert "Notice is 90 days." in " ".join(data["text"]) and "Payroll" in " ".join(data["text"])


def test_shipped_hr_data_has_every_format():
    cfg = compose_cfg()
    for fmt, column in [("prompt_completion", "completion"), ("messages", "messages"), ("text", "text")]:
        assert len(train_dataset(cfg.data, fmt, cfg.data.system_prompt)) > 10, column
    rows = eval_questions(cfg.data, None)
    assert len(rows) >= 60 and all(r["facts"] for r in rows)
    assert any(r["question"] == cfg.eval.sample_question for r in rows)


def test_heldout_questions_appear_in_no_training_or_pretraining_file():
    def norm(text):
        return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()

    seen = set()
    for name in ("qa.jsonl", "chat.jsonl", "generic.jsonl"):
        for line in (DATA_DIR / name).read_text().splitlines():
            row = json.loads(line)
            turns = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
            seen |= {norm(t["content"]) for t in turns if t["role"] == "user"}
    cfg = compose_cfg()
    assert not [r["question"] for r in eval_questions(cfg.data, None) if norm(r["question"]) in seen]


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"prompt": "a", "completion": "b"}\n{"prompt": oops}\n', ":2: not valid JSON"),
        ('["a list"]\n', ":1: expected a JSON object"),
        ('{"question": "a", "answer": "b"}\n', ":1: missing field 'prompt' (expected prompt, completion)"),
    ],
)
def test_bad_training_file_names_file_and_line(content, message, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    cfg = compose_cfg(["data=custom", f"data.train.prompt_completion={path}"])
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        train_dataset(cfg.data, "prompt_completion", None)


def test_missing_source_for_objective_is_named():
    cfg = compose_cfg(["data=custom"])
    with pytest.raises(DataError, match="data.train.messages"):
        train_dataset(cfg.data, "messages", None)


@pytest.mark.parametrize(
    "answer,facts,expected",
    [
        ("Senior Consultants have a 90-day notice period.", ["90 days"], True),
        ("They have a notice period of 90 Days.", ["90 days"], True),
        ("A notice of 190 days.", ["90 days"], False),
        ("Up to EUR 1,200 per year.", ["EUR 1,200"], True),
        ("Up to EUR 1,2000 per year.", ["EUR 1,200"], False),
        ("Core hours run 10:00 to 16:00.", ["10:00 to 16:00"], True),
        ("Usually one to three months.", ["90 days"], False),
    ],
)
def test_answer_scoring(answer, facts, expected):
    assert states_facts(answer, facts) == expected
