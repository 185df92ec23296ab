"""On CUDA: QLoRA in bf16 trains and evaluates through the same run path (skipped without a GPU)."""

import pytest
from helpers import QUICK, read_results, run_cli

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_qlora_bf16_run_on_cuda(quant, tmp_path):
    code, out = run_cli(
        [*QUICK, "strategy=lora", f"quant={quant}", "model.dtype=bfloat16", f"hydra.run.dir={tmp_path}"]
    )
    assert code == 0, out[-3000:]
    results = read_results(tmp_path)
    assert results["status"] == "ok" and results["environment"]["hardware"]["cuda"]
    assert results["train"]["peak_memory_mb"] > 0


def test_sparse_2of4_final_model_runs_on_semi_structured_kernels(tmp_path):
    code, out = run_cli(
        [*QUICK, "strategy=full", "quant=sparse_2of4", "model.dtype=bfloat16", f"hydra.run.dir={tmp_path}"]
    )
    assert code == 0, out[-3000:]
    sparsity = read_results(tmp_path)["compression"]
    assert sparsity["kernels"].startswith("semi-structured 2:4 CUDA kernels on") and sparsity["overall"] == 0.5
    assert (tmp_path / "model" / "model.safetensors").is_file()  # saved dense, zeros included


def test_qat_converts_and_saves_on_cuda(tmp_path):
    code, out = run_cli(
        [*QUICK, "strategy=lora", "quant=qat_int8_int4", "model.dtype=bfloat16", f"hydra.run.dir={tmp_path}"]
    )
    assert code == 0, out[-3000:]
    results = read_results(tmp_path)
    assert results["compression"]["quantized_layers"] > 0 and results["compression"]["method"] == "qat"
