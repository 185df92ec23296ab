"""python -m ftlab.push: what a finished run sends to the Hub (a dry run: no network here), and the refusals."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import shared_run

from ftlab.core.files import PROJECT_ROOT
from ftlab.push import main

pytestmark = pytest.mark.slow  # the shared run trains once for test_chat, test_demo, test_card and this file


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


def listed(out: str) -> dict:
    """{path in the repository: local file} from the dry run's listing."""
    return dict(line.strip().split(" <- ") for line in out.splitlines() if " <- " in line)


def test_dry_run_lists_the_adapter_card_and_record_at_the_repository_root(run):
    proc = subprocess.run(
        [sys.executable, "-m", "ftlab.push", str(run), "me/hr-bot", "--dry-run"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = {name.strip(): path for name, path in listed(proc.stdout).items()}
    # A LoRA run: the adapter and tokenizer at the root (from_pretrained(REPO) loads it), the card and the record
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(files)
    assert {"README.md", "results.json", "config.yaml"} <= set(files)
    assert files["adapter_model.safetensors"] == str(run / "model" / "adapter_model.safetensors")
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]  # safetensors only
    size = sum(os.path.getsize(p) for p in files.values()) / 2**20
    assert f"would upload {len(files)} files ({size:.1f} MB) to https://huggingface.co/me/hr-bot" in proc.stdout


def test_merged_dry_run_lists_a_standalone_model(run, capsys):
    main([str(run), "me/hr-bot", "--merged", "--dry-run"])
    files = {name.strip() for name in listed(capsys.readouterr().out)}
    assert "model.safetensors" in files and "config.json" in files and "adapter_config.json" not in files


def test_an_unfinished_run_is_refused(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    results = json.loads((copy / "results.json").read_text())
    (copy / "results.json").write_text(json.dumps({**results, "status": "failed", "reason": "diverged at step 3"}))
    with pytest.raises(SystemExit, match=r"status failed: diverged at step 3; only a finished run is pushed"):
        main([str(copy), "me/hr-bot", "--dry-run"])
    with pytest.raises(SystemExit, match=r"not a finished ftlab run directory"):
        main([str(tmp_path), "me/hr-bot", "--dry-run"])
    with pytest.raises(SystemExit, match=r"hr-bot: expected a repository id like user/name"):
        main([str(run), "hr-bot", "--dry-run"])


def test_without_a_token_nothing_is_uploaded(run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no stored login either
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "token"))
    with pytest.raises(SystemExit, match=r"no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        main([str(run), "me/hr-bot"])
