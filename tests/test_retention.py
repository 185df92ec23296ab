"""What fine-tuning made the model forget: the retention set (data.retention) and lm-eval-harness tasks
(eval.harness), measured for the base and the tuned model in the same run. docs/retention.md."""

import json

import pytest
from helpers import compose_cfg, read_results, run_cli

from ftlab.data.load import DataError
from ftlab.eval.answers import answer_loss
from ftlab.eval.harness import Harness
from ftlab.eval.retention import Retention
from ftlab.runs.records import tracker_metrics

FORGETTING = ["data.retention=data/hr/retention.jsonl", "eval.harness.tasks=[hr_general]"]


@pytest.fixture(scope="module")
def base(tiny_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_path), AutoTokenizer.from_pretrained(tiny_path)


@pytest.mark.slow
def test_full_fine_tuning_at_a_high_rate_forgets_what_the_base_knew(tmp_path):
    """The shipped retention set is one the base is good on (held out of its pre-training, answers learned from other
    phrasings), so fine-tuning can hurt it: full fine-tuning at a high rate raises its loss beyond its interval."""
    code, out = run_cli(
        [
            "strategy=full",
            "optimizer.lr=3e-3",
            "train.max_steps=12",
            "train.batch_size=8",
            "train.eval_steps=0",
            "eval.max_questions=6",
            "eval.max_new_tokens=12",
            "eval.harness.limit=24",
            "wandb.mode=disabled",
            *FORGETTING,
            f"hydra.run.dir={tmp_path}",
        ]
    )
    assert code == 0, out[-3000:]
    r = read_results(tmp_path)["retention"]
    assert r["rows"] == 96 and r["base_loss"] < 1.0  # the base is good on it: it measures something
    assert r["loss_change"] == pytest.approx(r["loss"] - r["base_loss"])
    assert r["loss_change_ci"][0] > 0.2, r  # forgotten, beyond the rows' noise
    assert r["base_loss_ci"][0] < r["base_loss"] < r["base_loss_ci"][1]

    h = read_results(tmp_path)["harness"]
    assert h["tasks"] == ["hr_general"] and h["limit"] == 24
    for side in ("base", "tuned"):
        scores = h[side]["hr_general"]
        assert 0 <= scores["acc"] <= 1 and scores["acc_stderr"] > 0, scores
    per_question = json.loads((tmp_path / "retention.json").read_text())
    assert len(per_question["retention"]) == 96
    acc = per_question["harness"]["hr_general"]["acc"]
    assert len(acc["base"]) == len(acc["tuned"]) == 24
    assert sum(acc["tuned"]) / 24 == pytest.approx(h["tuned"]["hr_general"]["acc"])
    assert h["change"]["hr_general"]["acc"]["change"] == pytest.approx(
        h["tuned"]["hr_general"]["acc"] - h["base"]["hr_general"]["acc"]
    )
    phases = read_results(tmp_path)["phases_s"]
    assert {"base_retention", "retention", "base_harness", "harness"} <= set(phases)
    logged = tracker_metrics(read_results(tmp_path))  # what W&B's summary gets
    assert logged["retention/loss_change"] == r["loss_change"]
    assert logged["harness/tuned/hr_general/acc"] == h["tuned"]["hr_general"]["acc"]
    assert "retention loss   base" in out and "hr_general       base" in out  # the summary's second half


def test_harness_scores_the_in_memory_model_as_ftlab_scores_it(base):
    """lm-eval's accuracy on the shipped task equals ftlab's own reading of the same model: the choice whose tokens,
    after the question in the chat template, have the lowest summed loss. Also: the run's numbers are lm-eval's."""
    model, tokenizer = base
    cfg = compose_cfg([*FORGETTING, "eval.harness.limit=16"])
    scored = Harness(cfg.eval.harness)(model, tokenizer)
    rows = [json.loads(line) for line in open("data/hr/harness/hr_general.jsonl")][:16]
    mine = []
    for row in rows:
        _, sums, _ = answer_loss(
            model, tokenizer, [{"question": row["question"], "answer": c} for c in row["choices"]], None
        )
        mine.append(float(min(range(len(sums)), key=sums.__getitem__) == row["label"]))
    assert scored["samples"]["hr_general"]["acc"] == mine
    assert scored["scores"]["hr_general"]["acc"] == pytest.approx(sum(mine) / 16)


def test_a_missing_task_folder_fails_before_any_model_loads():
    # (an unknown task name is refused the same way, after lm-eval indexes its built-in tasks: 10 s, not tested)
    with pytest.raises(ValueError, match="eval.harness.include_path: nowhere is not a folder"):
        Harness(compose_cfg(["eval.harness.tasks=[hr_general]", "eval.harness.include_path=nowhere"]).eval.harness)


def test_any_user_file_works_text_questions_messages_and_facts(base, tmp_path):
    """Rows of each form are scored; rows with facts also get answer accuracy; the change is tuned minus base."""
    model, tokenizer = base
    rows = [
        {"text": "Flexible working lets you adjust start and end times."},
        {"question": "What is garden leave?", "answer": "Garden leave means you stay employed.", "facts": ["leave"]},
        {"prompt": "What are core hours?", "completion": "Core hours are in the middle of the day."},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]},
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    retention = Retention(compose_cfg([f"data.retention={path}"]), tokenizer)
    scored = retention(model)
    assert len(scored["loss_sums"]) == 4 and all(n > 0 for n in scored["tokens"])
    assert scored["tokens"][0] == len(tokenizer(rows[0]["text"], add_special_tokens=False)["input_ids"]) - 1
    assert len(scored["correct"]) == 1 and scored["answer_accuracy"] in (0.0, 1.0)
    record = retention.record(scored, scored)
    assert record["loss_change"] == 0 and record["loss_change_ci"] == [0.0, 0.0]
    assert record["answer_accuracy_change"] == 0


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "Q?"}', "mine.jsonl:2: 'answer' must be a non-empty string"),
        ('{"messages": [{"role": "user", "content": "Hi"}]}', "mine.jsonl:2: the last message must be the assistant's"),
        ('{"title": "x"}', "mine.jsonl:2: expected text, question/answer, prompt/completion or messages"),
        ("not json", "mine.jsonl:2: not valid JSON"),
    ],
)
def test_a_bad_retention_row_names_its_file_and_line(tmp_path, line, message):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        Retention(compose_cfg([f"data.retention={path}"]), None)
