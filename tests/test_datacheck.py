"""python -m ftlab.datacheck: statistics, histogram, truncation, epoch tokens, compute, and the masking view."""

import json
import re
import subprocess
import sys

from ftlab.core.files import PROJECT_ROOT


def datacheck(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab.datacheck", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_data_check_of_the_hr_chats_shows_only_assistant_turns_are_trained(tmp_path):
    code, out = datacheck("objective=instruct", "--out", str(tmp_path))
    assert code == 0, out[-3000:]
    result = json.loads((tmp_path / "datacheck.json").read_text())
    assert result["data"]["records"] == 150 and result["data"]["train"] == 150 - result["data"]["duplicates_removed"]
    assert set(result["tokens"]) == {"system", "user", "assistant", "total"}
    assert result["truncated"] == 0 and result["epoch"]["tokens"] > result["epoch"]["trained_tokens"] > 0
    assert result["compute"]["flops"] == 6 * result["compute"]["params"] * result["epoch"]["tokens"] * 15
    assert (tmp_path / "lengths.png").stat().st_size > 10_000 and (tmp_path / "datacheck.md").is_file()
    example = (tmp_path / "example.txt").read_text()
    spans = re.findall(r"\[\[(.*?)\]\]", example, flags=re.S)
    assert len(spans) == example.count("<|im_start|>assistant\n") >= 1
    for span in spans:  # each trained span is one assistant answer, its end-of-turn token included
        assert span.rstrip("\n").endswith("<|im_end|>") and "<|im_start|>" not in span
    outside = re.sub(r"\[\[.*?\]\]", "", example, flags=re.S)
    assert "<|im_start|>user" in outside and "<|im_start|>system" in outside  # the context is not trained
    assert "truncates 0 of" in out and "one epoch:" in out and "FLOPs" in out and "tokens per example" in out


def test_data_check_of_prompt_completion_masks_the_prompt(tmp_path):
    code, out = datacheck("--out", str(tmp_path), "--gpu-tflops", "100")
    assert code == 0, out[-3000:]
    example = (tmp_path / "example.txt").read_text()
    assert example.index("[[") > example.index("<|im_start|>assistant\n")
    result = json.loads((tmp_path / "datacheck.json").read_text())
    assert result["compute"]["gpu_tflops"] == 100 and result["data"]["leaked_eval_questions"] == 0


def test_data_check_of_a_broken_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n')
    code, out = datacheck("data=custom", f"data.train.prompt_completion={bad}", "--out", str(tmp_path / "dc"))
    assert code == 1
    assert out.strip().endswith(f"error: {bad}:1: missing field 'completion' (expected prompt, completion)")
    assert "Traceback" not in out and not (tmp_path / "dc").exists()
