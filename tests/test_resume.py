"""Kill a run with SIGKILL (or stop it with Ctrl-C) mid-training, rerun the command: it resumes and ends exactly where
an uninterrupted run ends. Damaged checkpoints are skipped. (Finished runs kept: test_run.py and test_sweeps.py.)"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import QUICK, read_results, run_cli
from safetensors.torch import load_file

from ftlab.core.files import PROJECT_ROOT
from ftlab.runs.checkpoints import checkpoint_problem

pytestmark = pytest.mark.slow

# 16 steps with a checkpoint every 4: the kill lands after the first complete checkpoint, before the end.
RESUMABLE = [
    "train.max_steps=16",
    "train.save_steps=4",
    "train.batch_size=4",
    "eval.max_questions=4",
    "eval.max_new_tokens=8",
    "data.max_train_examples=32",
    "wandb.mode=disabled",
    "train.eval_steps=0",
    "train.logging_steps=1",
]
CASES = {"sft-lora": ["strategy=lora"], "sft-full": ["strategy=full"], "dpo-lora": ["objective=dpo", "strategy=lora"]}


def start(args, run_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ftlab", *args, f"hydra.run.dir={run_dir}"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )


def wait_for_checkpoint(proc, run_dir: Path, timeout: float = 300) -> None:
    """Until a complete checkpoint exists (training is under way), polling as fast as a user could not."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(checkpoint_problem(c) is None for c in (run_dir / "checkpoints").glob("checkpoint-*")):
            return
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint before the run ended: {proc.communicate()[0][-2000:]}")


def assert_same_run(expected: Path, resumed: Path) -> None:
    a, b = read_results(expected), read_results(resumed)
    assert b["status"] == "ok" and b["train"]["steps"] == a["train"]["steps"]
    steps, losses = zip(*a["history"]["train"])
    assert [s for s, _ in b["history"]["train"]] == list(steps)  # the steps before the kill are in the history too
    assert [loss for _, loss in b["history"]["train"]] == pytest.approx(losses, rel=1e-5)
    for key, value in a["eval"].items():
        if isinstance(value, float) and "memory" not in key:
            assert b["eval"][key] == pytest.approx(value, rel=1e-5), key
    files = sorted(p.name for p in (expected / "model").glob("*.safetensors"))
    assert files and files == sorted(p.name for p in (resumed / "model").glob("*.safetensors"))
    for name in files:
        before, after = load_file(expected / "model" / name), load_file(resumed / "model" / name)
        for tensor in before:
            assert (before[tensor] - after[tensor]).abs().max() <= 1e-6, tensor


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run per case (checkpoints kept: the damaged-checkpoint tests cut copies of them)."""
    runs = {}

    def get(case):
        if case not in runs:
            run_dir = tmp_path_factory.mktemp(f"whole-{case}")
            code, out = run_cli([*CASES[case], *RESUMABLE, "train.keep_checkpoints=true", f"hydra.run.dir={run_dir}"])
            assert code == 0, out[-3000:]
            runs[case] = run_dir
        return runs[case]

    return get


# SIGKILL on the LoRA cases (an SFT and a DPO trainer); full fine-tuning resumes from the checkpoint Ctrl-C writes
# below, to the same weights: a third kill case repeated that for 25 s of CI.
@pytest.mark.parametrize("case", ["sft-lora", "dpo-lora"])
def test_killed_run_resumes_to_the_same_weights_and_losses(case, uninterrupted, tmp_path):
    args = [*CASES[case], *RESUMABLE]
    proc = start(args, tmp_path)
    wait_for_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert read_results(tmp_path)["status"] == "running"  # a killed run never looks finished
    if case == "sft-lora":
        # Other settings into the same directory: refused, not mixed into the checkpoint.
        code, out = run_cli([*args, "optimizer.lr=0.001", f"hydra.run.dir={tmp_path}"])
        assert code == 1 and "holds an unfinished run with other settings (optimizer.lr: " in out
        assert "Traceback" not in out
        # A checkpoint cut short while it was written (the newest one): skipped with a message.
        good = max(
            (c for c in (tmp_path / "checkpoints").glob("checkpoint-*") if checkpoint_problem(c) is None),
            key=lambda c: int(c.name.split("-")[1]),
        )
        cut = good.with_name(f"checkpoint-{int(good.name.split('-')[1]) + 1}")
        shutil.copytree(good, cut)
        state = json.loads((cut / "trainer_state.json").read_text())
        (cut / "trainer_state.json").write_text(json.dumps({**state, "global_step": state["global_step"] + 1}))
        weights = cut / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, out = run_cli([*args, f"hydra.run.dir={tmp_path}"])  # the same command again
    assert code == 0, out[-3000:]
    assert "resuming from" in out
    if case == "sft-lora":
        assert f"{cut.name} is incomplete: adapter_model.safetensors: truncated; skipped" in out
    assert "/checkpoints/checkpoint-" in read_results(tmp_path)["resumed_from"]
    assert not (tmp_path / "checkpoints").exists()  # removed once the run finished (train.keep_checkpoints)
    assert_same_run(uninterrupted(case), tmp_path)


def test_ctrl_c_saves_a_checkpoint_and_the_rerun_finishes_the_same(uninterrupted, tmp_path):
    args = [*CASES["sft-full"], *RESUMABLE]
    proc = start(args, tmp_path)
    wait_for_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out[-2000:]
    results = read_results(tmp_path)
    assert results["status"] == "interrupted" and "SIGINT at step" in results["reason"]
    step = results["reason"].split("at step ")[1].split(":")[0]
    assert checkpoint_problem(tmp_path / "checkpoints" / f"checkpoint-{step}") is None
    assert f"resume with: {results['resume_command']}" in out and "Traceback" not in out
    assert not (tmp_path / "model").exists()
    code, out = run_cli(results["resume_command"].split()[3:])  # the printed command, as a user pastes it
    assert code == 0, out[-3000:]
    assert_same_run(uninterrupted("sft-full"), tmp_path)


def test_damaged_checkpoints_are_named(uninterrupted, tmp_path):
    source = uninterrupted("sft-full") / "checkpoints" / "checkpoint-16"
    assert checkpoint_problem(source) is None
    damage = {
        "no trainer_state.json": lambda c: (c / "trainer_state.json").unlink(),
        "optimizer.pt is missing or truncated": lambda c: (c / "optimizer.pt").write_bytes(
            (c / "optimizer.pt").read_bytes()[:1000]
        ),
        "model.safetensors: truncated": lambda c: (c / "model.safetensors").write_bytes(
            (c / "model.safetensors").read_bytes()[:-10]
        ),
        "rng_state.pth is missing": lambda c: (c / "rng_state.pth").unlink(),
    }
    for i, (message, cut) in enumerate(damage.items()):
        copy = tmp_path / str(i) / "checkpoint-16"
        shutil.copytree(source, copy)
        cut(copy)
        assert message in checkpoint_problem(copy)


def test_pickle_checkpoint_is_refused_unless_allowed(uninterrupted, tmp_path):
    import torch

    copy = tmp_path / "checkpoint-16"
    shutil.copytree(uninterrupted("sft-full") / "checkpoints" / "checkpoint-16", copy)
    torch.save(load_file(copy / "model.safetensors"), copy / "pytorch_model.bin")
    (copy / "model.safetensors").unlink()
    assert "pickle (pytorch_model.bin), which can run code" in checkpoint_problem(copy)
    assert checkpoint_problem(copy, allow_pickle=True) is None
    code, out = run_cli([*QUICK, f"resume={copy}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 1 and f"error: resume={copy}: its weights are a pickle" in out
