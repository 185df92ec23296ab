"""On CUDA: QLoRA in bf16 trains and evaluates through the same run path (skipped without a GPU)."""

import pytest

from conftest import QUICK, read_results, run_cli

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_qlora_bf16_run_on_cuda(quant, tmp_path):
    code, out = run_cli([*QUICK, "strategy=lora", f"quant={quant}", "model.dtype=bfloat16", f"hydra.run.dir={tmp_path}"])
    assert code == 0, out[-3000:]
    results = read_results(tmp_path)
    assert results["status"] == "ok" and results["environment"]["hardware"]["cuda"]
    assert results["train"]["peak_memory_mb"] > 0
