"""`ftlab <verb>`: the verbs and their help, the runs table, and Hydra's shell completion through the console script."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftlab.cli import VERBS, main

FTLAB = Path(sys.executable).parent / "ftlab"  # the console script pip installed, as a user types it


def ftlab(*args, env=None):
    return subprocess.run([str(FTLAB), *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_help_lists_every_verb_without_importing_torch():
    code = (
        "import sys; from ftlab.cli import main; main(['--help']); print(sorted({'torch', 'hydra'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
    for verb in VERBS:
        assert f"\n  {verb} " in proc.stdout
    assert "data check" in proc.stdout


@pytest.mark.parametrize("verb", [v for v in VERBS if v != "train"])
def test_each_verb_has_its_own_help(verb, capsys):
    with pytest.raises(SystemExit) as stop:
        main([verb, *(["check"] if verb == "data" else []), "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--help" in out


def test_train_is_the_hydra_run_and_bare_overrides_still_are():
    proc = ftlab("train", "--help")
    assert proc.returncode == 0 and "== Configuration groups ==" in proc.stdout and "strategy: " in proc.stdout
    proc = ftlab("train", "--verbose", "--cfg", "job")  # Hydra takes no --verbose: the verb turns it into log.verbose
    assert proc.returncode == 0 and "verbose: true" in proc.stdout
    proc = ftlab("strategy=nope")  # no verb: a run, as `ftlab key=value` always was; refused before anything loads
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "strategy" in proc.stderr.splitlines()[-1] and "lora" in proc.stderr.splitlines()[-1]


def test_unknown_verbs_are_one_line(capsys):
    with pytest.raises(SystemExit, match=r"^error: ftlab: unknown verb 'trian' \(choose from train, runs, "):
        main(["trian"])
    with pytest.raises(SystemExit, match=r"^error: ftlab data: expected `ftlab data check \.\.\.`"):
        main(["data", "--help"])


def test_bash_completes_verbs_then_groups_and_options(tmp_path):
    """The script `ftlab train -sc install=bash` prints, sourced in bash, completes a verb, then group options."""
    install = ftlab("train", "-sc", "install=bash")
    assert install.returncode == 0 and install.stdout.rstrip().endswith("-F hydra_bash_completion ftlab")
    script = (
        'eval "$INSTALL"; for line in "ftlab ch" "ftlab train strategy=lo" "ftlab train quant=" "ftlab chat "; do '
        'COMP_LINE="$line"; COMP_POINT=${#line}; words=($line); COMP_CWORD=$((${#words[@]} - 1)); '
        '[[ "$line" == *" " ]] && COMP_CWORD=${#words[@]}; COMPREPLY=(); hydra_bash_completion; '
        'echo "${COMPREPLY[*]}"; done'
    )
    env = {**os.environ, "INSTALL": install.stdout, "PATH": f"{FTLAB.parent}:{os.environ['PATH']}"}
    (tmp_path / "my_run").mkdir()
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    verbs, strategy, quant, chat = proc.stdout.splitlines()
    assert verbs == "chat"
    assert strategy == "strategy=lora"
    assert {"quant=4bit", "quant=qat_int8_int4", "quant=none"} <= set(quant.split())
    assert chat == "my_run"  # the other verbs take paths: the shell's own completion


def write_run(root: Path, name: str, results: dict, minutes_ago: float, log_age_s: float = 0) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 1\n")
    (run / "results.json").write_text(json.dumps({"run_name": name, **results}))
    (run / "ftlab.log").write_text("log\n")
    started = time.time() - 60 * minutes_ago
    os.utime(run / "config.yaml", (started, started))
    for f in ("results.json", "ftlab.log"):
        os.utime(run / f, (time.time() - log_age_s, time.time() - log_age_s))
    return run


@pytest.fixture
def outputs(tmp_path):
    def choices(strategy):
        return {"model": "tiny", "strategy": strategy, "objective": "sft", "quant": "none"}

    evals = {"base_answer_accuracy": 0.0, "answer_accuracy": 0.85, "base_loss": 7.1, "loss": 0.04}
    write_run(
        tmp_path / "sweep", "0_full", {"status": "ok", "choices": choices("full"), "eval": evals, "wall_s": 61.2}, 50
    )
    write_run(
        tmp_path / "sweep",
        "1_lora",
        {
            "status": "failed",
            "reason": "training diverged at step 3",
            "choices": choices("lora"),
            "overrides": ["optimizer.lr=1e30"],
        },
        40,
    )
    write_run(
        tmp_path / "sweep",
        "2_adapter",
        {"status": "skipped", "reason": "needs a float base", "choices": choices("adapter")},
        30,
    )
    write_run(tmp_path / "runs", "stopped", {"status": "interrupted", "choices": choices("lora")}, 20)
    write_run(tmp_path / "runs", "killed", {"status": "running", "choices": choices("full")}, 10, log_age_s=3600)
    write_run(tmp_path / "runs", "going", {"status": "running", "choices": choices("dora")}, 1)
    return tmp_path


def test_runs_lists_every_run_newest_first_with_why(outputs, capsys):
    main(["runs", str(outputs)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["started", "run", "status", "choices", "accuracy", "loss", "wall"]
    statuses = [line.split()[3] for line in lines[1:] if not line.startswith("    ")]
    assert statuses == ["running", "crashed", "interrupted", "skipped", "failed", "ok"]  # newest first
    assert "    training diverged at step 3" in lines and "    needs a float base" in lines
    ok = next(line for line in lines if "0_full" in line)
    assert "strategy=full" in ok and "0.00 -> 0.85" in ok and "0.040" in ok and "61 s" in ok


def test_runs_filters_and_json(outputs, capsys):
    main(["runs", str(outputs), "--status", "failed", "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["run"] == "1_lora" and row["reason"] == "training diverged at step 3"
    main(["runs", str(outputs), "--where", "strategy=lora", "--json"])
    assert sorted(r["run"] for r in json.loads(capsys.readouterr().out)) == ["1_lora", "stopped"]
    main(["runs", str(outputs), "--where", "optimizer.lr=1e30", "--json"])  # an override the run was given
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["1_lora"]
    with pytest.raises(SystemExit, match="^error: --where lora: expected KEY=VALUE"):
        main(["runs", str(outputs), "--where", "lora"])
    with pytest.raises(SystemExit, match="^error: .*nowhere: no such directory"):
        main(["runs", str(outputs / "nowhere")])


@pytest.mark.slow
def test_a_terminal_gets_one_live_bar_for_training_and_answers(tmp_path):
    """Under a terminal (a pty, 120 columns): training is one redrawn tqdm bar with loss, learning rate and tokens/s,
    the held-out answers another; the plain progress lines of a pipe are not printed."""
    import fcntl
    import pty
    import struct
    import termios

    from helpers import QUICK

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    overrides = [o for o in QUICK if not o.startswith("train.max_steps")] + ["train.max_steps=12"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftlab", *overrides, "train.logging_steps=2", f"hydra.run.dir={tmp_path}"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the run ends
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait() == 0, seen.decode(errors="replace")[-3000:]
    frames = [f for f in re.split(r"[\r\n]", seen.decode(errors="replace")) if f.strip()]
    train = [f for f in frames if f.startswith("train:") and "|" in f]
    assert train and "12/12" in "".join(train) and all(k in train[-1] for k in ("loss=", "lr=", "tokens/s="))
    assert [f for f in frames if f.startswith("answers:") and "|" in f]
    assert not [f for f in frames if f.startswith("train: step ")]  # the pipe's plain lines
    assert any(f.startswith("== ftlab run ") for f in frames)
