"""Distributed runs: 2-process DDP on CPU against one process, the dist presets, start-up without torch."""

import json
import os
import subprocess
import sys

import pytest
from helpers import compose_cfg, read_results, run_cli, shared_run
from safetensors.torch import load_file

from ftlab.config.rules import incompatibility
from ftlab.core.files import PROJECT_ROOT
from ftlab.train.trainer import trainer_args

# Few steps, every loss logged, no eval-loss curve: the loss curves are what is compared.
DDP = [
    "train.max_steps=6",
    "train.logging_steps=1",
    "train.eval_steps=0",
    "eval.max_questions=4",
    "eval.max_new_tokens=12",
    "wandb.mode=offline",
]


def torchrun(args, cwd):
    """`torchrun --standalone --nproc_per_node 2 -m ftlab ARGS`, as a user launches it (a free port each time)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ftlab"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_two_process_ddp_gives_the_losses_and_weights_of_one_process(tmp_path):
    # The global batch is the same: 2 processes x 8 rows against 1 process x 16 rows.
    code, out = torchrun([*DDP, "dist=ddp", "train.batch_size=8"], cwd=tmp_path)
    assert code == 0, out[-3000:]
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs  # every rank found the same run directory (rank 0's start time names it)
    ddp_dir = runs[0]
    single_dir = tmp_path / "single"
    code, out = run_cli([*DDP, "train.batch_size=16", f"hydra.run.dir={single_dir}"])
    assert code == 0, out[-3000:]

    ddp, single = read_results(ddp_dir), read_results(single_dir)
    assert ddp["status"] == "ok" and ddp["distributed"]["processes"] == 2
    assert ddp["distributed"]["backend"] == "gloo" and ddp["distributed"]["engine"] == "multi_cpu"
    assert single["distributed"] == {"dist": "none", "processes": 1, "engine": "no", "sharded_weights": False}
    ddp_losses, single_losses = ddp["history"]["train"], single["history"]["train"]
    assert [s for s, _ in ddp_losses] == [s for s, _ in single_losses] == [1, 2, 3, 4, 5, 6]
    for (_, a), (_, b) in zip(ddp_losses, single_losses):
        assert a == pytest.approx(b, rel=1e-4)
    assert ddp_losses[-1][1] < ddp_losses[0][1] - 1  # it trained
    assert ddp["train"]["tokens"] == single["train"]["tokens"]  # tokens of both processes are counted

    a, b = load_file(ddp_dir / "model" / "model.safetensors"), load_file(single_dir / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    # Only rank 0 wrote: one W&B run, one copy of Hydra's files and log, the evaluation of both models.
    assert len(list((ddp_dir / "wandb").glob("offline-run-*"))) == 1
    assert (ddp_dir / ".hydra" / "config.yaml").exists() and (ddp_dir / "answers.json").exists()
    assert "dist:\n  name: ddp" in (ddp_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_several_processes_need_a_dist_choice(tmp_path):
    code, out = torchrun(["train.max_steps=2"], cwd=tmp_path)
    assert code != 0
    assert "error: launched with 2 processes but dist=none: add dist=ddp" in out


def test_sharded_presets_compose_and_are_refused_on_cpu(tmp_path, monkeypatch):
    for name in ("fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        cfg = compose_cfg([f"dist={name}"])
        assert cfg.dist.name == name
        assert f"dist={name} shards the model across CUDA GPUs" in incompatibility(cfg)
    # What FSDP's settings become: transformers checks them and hands accelerate its FSDP plugin arguments.
    args = trainer_args(compose_cfg(["dist=fsdp"]), tmp_path, "none", has_eval_data=False)
    plugin = args._process_fsdp_args()
    assert plugin["fsdp_version"] == 2 and plugin["state_dict_type"] == "FULL_STATE_DICT"
    assert plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and plugin["cpu_ram_efficient_loading"]
    for name in ("deepspeed_zero2", "deepspeed_zero3"):
        zero = compose_cfg([f"dist={name}"]).dist.args.deepspeed
        assert zero.zero_optimization.stage == int(name[-1])
        # Batch sizes, accumulation and precision come from the run's own settings ("auto"), never two sources.
        assert zero.train_micro_batch_size_per_gpu == "auto" and zero.bf16.enabled == "auto"
    import ftlab.config.rules

    monkeypatch.setattr(ftlab.config.rules, "_cuda", lambda: True)  # as on a GPU machine without DeepSpeed installed
    assert "needs DeepSpeed, which is not installed" in incompatibility(compose_cfg(["dist=deepspeed_zero3"]))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "dist=none" in incompatibility(compose_cfg())
    assert incompatibility(compose_cfg(["dist=ddp"])) is None


@pytest.mark.parametrize("flag", ["--cfg job", "--help"])
def test_cfg_and_help_do_not_import_torch(flag):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ftlab", *flag.split()],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "hydra" in imported and not imported & {"torch", "transformers", "trl", "peft", "datasets"}
    assert ("dist:" in proc.stdout) if flag == "--cfg job" else ("dist: ddp, deepspeed_zero2" in proc.stdout)


def test_results_record_performance_and_launch(tmp_path_factory):
    results = json.loads((shared_run(tmp_path_factory) / "results.json").read_text())
    assert results["performance"]["precision"] == "fp32" and results["performance"]["attention"] == "sdpa"
    assert results["train"]["tokens_per_s"] > 0 and results["train"]["peak_memory_mb"] > 0
    assert results["distributed"]["processes"] == 1
