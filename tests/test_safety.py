"""Safe defaults: secrets never land in a run's files or output, a model's own code and pickle weights are refused
unless asked for, and what the run allowed is recorded."""

import json
import shutil

import pytest
import torch
from helpers import QUICK, read_results, run_cli
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
SECRETS = {
    "HF_TOKEN": "hf_envSECRETvalue0123456789",
    "WANDB_API_KEY": "wandbSECRETvalue0123456789abcdefabcdef",
    "MY_SERVICE_PASSWORD": "pwSECRETvalue98765",
}
CONFIG_SECRET = "hf_cfgSECRETvalue0123456789"


def test_secrets_appear_in_no_file_of_a_run(tmp_path, monkeypatch):
    """Secrets in the environment and one in the config (a trainer hub_token), in a sweep with W&B offline and
    checkpoints kept: every file under the sweep (configs, Hydra's records, results, logs, W&B's files, pickled
    trainer arguments, model card) and the console are scanned for them."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    quick = [o for o in QUICK if not o.startswith("wandb.")]
    code, out = run_cli(
        [
            "-m",
            *quick,
            "seed=1",
            "wandb.mode=offline",
            "train.save_steps=2",
            "train.keep_checkpoints=true",
            f"+objective.args.hub_token={CONFIG_SECRET}",
            f"hydra.sweep.dir={tmp_path}",
        ]
    )
    assert code == 0, out[-3000:]
    run_dir = next(tmp_path.glob("0_*"))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"multirun.yaml", "overrides.yaml", "config.yaml", "results.json", "training_args.bin"} <= names
    assert any(p.suffix == ".wandb" for p in files) and (run_dir / "checkpoints").is_dir()
    for secret in [*SECRETS.values(), CONFIG_SECRET]:
        assert secret not in out
        leaks = [str(p.relative_to(tmp_path)) for p in files if secret.encode() in p.read_bytes()]
        assert not leaks, f"{secret} written into {leaks}"
    # Hidden, not dropped: the key is still there, so a reader sees that one was set.
    assert "hub_token: '***'" in (run_dir / "config.yaml").read_text()
    assert "+objective.args.hub_token=***" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    safety = read_results(run_dir)["safety"]
    assert safety == {"trust_remote_code": False, "allow_pickle": False}


@pytest.fixture
def model_copy(tiny_path, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_path, folder)
    return folder


def test_a_model_that_ships_code_is_refused_and_its_code_never_runs(model_copy, tmp_path):
    config = json.loads((model_copy / "config.json").read_text())
    config |= {
        "model_type": "acme_llm",
        "auto_map": {"AutoConfig": "modeling_acme.AcmeConfig", "AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM"},
    }
    (model_copy / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "code_ran"
    (model_copy / "modeling_acme.py").write_text(f"open({str(marker)!r}, 'w')\n")
    code, out = run_cli([*QUICK, "model=local", f"model.path={model_copy}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 1 and "Traceback" not in out
    assert (
        f"error: model.path: {model_copy} ships its own Python code (auto_map); ftlab runs it only with "
        "model.trust_remote_code=true" in out
    )
    assert not marker.exists()


def test_pickle_weights_are_refused_unless_allowed(model_copy, tmp_path):
    torch.save(load_file(model_copy / "model.safetensors"), model_copy / "pytorch_model.bin")
    (model_copy / "model.safetensors").unlink()
    args = [*QUICK, "model=local", f"model.path={model_copy}", "strategy=lora"]
    code, out = run_cli([*args, f"hydra.run.dir={tmp_path / 'refused'}"])
    assert code == 1 and "Traceback" not in out
    assert "holds pickle weights (.bin) only, which can run code when loaded" in out
    code, out = run_cli([*args, "model.allow_pickle=true", f"hydra.run.dir={tmp_path / 'allowed'}"])
    assert code == 0, out[-2000:]
    assert read_results(tmp_path / "allowed")["safety"]["allow_pickle"] is True
