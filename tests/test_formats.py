"""Training data in the formats other tools use, checked record by record, cleaned, split and checked for leakage."""

import json

import pytest
from helpers import QUICK, compose_cfg, read_results, run_cli

from ftlab.data.load import DataError, prepare

SYSTEM = "Be exact."
ALPACA = [
    {"instruction": "What is the notice period?", "input": "", "output": "It is 90 days."},
    {"instruction": "Summarise the rule.", "input": "Probation lasts 4 months.", "output": "4 months."},
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "human", "value": "Notice period?"},
            {"from": "gpt", "value": "90 days."},
            {"from": "human", "value": "And probation?"},
            {"from": "gpt", "value": "4 months."},
        ]
    }
]
OPENAI = [
    {
        "messages": [
            {"role": "user", "content": "Notice period?"},
            {"role": "assistant", "content": "Usually 1-3 months.", "weight": 0},
            {"role": "user", "content": "At this company?"},
            {"role": "assistant", "content": "90 days.", "weight": 1},
        ]
    },
    {"messages": [{"role": "user", "content": "Probation?"}, {"role": "assistant", "content": "4 months."}]},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_cfg(path, fmt="prompt_completion", *extra):
    return compose_cfg(["data=custom", f"data.train.{fmt}={path}", f"data.system_prompt={SYSTEM}", *extra]).data


def test_alpaca_becomes_prompt_completion_and_messages(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", ALPACA)
    train, _, record = prepare(data_cfg(path), "prompt_completion", SYSTEM)
    assert record["format"] == "alpaca" and len(train) == 2
    assert train[1]["prompt"][-1] == {"role": "user", "content": "Summarise the rule.\n\nProbation lasts 4 months."}
    assert train[1]["completion"] == [{"role": "assistant", "content": "4 months."}]
    messages = prepare(data_cfg(path, "messages"), "messages", SYSTEM)[0]
    assert [t["role"] for t in messages[0]["messages"]] == ["system", "user", "assistant"]


def test_sharegpt_roles_are_mapped(tmp_path):
    train, _, record = prepare(data_cfg(write_jsonl(tmp_path / "s.jsonl", SHAREGPT), "messages"), "messages", SYSTEM)
    assert record["format"] == "sharegpt"
    assert [t["role"] for t in train[0]["messages"]] == ["system", "user", "assistant", "user", "assistant"]


def test_openai_weight_zero_turns_are_not_trained(tmp_path):
    """A weight-0 assistant turn stays in the context but is never a training target."""
    train, _, record = prepare(data_cfg(write_jsonl(tmp_path / "o.jsonl", OPENAI), "messages"), "messages", SYSTEM)
    assert record["format"] == "messages" and train.column_names == ["prompt", "completion"]
    targets = [row["completion"][0]["content"] for row in train]
    assert targets == ["90 days.", "4 months."]  # "Usually 1-3 months." (weight 0) is context only
    assert train[0]["prompt"][2] == {"role": "assistant", "content": "Usually 1-3 months."}


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_table_files_of_alpaca_records(suffix, tmp_path):
    import pandas as pd

    path = tmp_path / f"alpaca{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(ALPACA))
    else:
        getattr(pd.DataFrame(ALPACA), "to_csv" if suffix == ".csv" else "to_parquet")(path, index=False)
    train, _, record = prepare(data_cfg(path), "prompt_completion", SYSTEM)
    assert record["format"] == "alpaca" and len(train) == 2


BROKEN = [  # (file name, content, the one line expected after the path)
    ("bad.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": oops}\n', ":2: not valid JSON (Expecting value)"),
    (
        "missing.jsonl",
        '{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n',
        ":2: missing field 'completion' (expected prompt, completion)",
    ),
    (
        "role.jsonl",
        '{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}\n',
        ":1: field 'messages[1].role': expected one of assistant, system, user, got 'bot'",
    ),
    (
        "empty.jsonl",
        '{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "  "}\n',
        ":2: field 'completion' is empty",
    ),
    (
        "latin1.jsonl",
        b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "d"}\n',
        ":2: not UTF-8 text (byte 0xe9)",
    ),
    (
        "nocol.csv",
        "prompt\nWhat is the notice?\n",
        ": no column 'completion' (found: prompt; prompt_completion data needs prompt, completion; map yours with "
        "data.columns)",
    ),
]


@pytest.mark.parametrize("name,content,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_is_one_line_with_file_line_and_field(name, content, expected, tmp_path):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    fmt = "messages" if name == "role.jsonl" else "prompt_completion"
    with pytest.raises(DataError) as err:
        prepare(data_cfg(path, fmt), fmt, None)
    assert str(err.value) == f"{path}{expected}"


def test_a_broken_file_stops_the_cli_before_loading_with_no_ok_results(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    code, out = run_cli(
        [*QUICK, "data=custom", f"data.train.prompt_completion={path}", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert code == 1 and f"error: {path}:2: missing field 'completion'" in out and "Traceback" not in out
    assert read_results(tmp_path / "run")["status"] == "failed" and not (tmp_path / "run" / "model").exists()


def test_drop_mode_counts_bad_records_and_an_empty_result_is_an_error(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [{"prompt": "a", "completion": "b"}, {"prompt": "c"}, {"prompt": "d", "completion": ""}],
    )
    train, _, record = prepare(data_cfg(path, "prompt_completion", "data.on_error=drop"), "prompt_completion", None)
    assert len(train) == 1 and record["invalid_dropped"] == 2
    assert record["invalid_reasons"] == {
        "missing field 'completion' (expected prompt, completion)": 1,
        "field 'completion' is empty": 1,
    }
    bad = write_jsonl(tmp_path / "allbad.jsonl", [{"prompt": "c"}])
    with pytest.raises(DataError, match=r"no valid records \(1 dropped\)"):
        prepare(data_cfg(bad, "prompt_completion", "data.on_error=drop"), "prompt_completion", None)


def test_duplicates_lengths_and_a_seeded_split(tmp_path, tiny_path):
    from ftlab.model.load import load_tokenizer

    rows = [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(40)]
    rows += [
        {"prompt": "question 3", "completion": "answer 3"},  # near duplicate of row 3
        {"prompt": "Question 5?", "completion": "Answer 5."},  # exact duplicate
        {"prompt": "Long? " * 60, "completion": "x"},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    tokenizer = load_tokenizer(compose_cfg().model, tiny_path)
    cfg = data_cfg(path, "prompt_completion", "data.max_tokens=50", "data.validation_split=0.25")
    train, validation, record = prepare(cfg, "prompt_completion", None, tokenizer, seed=1)
    assert record["duplicates_removed"] == 2 and record["too_long"] == 1
    assert len(train) + len(validation) == 40 and len(validation) == 10
    again = prepare(
        data_cfg(
            write_jsonl(tmp_path / "r.jsonl", rows[::-1]),
            "prompt_completion",
            "data.max_tokens=50",
            "data.validation_split=0.25",
        ),
        "prompt_completion",
        None,
        tokenizer,
        seed=1,
    )[1]
    assert sorted(r["completion"][0]["content"] for r in again) == sorted(
        r["completion"][0]["content"] for r in validation
    )  # the file's order does not matter
    other = prepare(cfg, "prompt_completion", None, tokenizer, seed=2)[1]
    assert {r["completion"][0]["content"] for r in other} != {r["completion"][0]["content"] for r in validation}
    exact = prepare(data_cfg(path, "prompt_completion", "data.dedupe=exact"), "prompt_completion", None)[2]
    assert exact["duplicates_removed"] == 1


@pytest.mark.parametrize("mode", ["warn", "drop", "error"])
def test_leakage_of_held_out_questions_into_training(mode, tmp_path):
    train_rows = [
        {"prompt": "What is the notice period?", "completion": "90 days."},
        {"prompt": "How long is probation?", "completion": "4 months."},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", train_rows)
    heldout = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"question": "what is the NOTICE period", "answer": "90 days."},
            {"question": "Who approves leave?", "answer": "Your manager."},
        ],
    )
    cfg = data_cfg(path, "prompt_completion", f"data.eval={heldout}", f"data.leakage={mode}")
    if mode == "error":
        with pytest.raises(DataError, match="1 held-out question.* also in training, e.g. 'what is the NOTICE"):
            prepare(cfg, "prompt_completion", None)
        return
    train, _, record = prepare(cfg, "prompt_completion", None)
    assert record["leaked_eval_questions"] == 1 and len(train) == (2 if mode == "warn" else 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,rows,objective,slot",
    [
        ("alpaca", ALPACA, "sft", "prompt_completion"),
        ("sharegpt", SHAREGPT, "instruct", "messages"),
        ("openai", OPENAI, "instruct", "messages"),
    ],
)
def test_each_format_trains_through_the_cli(name, rows, objective, slot, tmp_path):
    path = write_jsonl(tmp_path / f"{name}.jsonl", rows * 4)
    code, out = run_cli(
        [
            *QUICK,
            "train.max_steps=2",
            "data=custom",
            f"objective={objective}",
            f"data.train.{slot}={path}",
            "data.dedupe=none",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    assert code == 0, out[-3000:]
    results = read_results(tmp_path / "run")
    assert results["status"] == "ok" and results["train"]["steps"] == 2
    assert results["data"]["preparation"]["format"] == ("messages" if name == "openai" else name)


@pytest.mark.slow
def test_a_validation_split_is_evaluated_before_and_after(tmp_path):
    code, out = run_cli([*QUICK, "train.max_steps=10", "data.validation_split=0.2", f"hydra.run.dir={tmp_path}"])
    assert code == 0, out[-3000:]
    results = read_results(tmp_path)
    preparation, evals = results["data"]["preparation"], results["eval"]
    assert preparation["validation"] == 69 and preparation["train"] == 24  # 345 x 0.2 held out; QUICK keeps 24
    assert evals["validation_loss"] < evals["base_validation_loss"]
    assert results["history"]["eval"], "the eval-loss curve is on the validation split"


def test_an_unreachable_hub_dataset_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_cfg(["data=custom", "data.train.prompt_completion=someone/no-such-dataset"]).data
    with pytest.raises(DataError, match=r"^someone/no-such-dataset: cannot load as a dataset \("):
        prepare(cfg, "prompt_completion", None)
