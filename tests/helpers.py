"""What the tests share: composing the real configs, running the CLI as a user does, reading what a run wrote, and
one trained run that the chat, demo and card tests reuse."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from hydra import compose, initialize_config_dir

from ftlab.core.files import PROJECT_ROOT

# The web pages' browser tests (demo, lab): Debian's chromium and chromedriver (.ci/install-browser), screenshots kept.
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = PROJECT_ROOT / "outputs" / "test-artifacts"  # outputs/ is git-ignored


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


# Sweep presets on quick settings; the ablation presets' harness task on 8 of its questions (half a second a model).
SWEEP_QUICK = [*QUICK, "eval.harness.limit=8"]


def run_sweep_preset(name: str, sweep_dir: Path) -> tuple[int, str]:
    """`python -m ftlab sweep=NAME` on quick settings, every point of its grid for one seed (seeds differ only in
    seed): (the number of points, the command's output)."""
    from omegaconf import OmegaConf

    params = dict(OmegaConf.load(PROJECT_ROOT / "sweeps" / f"{name}.yaml").hydra.sweeper.params)
    overrides = [f"sweep={name}", *SWEEP_QUICK, f"hydra.sweep.dir={sweep_dir}"]  # multirun without -m
    if "seed" in params and len(params) > 1:
        overrides.append("seed=1")
        del params["seed"]
    code, out = run_cli(overrides)
    assert code == 0, out[-3000:]
    return math.prod(len(str(values).split(",")) for values in params.values()), out


def check_sweep_preset(name: str, sweep_dir: Path, points: int) -> None:
    """Every point has a run, each ok or skipped (at least one ok), the report is written, and the ablation presets
    measured forgetting in every run that finished."""
    from omegaconf import OmegaConf

    runs = [read_results(p) for p in sweep_dir.iterdir() if (p / "results.json").exists()]
    statuses = [r["status"] for r in runs]
    assert len(statuses) == points
    assert set(statuses) <= {"ok", "skipped"} and "ok" in statuses
    if OmegaConf.select(OmegaConf.load(PROJECT_ROOT / "sweeps" / f"{name}.yaml"), "data.retention"):
        assert all("retention" in r and "harness" in r for r in runs if r["status"] == "ok")
    for report in ("report.md", "report.csv", "runs.csv"):
        assert (sweep_dir / "report" / report).stat().st_size > 0, report


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


EXPORT_PROMPT = [{"role": "user", "content": "What is the notice period for a Senior Consultant?"}]


def check_export(run, out, strategy: str, dtype: str) -> None:
    """The exported model loads alone (with its code for bottleneck adapters), keeps the dtype and gives the run's
    outputs."""
    import pytest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftlab.model.source import load_run

    proc = subprocess.run([sys.executable, "-m", "ftlab.merge", str(run), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    custom_code = strategy == "adapter"  # bottleneck adapters are non-linear: exported as modules with their code
    assert ("trust_remote_code=True" in proc.stdout) == custom_code
    merged = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=custom_code)
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=custom_code)
    assert merged.dtype == getattr(torch, dtype)  # the base dtype, not silently float32
    assert tokenizer.chat_template and list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    model, run_tokenizer, _ = load_run(run)
    ids = run_tokenizer.apply_chat_template(
        EXPORT_PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        ours, theirs = merged(**ids).logits.float(), model(**ids).logits.float()
    # float32: identical; bfloat16: merging rounds W + update once more (8-bit mantissa)
    assert torch.allclose(ours, theirs, atol=1e-4 if dtype == "float32" else 0.15), (ours - theirs).abs().max()
    assert torch.equal(ours[0, -1].argmax(), theirs[0, -1].argmax())
    assert json.loads((out / "ftlab_merge.json").read_text())["strategy"] == strategy
    if custom_code:
        with pytest.raises(ValueError, match="trust_remote_code"):  # never a Llama silently missing its adapters
            AutoModelForCausalLM.from_pretrained(out)


def export_gguf(run, out, *args) -> dict:
    """python -m ftlab.export RUN OUT --to gguf ARGS as a user runs it: export.json, every file in it present."""
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab.export", str(run), str(out), "--to", "gguf", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "export.json").read_text())
    for f in record["files"]:
        assert (out / f["file"]).stat().st_size == f["bytes"] and (out / f["file"]).read_bytes()[:4] == b"GGUF"
        assert "base" not in f or (out / f["base"]).stat().st_size == f["base_bytes"]
    return record


def modelfile(path) -> dict:
    """An Ollama Modelfile's directives: {FROM, ADAPTER, TEMPLATE, SYSTEM: text, PARAMETER: [(name, value)]};
    fails on a line that is not one (Ollama's parser takes triple-quoted values over several lines)."""
    import re

    found = {"PARAMETER": []}
    for m in re.finditer(r'^(\w+) (?:"""(.*?)"""|([^\n]*))$|^#[^\n]*$|^$', path.read_text(), re.M | re.S):
        if m[1] == "PARAMETER":
            name, value = m[3].split(" ", 1)
            found["PARAMETER"].append((name, value.strip('"')))
        elif m[1]:
            assert m[1] in ("FROM", "ADAPTER", "TEMPLATE", "SYSTEM"), m[0]
            found[m[1]] = m[2] if m[2] is not None else m[3]
    unparsed = re.sub(r'^(\w+) (?:""".*?"""|[^\n]*)$|^#[^\n]*$', "", path.read_text(), flags=re.M | re.S).strip()
    assert not unparsed, unparsed
    return found


def render_go_template(template: str, messages: list) -> str:
    """Ollama's TEMPLATE executed as Go's text/template would for the forms ftlab writes ({{ range .Messages }},
    {{ if eq .Role "x" }} ... {{ else if ... }} ... {{ end }}, {{ .Content }}): an independent reading of the text,
    so a test compares it with the Jinja chat template. An unknown action fails."""
    import re

    parts = re.split(r"({{.*?}})", template)

    def block(i, message):  # renders parts[i:] up to its {{ end }} / {{ else ... }}; returns (text, index there)
        out = ""
        while i < len(parts):
            part = parts[i]
            action = part[2:-2].strip() if part.startswith("{{") else None
            if action is None:
                out += part
            elif action == ".Content":
                out += message["content"]
            elif action == "range .Messages":
                i, start = i + 1, i + 1
                for m in messages:
                    text, i = block(start, m)
                    out += text
                if not messages:
                    i = skip(start)
            elif action.startswith("if "):
                i, text = branch(i, action[3:], message)
                out += text
            elif action == "end" or action.startswith("else"):
                return out, i
            else:
                raise AssertionError(f"unknown template action: {part}")
            i += 1
        return out, i

    def holds(condition, message):
        m = re.fullmatch(r'eq \.Role "(\w+)"', condition)
        assert m, condition
        return message["role"] == m[1]

    def branch(i, condition, message):  # from an {{ if }}: the first true branch, then past its {{ end }}
        taken = None
        while True:
            text, i = block(i + 1, message)
            if taken is None and (condition is None or holds(condition, message)):
                taken = text
            action = parts[i][2:-2].strip()
            if action == "end":
                return i, taken or ""
            condition = action[len("else if ") :] if action.startswith("else if ") else None

    def skip(i):
        depth = 0
        while True:
            action = parts[i][2:-2].strip() if parts[i].startswith("{{") else ""
            depth += action.startswith(("if ", "range ")) - (action == "end")
            if depth < 0:
                return i
            i += 1

    return block(0, None)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def web_page(module: str, args: list, log: Path):
    """A web page's command (the demo, the lab) started as a person starts it, on a free localhost port: its URL once
    it answers (with its log); stopped after."""
    import time
    import urllib.request

    import pytest

    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 240
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{module} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{module} did not answer on {url}:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
