"""What the tests share: composing the real configs, running the CLI as a user does, reading what a run wrote, and
one trained run that the chat, demo and card tests reuse."""

import json
import os
import subprocess
import sys
from pathlib import Path

from filelock import FileLock
from hydra import compose, initialize_config_dir

from ftlab.core.files import PROJECT_ROOT


def compose_cfg(overrides=()):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_cli(args, cwd=None, timeout=900):
    """`python -m ftlab ARGS` in a subprocess: (returncode, combined output)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab", *args],
        cwd=cwd or PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    return proc.returncode, proc.stdout + proc.stderr


def read_results(run_dir) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())


# Quick settings for runs that only need to show the path works.
QUICK = [
    "train.max_steps=3",
    "train.batch_size=4",
    "eval.max_questions=6",
    "eval.max_new_tokens=12",
    "data.max_train_examples=24",
    "wandb.mode=disabled",
]


# Enough training (a high learning rate, no eval-loss curve) that the adapter changes the answers: a chat that
# silently dropped the adapter would answer like the base and fail the comparisons below.
CHAT_RUN = [
    "strategy=lora",
    "train.max_steps=8",
    "train.batch_size=8",
    "train.eval_steps=0",
    "optimizer.lr=0.01",
    "data.max_train_examples=64",
    "eval.max_questions=4",
    "eval.max_new_tokens=16",
    "wandb.mode=disabled",
]


def shared_run(tmp_path_factory):
    """One trained run for test_chat, test_demo and test_card: the pytest-xdist workers of one session share it
    (the first trains, the others wait on the lock); a session without xdist trains its own."""
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = tmp_path_factory.getbasetemp().parent / f"chat-run-{uid}" if uid else tmp_path_factory.getbasetemp()
    run_dir = root / "chat_run"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / "chat_run.lock")):
        if not (run_dir / "results.json").is_file() or read_results(run_dir)["status"] != "ok":
            code, out = run_cli([*CHAT_RUN, f"hydra.run.dir={run_dir}"])
            assert code == 0, out[-3000:]
    return run_dir
