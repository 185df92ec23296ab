"""The ftlab-vs-TRL benchmark runs end to end (a few steps) and writes every case's figures; no speed thresholds."""

import json
import subprocess
import sys

import pytest

from ftlab.core.files import PROJECT_ROOT


@pytest.mark.slow
def test_benchmark_writes_cases_and_ratios(tiny_path, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/trl_vs_ftlab.py",
            "--case",
            "all",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--repeats",
            "1",
            "--warmup-steps",
            "0",
            "--out",
            str(out),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads(out.read_text())
    cases = result["cases"]
    assert {"cpu", "cpu_variable_length"} <= set(cases)
    for name in ("cpu", "cpu_variable_length"):
        variants = cases[name]["variants"]
        assert {"ftlab", "trl"} <= set(variants)
        for label, figures in variants.items():
            assert "error" not in figures, f"{name}/{label}: {figures.get('error')}"
            assert figures["steps"] == 2 and figures["tokens"] > 0 and figures["tokens_per_s"] > 0
            assert figures["peak_memory_mb"] > 0
        assert cases[name]["ratio"]["tokens_per_s"] > 0 and cases[name]["ratio"]["peak_memory"] > 0
        # Same rows, steps, batch and seed: both sides see the same tokens.
        assert variants["ftlab"]["tokens"] == variants["trl"]["tokens"]
        # each side trained on its own LM-head path, though ftlab's switch is process-wide
        assert variants["ftlab"]["settings"]["lm_head_positions"] == "labelled"
        assert variants["trl"]["settings"]["lm_head_positions"] == "all"
    assert cases["cpu_variable_length"]["packing_speedup"]["tokens_per_s"] > 0
    assert "gpu" in cases or "gpu_lora" in cases  # skipped without CUDA, measured with it
    assert result["versions"]["trl"] and result["machine"]["cores"]
    assert "| ftlab |" in proc.stdout  # the markdown table


@pytest.mark.slow
def test_gpu_case_code_runs_on_a_small_llama_here(tmp_path):
    """The GPU case's path (a random-initialised Llama, LoRA and full, both sides, MFU), on a small shape on CPU:
    it cannot be timed here, but it must not first fail on the day a GPU is lent."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from benchmarks.trl_vs_ftlab import llama_cases

    small = dict(
        vocab_size=2048,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    cases = llama_cases(
        steps=2, batch=2, repeats=1, warmup=0, folder=tmp_path, peak_tflops=1.0, dims=small, max_length=128
    )
    assert set(cases) == {"gpu_lora", "gpu_full"}
    for case in cases.values():
        for label, figures in case["variants"].items():
            assert "error" not in figures, f"{label}: {figures.get('error')}"
            assert figures["steps"] == 2 and figures["mfu"] > 0
        assert case["ratio"]["tokens_per_s"] > 0 and case["matmul_params"] > 0


def test_every_peer_recipe_gets_the_whole_shared_job(tiny_path, tmp_path):
    """benchmarks/peers.py: the token count every tool is credited with is the one ftlab's trainer sees, and each
    peer's recipe writes every training row and the job's model and hyperparameters into its dataset and config
    (the peers themselves are not installed here: the benchmark is not part of CI)."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from benchmarks.peers import PEERS, recipe, shared_job
    from benchmarks.trl_vs_ftlab import ftlab_trainer

    job = shared_job(tmp_path, -1)
    trainer, _ = ftlab_trainer(["experiment=hr_bot", "wandb.mode=disabled"], tmp_path / "ftlab")
    epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    assert job["tokens"] == epoch * job["epochs"] and job["rows"] == len(trainer.train_dataset)
    assert job["steps"] == -(-job["rows"] // job["batch_size"]) * job["epochs"]
    rows = [json.loads(line) for line in open(job["train_file"], encoding="utf-8")]
    for name in PEERS:
        peer, work = recipe(name), tmp_path / name
        work.mkdir()
        argv = peer.prepare(work, job)
        assert "/" not in argv[0], f"{name}: the command is a console script of the peer's venv, not {argv[0]}"
        written = " ".join(argv) + "".join(p.read_text(encoding="utf-8") for p in work.rglob("*") if p.is_file())
        missing = [r["completion"] for r in rows if r["completion"] not in written]
        missing = [c for c in missing if json.dumps(c)[1:-1] not in written]  # or as JSON escapes it
        assert not missing, f"{name}: {len(missing)} training answers not written, e.g. {missing[0]!r}"
        for value in (job["model"], str(job["lr"]), str(job["max_length"]), str(job["seed"])):
            assert value in written, f"{name}: {value} not in its config"
        assert any(pin.endswith(f"=={peer.VERSION}") for pin in peer.INSTALL), f"{name}: {peer.VERSION} not pinned"
