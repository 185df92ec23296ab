"""python -m ftlab.chat: a trained run answers held-out questions exactly as its own evaluation did."""

import io
import json
import subprocess
import sys

import pytest
from helpers import shared_run


def held_out_answers(run_dir) -> list:
    return json.loads((run_dir / "answers.json").read_text())["answers"]


def chat(*args, stdin: str = "", timeout: int = 300):
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab.chat", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.mark.slow
def test_chat_streams_the_runs_own_answers(chat_run, monkeypatch, capsys):
    """Questions typed one a line (the interactive path, streamed token by token) get, with the default settings,
    the tuned_answer of answers.json for each held-out question."""
    from ftlab.chat import main

    answers = held_out_answers(chat_run)
    assert any(a["tuned_answer"] != a["base_answer"] for a in answers), "the fixture run must change the answers"
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(a["question"] + "\n" for a in answers)))
    main([str(chat_run)])
    out = capsys.readouterr().out
    assert [line.strip() for line in out.strip().splitlines()] == [a["tuned_answer"] for a in answers]


@pytest.mark.slow
def test_chat_answers_a_prompts_file(chat_run, tmp_path, capsys):
    from ftlab.chat import main

    answers = held_out_answers(chat_run)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": a["question"]}) + "\n" for i, a in enumerate(answers)))
    out = tmp_path / "answers.jsonl"
    main([str(chat_run), "--prompts", str(prompts), "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(len(answers)))  # the input's fields are kept
    assert [r["answer"] for r in rows] == [a["tuned_answer"] for a in answers]
    assert f"{len(answers)} answers" in capsys.readouterr().out

    # Options change the settings: two new tokens at most, sampled, no system prompt; printed when there is no --out.
    text = tmp_path / "questions.txt"
    text.write_text(f"{answers[0]['question']}\n\n")
    main(
        [
            str(chat_run),
            "--prompts",
            str(text),
            "--max-new-tokens",
            "2",
            "--temperature",
            "0.7",
            "--top-p",
            "0.9",
            "--system-prompt",
            "",
        ]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["question"] == answers[0]["question"] and len(rows[0]["answer"].split()) <= 2


@pytest.mark.slow
def test_merged_export_answers_with_its_runs_settings(chat_run, tmp_path):
    """A merged export (python -m ftlab.merge) is a chat target too, with the settings of the run it came from."""
    from ftlab.chat import answer, load_chat_model
    from ftlab.model.source import merge_run, run_config

    merge_run(chat_run, tmp_path / "export")
    model, tokenizer, settings, cfg = load_chat_model(tmp_path / "export")
    assert cfg is not None and settings.greedy and settings.max_new_tokens == 16
    assert settings.system_prompt == run_config(chat_run).data.system_prompt
    assert answer(model, tokenizer, held_out_answers(chat_run)[0]["question"], settings)


def error_of(*args) -> str:
    """The message a bad command exits with (Python prints it as one line on stderr, exit status 1)."""
    from ftlab.chat import main

    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    return stop.value.code


def test_bad_input_is_one_line_and_fails(tmp_path):
    missing = tmp_path / "missing"
    code, _, err = chat(missing)  # once through the real command: exit status and stderr
    assert code == 1 and err.strip() == f"error: {missing}: no such directory"

    assert error_of(tmp_path).startswith(f"error: {tmp_path}: not an ftlab run directory")
    reward = tmp_path / "reward_run"
    (reward / "model").mkdir(parents=True)
    (reward / "config.yaml").write_text("objective:\n  trainer: reward\n")
    assert "a reward model scores answers" in error_of(reward)

    fake = tmp_path / "fake_run"
    (fake / "model").mkdir(parents=True)
    (fake / "config.yaml").write_text("objective:\n  trainer: sft\n")
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text('{"question": "fine"}\n{"text": "no question here"}\n')
    assert (
        error_of(fake, "--prompts", prompts) == f"error: {prompts}:2: expected a 'question' or 'prompt' field with text"
    )
    assert error_of(fake, "--prompts", tmp_path / "none.txt") == f"error: {tmp_path / 'none.txt'}: no such file"
    assert error_of(fake, "--out", tmp_path / "x.jsonl") == "error: --out needs --prompts FILE"
    assert error_of(fake, "--prompts", prompts, "--top-p", "0").startswith("error: expected --temperature >= 0")
