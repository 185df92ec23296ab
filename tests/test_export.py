"""python -m ftlab.merge exports a run as a standalone model in the base dtype, with the outputs of base + adapter."""

import json
import subprocess
import sys

import pytest
import torch
from helpers import QUICK, run_cli

from ftlab.model.source import load_run

PROMPT = [{"role": "user", "content": "What is the notice period for a Senior Consultant?"}]


@pytest.mark.slow
@pytest.mark.parametrize("strategy,dtype", [("dora", "bfloat16"), ("ia3", "float32"), ("adapter", "float32")])
def test_exported_model_loads_alone_and_matches_the_run(strategy, dtype, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, out = tmp_path / "run", tmp_path / "export"
    code, log = run_cli([*QUICK, f"strategy={strategy}", f"model.dtype={dtype}", f"hydra.run.dir={run}"])
    assert code == 0, log[-3000:]
    proc = subprocess.run([sys.executable, "-m", "ftlab.merge", str(run), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    custom_code = strategy == "adapter"  # bottleneck adapters are non-linear: exported as modules with their code
    assert ("trust_remote_code=True" in proc.stdout) == custom_code
    merged = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=custom_code)
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=custom_code)
    assert merged.dtype == getattr(torch, dtype)  # the base dtype, not silently float32
    assert tokenizer.chat_template and list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    model, run_tokenizer, _ = load_run(run)
    ids = run_tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ours, theirs = merged(**ids).logits.float(), model(**ids).logits.float()
    # float32: identical; bfloat16: merging rounds W + update once more (8-bit mantissa)
    assert torch.allclose(ours, theirs, atol=1e-4 if dtype == "float32" else 0.15), (ours - theirs).abs().max()
    assert torch.equal(ours[0, -1].argmax(), theirs[0, -1].argmax())
    assert json.loads((out / "ftlab_merge.json").read_text())["strategy"] == strategy
    if custom_code:
        with pytest.raises(ValueError, match="trust_remote_code"):  # never a Llama silently missing its adapters
            AutoModelForCausalLM.from_pretrained(out)
