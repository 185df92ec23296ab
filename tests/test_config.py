"""The schema refuses bad keys and types, impossible combinations are named, and the CLI answers without importing
torch. That every option, experiment and sweep composes: tests/test_conf_files.py."""

import subprocess
import sys

import pytest
from helpers import compose_cfg, read_results, run_cli

from ftlab.config.rules import incompatibility
from ftlab.core.files import PROJECT_ROOT


def test_unknown_key_and_wrong_type_are_refused():
    with pytest.raises(Exception, match="epocs"):
        compose_cfg(["train.epocs=3"])
    with pytest.raises(Exception, match="batch_size"):
        compose_cfg(["train.batch_size=many"])
    with pytest.raises(Exception, match="lorax"):
        compose_cfg(["strategy=lorax"])


def test_lr_follows_strategy_unless_set():
    assert compose_cfg(["strategy=full"]).optimizer.lr == compose_cfg(["strategy=full"]).strategy.lr
    assert compose_cfg(["strategy=lora", "optimizer.lr=1e-5"]).optimizer.lr == 1e-5


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"]])
def test_help_and_cfg_do_not_import_torch(args):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['ftlab'] + {args!r}\n"
        "try:\n    runpy.run_module('ftlab', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('NO_TORCH_OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert "NO_TORCH_OK" in out.stdout, out.stderr


def test_cli_refuses_misspelt_key_and_unknown_option():
    code, out = run_cli(["train.epocs=3"])
    assert code != 0 and "epocs" in out
    code, out = run_cli(["strategy=lorax"])
    assert code != 0 and "lorax" in out


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["strategy=full", "quant=4bit"], "strategy=full"),
        (["strategy=freeze", "quant=8bit"], "strategy=freeze"),
        (["strategy=adapter", "quant=4bit"], "strategy=adapter"),
        (["strategy=prefix", "train.gradient_checkpointing=true"], "gradient_checkpointing"),
        (["strategy=ia3", "quant=4bit", "model.dtype=bfloat16"], "model.dtype=float32"),
        (["strategy=ia3", "quant=4bit"], None),
        (["strategy=lora", "quant=4bit"], None),
        (["strategy=lora", "quant=sparse_2of4"], "a dense lora update would fill the zeros"),
        (["strategy=prefix", "quant=qat_int8_int4"], "cannot be folded into them"),
        (["strategy=adapter", "quant=qat_int4_weight"], "cannot be folded into them"),
        (["objective=reward", "quant=qat_int8_int4"], "train the reward model with quant=none"),
        (["strategy=lora", "quant=qat_int8_int4"], None),
        (["strategy=prompt", "quant=ptq_int8_int4"], "cannot be folded into them"),
        (["strategy=dora", "quant=ptq_int4_weight"], None),
        (["objective=reward", "quant=ptq_int8_int4"], "train the reward model with quant=none"),
        (["objective=reward", "strategy=ia3"], "objective=reward trains a score head"),
        (["objective=reward", "strategy=adapter"], "objective=reward trains a score head"),
        (["objective=reward", "strategy=freeze"], None),
        (["strategy=adapter", "quant=sparse_2of4"], "a dense adapter update would fill the zeros"),
        (["strategy=freeze", "quant=sparse_unstructured"], None),
    ],
)
def test_incompatible_combinations_are_named(overrides, expected):
    reason = incompatibility(compose_cfg(overrides))
    assert (reason is None) if expected is None else (expected in reason)


def test_a_quant_config_with_two_methods_is_refused():
    cfg = compose_cfg(["quant=sparse_2of4"])
    cfg.quant.bnb = {"load_in_4bit": True}  # a hand-written quant file that asks for bitsandbytes and sparsity
    assert "set one of quant.bnb, quant.qat, quant.ptq and quant.sparsity" in incompatibility(cfg)
    assert "quant.method must be one of none, bnb, qat, ptq, sparsity" in incompatibility(
        compose_cfg(["quant=none", "quant.method=gptq"])
    )


def test_incompatible_run_exits_before_loading_and_records_why(tmp_path):
    code, out = run_cli(["strategy=full", "quant=4bit", f"hydra.run.dir={tmp_path}"])
    assert code == 1
    assert "error: strategy=full" in out and "Traceback" not in out
    results = read_results(tmp_path)
    assert results["status"] == "skipped" and "quant=4bit" in results["reason"]
    assert not (tmp_path / "model").exists()
