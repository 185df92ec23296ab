"""python -m ftlab.merge exports a run as a standalone model in the base dtype, with the outputs of base + adapter.
DoRA in bfloat16 here; IA3 and bottleneck adapters in float32 on full_vs_peft_vs_quant's runs (test_presets.py)."""

import pytest
from helpers import QUICK, check_export, run_cli


@pytest.mark.slow
def test_a_bfloat16_dora_run_exports_in_bfloat16(tmp_path):
    run = tmp_path / "run"
    code, log = run_cli([*QUICK, "strategy=dora", "model.dtype=bfloat16", f"hydra.run.dir={run}"])
    assert code == 0, log[-3000:]
    check_export(run, tmp_path / "export", "dora", "bfloat16")
