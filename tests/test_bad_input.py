"""The bad-input suite: each case through the CLI gets one `error:` line that names the key, file or setting, a
non-zero exit, no run marked complete, and no input file changed. (Ctrl-C: tests/test_resume.py.)"""

import hashlib
import os
import resource
import signal
import subprocess
import sys

import pytest
from helpers import QUICK, read_results, run_cli

from ftlab.core.files import PROJECT_ROOT

pytestmark = pytest.mark.slow
QUICK_FULL = [*QUICK, "strategy=full"]
BAD_JSON = '{"prompt": "a", "completion": "b"}\n{"prompt": oops}\n'
NO_FIELD = '{"prompt": "What is the notice period?", "completion": "30 days."}\n{"prompt": "And for a Manager?"}\n'

CASES = {
    # id: (overrides, the message it must print, a file the case writes first, with its content)
    "wrong type": (
        ["train.batch_size=abc"],
        "Value 'abc' of type 'str' could not be converted to Integer (full_key: train.batch_size)",
        None,
    ),
    "unknown key": (["train.epocs=3"], "Key 'epocs' not in 'TrainConfig' (full_key: train.epocs)", None),
    "unknown option": (
        ["strategy=lorax"],
        "Could not find 'strategy/lorax'; Available options in 'strategy': adapter, dora",
        None,
    ),
    "impossible combination": (["strategy=full", "quant=4bit"], "strategy=full trains base weights", None),
    "bad scheme": (["quant=qat_int8_int4", "quant.qat.scheme=int3"], "quant.qat.scheme: expected one of", None),
    "malformed JSONL": (
        ["data=custom", "data.train.prompt_completion={file}"],
        "{file}:2: not valid JSON",
        ("bad.jsonl", BAD_JSON),
    ),
    "missing field": (
        ["data=custom", "data.train.prompt_completion={file}"],
        "{file}:2: missing field 'completion'",
        ("no_field.jsonl", NO_FIELD),
    ),
    "dataset with a loading script": (
        ["data=custom", "data.train.prompt_completion={dir}/evil"],
        "Dataset scripts are no longer supported, but found evil.py",
        ("evil/evil.py", "open(__file__ + '.RAN', 'w')\n"),
    ),
    "missing model path": (["model=local", "model.path={dir}/nope"], "model.path: no such folder", None),
    "bad resume path": (["resume={dir}"], "not a checkpoint-N folder", None),
    "read-only output directory": (["output_dir=/sys/ftlab_run"], "/sys/ftlab_run: cannot write", None),
}


def digest_inputs(*folders) -> dict:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, tmp_path):
    overrides, message, written = CASES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    if written:
        path = inputs / written[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(written[1])
        if path.name == "evil.py":
            (path.parent / "train.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    fill = {"file": inputs / written[0] if written else "", "dir": inputs}
    before = digest_inputs(PROJECT_ROOT / "conf", PROJECT_ROOT / "data", inputs)
    run_dir = tmp_path / "run"
    code, out = run_cli([*QUICK_FULL, *[o.format(**fill) for o in overrides], f"hydra.run.dir={run_dir}"])
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code != 0 and len(errors) == 1 and "Traceback" not in out, out[-2000:]
    assert message.format(**fill) in errors[0]
    if (run_dir / "results.json").exists():
        assert read_results(run_dir)["status"] in ("failed", "skipped")
    assert not (run_dir / "model").exists()
    assert digest_inputs(PROJECT_ROOT / "conf", PROJECT_ROOT / "data", inputs) == before  # nothing ran or changed


def test_full_disk_fails_cleanly_and_resumes(tmp_path, tiny_path):
    """A file-size limit (RLIMIT_FSIZE, the kernel's own EFBIG, as a full disk gives ENOSPC) hits the first
    checkpoint of a full fine-tune: one line that says so, results.json failed, no model, the partial checkpoint
    not taken for a complete one; without the limit the same command finishes."""

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))  # the tiny model's weights are 4.6 MB

    args = [
        *QUICK_FULL,
        "train.max_steps=4",
        "train.save_steps=2",
        "train.cache_tokenized=false",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        preexec_fn=limited,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-2000:]
    assert "error: no space left to write (" in out and "File too large" in out
    results = read_results(tmp_path)
    assert results["status"] == "failed" and results["reason"].startswith("no space left to write")
    assert not (tmp_path / "model").exists()
    code, out = run_cli(args)
    assert code == 0, out[-2000:]
    assert "checkpoint-2 is incomplete" in out and read_results(tmp_path)["status"] == "ok"


def test_out_of_memory_names_the_settings_that_lower_memory():
    """A real allocator failure (more bytes than the address space), turned into advice from the run's settings."""
    import torch
    from helpers import compose_cfg

    from ftlab.train.guards import memory_advice, out_of_memory

    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**62, dtype=torch.uint8)
    assert out_of_memory(caught.value)
    advice = memory_advice(compose_cfg(["strategy=full"]), caught.value)
    assert advice.startswith("out of memory (") and "can't allocate memory" in advice
    assert "train.batch_size=8 train.grad_accum=2 (same effective batch)" in advice
    assert "train.gradient_checkpointing=true" in advice and "quant=4bit with strategy=lora" in advice
    lean_cfg = compose_cfg(["strategy=lora", "quant=4bit", "train.gradient_checkpointing=true"])
    lean = memory_advice(lean_cfg, caught.value)
    assert "gradient_checkpointing" not in lean and "quant=4bit" not in lean
