"""Run records: W&B mode never prompts or hangs, secrets stay out of logged configs, results are written atomically."""

import json

from ftlab.core.files import write_json
from ftlab.core.secrets import redact
from ftlab.runs.tracking import wandb_mode


def test_secrets_are_hidden_from_logged_configs():
    cfg = {
        "eval": {"max_new_tokens": 48},
        "hub": {"hf_token": "hf_abc", "api_key": "k"},
        "wandb": {"password": "p"},
        "model": {"target_modules": ["q_proj"]},
    }
    assert redact(cfg) == {
        "eval": {"max_new_tokens": 48},
        "hub": {"hf_token": "***", "api_key": "***"},
        "wandb": {"password": "***"},
        "model": {"target_modules": ["q_proj"]},
    }


def test_wandb_goes_online_only_with_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    assert wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto") == "offline"


def test_write_json_leaves_no_partial_file(tmp_path):
    write_json(tmp_path / "results.json", {"status": "ok"})
    assert json.loads((tmp_path / "results.json").read_text()) == {"status": "ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_cpu_peak_memory_is_measured_per_phase():
    """A multirun shares one process: each run's peak must not inherit the previous run's."""
    import torch

    from ftlab.train.trainer import peak_memory_mb, reset_peak_memory

    if torch.cuda.is_available():
        return  # on CUDA the peak is torch's allocator statistic
    reset_peak_memory()
    block = bytearray(300 * 2**20)
    high = peak_memory_mb()
    del block
    reset_peak_memory()
    assert high - peak_memory_mb() > 200
