"""QAT (prepare, train, convert, evaluate converted), PTQ (plain training, then the same conversion) and fine-tuning
under fixed sparsity masks."""

import pytest
import torch
from helpers import QUICK, check_sweep_preset, compose_cfg, export_gguf, read_results, run_cli, run_sweep_preset
from omegaconf import OmegaConf

from ftlab.data.load import eval_questions, train_dataset
from ftlab.eval.answers import answer_loss
from ftlab.model import compress
from ftlab.model.load import load_base, load_tokenizer
from ftlab.model.source import load_run
from ftlab.model.strategy import apply_strategy
from ftlab.train.trainer import trainer_args

BLOCK_LINEARS = 4 * 7  # tiny model: 4 blocks x (q, k, v, o, gate, up, down)


def train_steps(cfg, model, tokenizer, peft_config, tmp_path, steps=4):
    from trl import SFTTrainer

    data = train_dataset(cfg.data, cfg.objective.data_format, cfg.data.system_prompt).select(range(16))
    args = trainer_args(compose_cfg([f"train.max_steps={steps}", "train.batch_size=4"]), tmp_path, "none", False)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config
    )
    trainer.train()
    return trainer.model


@pytest.fixture(scope="module")
def compress_sweep(tmp_path_factory):
    """sweep=compress once (full and LoRA x none, 4-bit, QAT, PTQ, 2:4 and unstructured sparsity, with the retention
    set and harness task): its runs are what the tests below read. (sweep dir, points, output)."""
    sweep_dir = tmp_path_factory.mktemp("compress")
    return sweep_dir, *run_sweep_preset("compress", sweep_dir)


def run_of(compress_sweep, strategy: str, quant: str):
    (run_dir,) = compress_sweep[0].glob(f"*_tiny-{strategy}-sft-{quant}-s1")
    return run_dir


@pytest.mark.slow
def test_the_compress_preset_runs_every_point_and_reports(compress_sweep):
    sweep_dir, points, _ = compress_sweep
    check_sweep_preset("compress", sweep_dir, points)


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["qat_int8_int4", "ptq_int8_int4"])
def test_converting_run_evaluates_and_saves_the_int_model(quant, compress_sweep):
    """quant=qat_int8_int4 and its yardstick ptq_int8_int4: the evaluated and saved model has int weights and loads
    with from_pretrained. One training each: PTQ is a run of its own, not a second model inside the QAT run. The
    harness task ran on the int model (eval.harness judges the final model)."""
    from transformers import AutoModelForCausalLM

    tmp_path = run_of(compress_sweep, "full", quant)
    results = read_results(tmp_path)
    assert results["harness"]["tuned"]["hr_general"]["acc"] is not None
    compression, evals = results["compression"], results["eval"]
    assert compression["method"] == quant[:3] and compression["scheme"] == "int8_int4"
    assert compression["quantized_layers"] == BLOCK_LINEARS
    assert compression["weight_tensors"] == {"IntxUnpackedToInt8Tensor": BLOCK_LINEARS}
    assert not [key for key in evals if key.startswith("ptq")]
    # What was evaluated is what was saved: reloaded, it is still int and gives the recorded held-out loss.
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert type(model.model.layers[0].mlp.down_proj.weight).__name__ == "IntxUnpackedToInt8Tensor"
    cfg = OmegaConf.load(tmp_path / ".hydra" / "config.yaml")
    tokenizer = load_tokenizer(cfg.model, str(tmp_path / "model"))
    rows = eval_questions(cfg.data, 6)
    assert answer_loss(model, tokenizer, rows, cfg.data.system_prompt)[0] == pytest.approx(evals["loss"], rel=1e-4)
    reloaded, _, _ = load_run(tmp_path)  # ftlab's own loader (chat, reward scoring, merge) keeps it int too
    assert type(reloaded.model.layers[0].mlp.down_proj.weight).__name__ == "IntxUnpackedToInt8Tensor"
    assert results["saved"]["bytes"] < 0.6 * 4_000_000  # int8-stored int4 weights: about half the float32 model
    assert not list(tmp_path.rglob("float_weights.tmp"))


@pytest.mark.slow
def test_a_qat_run_exports_to_gguf_from_its_int_weights(compress_sweep, tmp_path):
    """The QAT run's saved int model, de-quantized to the values it computes with, converts to GGUF q8_0; llama.cpp
    answers its held-out questions and the agreement with the int model's answers is recorded."""
    record = export_gguf(run_of(compress_sweep, "full", "qat_int8_int4"), tmp_path / "gguf", "--outtype", "q8_0")
    (exported,) = record["files"]
    assert exported["check"]["questions"] == 6 and exported["check"]["identical_prompt_ids"] == 6
    assert 0 <= exported["check"]["agreement"] <= 1
    assert any("de-quantized" in note for note in record["notes"])


def test_qat_with_lora_converts_like_torchao(tiny_path, tmp_path):
    """LoRA trains on fake-quantized base layers; after merging, ftlab's conversion (through transformers'
    TorchAoConfig, so that it can be saved) gives the int weights and outputs of torchao's own quantize_."""
    from torchao.quantization import quantize_

    cfg = compose_cfg(["strategy=lora", "quant=qat_int8_int4"])
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    model = load_base(cfg.model, cfg.quant, tiny_path)
    state = compress.prepare(model, cfg.quant, cfg.model.target_modules, tokenizer, None)  # QAT reads no data
    assert len(state["layers"]) == BLOCK_LINEARS
    model, peft_config = apply_strategy(model, cfg.strategy)
    trained = train_steps(cfg, model, tokenizer, peft_config, tmp_path)
    inner = trained.get_base_model()
    assert type(inner.model.layers[0].self_attn.q_proj.base_layer).__name__ == "FakeQuantizedLinear"
    final, record = compress.finish(trained, cfg.quant, state, tokenizer, tmp_path)
    assert record["quantized_layers"] == BLOCK_LINEARS
    # inner now holds the merged float weights; torchao's convert step quantizes them with this config.
    assert type(inner.model.layers[0].self_attn.q_proj).__name__ == "Linear"
    layers = set(state["layers"])
    quantize_(inner, compress.torchao_config(cfg.quant.qat, "quant.qat"), filter_fn=lambda module, name: name in layers)
    ids = tokenizer(["What is the notice period for a Senior Consultant?"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(final(**ids).logits, inner.eval()(**ids).logits)
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj"):
        ours, theirs = final.get_submodule(name).weight, inner.get_submodule(name).weight
        assert torch.equal(ours.qdata, theirs.qdata) and torch.equal(ours.scale, theirs.scale)


def test_ptq_quantizes_plain_training_like_torchao(tiny_path, tmp_path):
    """quant=ptq_int8_int4: training sees float weights (prepare leaves the model alone); afterwards the LoRA update
    is merged and QAT's torchao config quantizes the result: the int weights of torchao's own quantize_."""
    from torchao.quantization import quantize_

    cfg = compose_cfg(["strategy=lora", "quant=ptq_int8_int4"])
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    model = load_base(cfg.model, cfg.quant, tiny_path)
    assert compress.prepare(model, cfg.quant, cfg.model.target_modules, tokenizer, None) is None
    model, peft_config = apply_strategy(model, cfg.strategy)
    trained = train_steps(cfg, model, tokenizer, peft_config, tmp_path)
    inner = trained.get_base_model()
    assert type(inner.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear"  # no fake quantization
    final, record = compress.finish(trained, cfg.quant, None, tokenizer, tmp_path)
    assert (record["method"], record["scheme"], record["quantized_layers"]) == ("ptq", "int8_int4", BLOCK_LINEARS)
    layers = set(compress.target_layers(inner, cfg.model.target_modules))  # inner: the merged float model now
    quantize_(inner, compress.torchao_config(cfg.quant.ptq, "quant.ptq"), filter_fn=lambda module, name: name in layers)
    ids = tokenizer(["What is the notice period for a Senior Consultant?"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(final(**ids).logits, inner.eval()(**ids).logits)


@pytest.mark.slow
def test_sparse_2of4_run_keeps_the_pattern_through_training(compress_sweep):
    """quant=sparse_2of4 (Wanda): every group of 4 weights in the saved model has at least 2 zeros, exactly half
    of each layer is zero, the kept weights trained, and results.json reports it per layer."""
    from safetensors.torch import load_file

    from ftlab.model.tiny import tiny_model_dir

    tmp_path = run_of(compress_sweep, "full", "sparse_2of4")
    sparsity = read_results(tmp_path)["compression"]
    assert sparsity["pattern"] == "2of4" and sparsity["criterion"] == "wanda" and sparsity["overall"] == 0.5
    assert len(sparsity["layers"]) == BLOCK_LINEARS and set(sparsity["layers"].values()) == {0.5}
    assert sparsity["masked_weights_stayed_zero"] is True
    assert "masks only" in sparsity["kernels"] and "CUDA" in sparsity["kernels"]  # CPU says it has no 2:4 kernels
    saved = load_file(tmp_path / "model" / "model.safetensors")
    base = load_file(f"{tiny_model_dir(compose_cfg().model.tiny)}/model.safetensors")
    for name in sparsity["layers"]:
        weight = saved[name]
        assert ((weight.view(-1, 4) == 0).sum(dim=1) >= 2).all(), name
        kept = weight != 0
        assert not torch.equal(weight[kept], base[name][kept]), f"{name}: the kept weights did not train"
    assert "sparsity         50.0%" in (tmp_path / "ftlab.log").read_text()  # its summary (a sweep's: in the log)


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_unstructured_sparsity_holds_the_target_exactly(method, tiny_path, tmp_path):
    cfg = compose_cfg(
        [
            "strategy=freeze",
            "quant=sparse_unstructured",
            f"quant.sparsity.method={method}",
            "quant.sparsity.level=0.7",
            "quant.sparsity.calibration_examples=16",
        ]
    )
    tokenizer = load_tokenizer(cfg.model, tiny_path)
    model = load_base(cfg.model, cfg.quant, tiny_path)
    data = train_dataset(cfg.data, cfg.objective.data_format, cfg.data.system_prompt)
    state = compress.prepare(model, cfg.quant, cfg.model.target_modules, tokenizer, data)
    model, _ = apply_strategy(model, cfg.strategy)
    final, record = compress.finish(
        train_steps(cfg, model, tokenizer, None, tmp_path), cfg.quant, state, tokenizer, tmp_path
    )
    assert len(record["layers"]) == BLOCK_LINEARS
    assert all(abs(share - 0.7) < 1e-3 for share in record["layers"].values())  # 70% of each layer, to one weight
    assert abs(record["overall"] - 0.7) < 1e-3
    assert not any("parametrizations" in name for name, _ in final.named_parameters())  # masks folded in


def test_bad_compression_settings_are_one_line(tmp_path):
    code, out = run_cli(
        [*QUICK, "strategy=full", "quant=sparse_unstructured", "quant.sparsity.level=1.5", f"hydra.run.dir={tmp_path}"]
    )
    assert code == 1 and "error: quant.sparsity.level: expected a fraction between 0 and 1, got 1.5" in out
    assert "Traceback" not in out and read_results(tmp_path)["status"] == "failed"
    with pytest.raises(ValueError, match=r"^quant.qat.scheme: expected one of int8_int4, int4_weight, got 'int3'"):
        compress.torchao_config(compose_cfg(["quant=qat_int8_int4", "quant.qat.scheme=int3"]).quant.qat, "quant.qat")
    ptq = compose_cfg(["quant=ptq_int8_int4", "quant.ptq.scheme=int3"]).quant
    with pytest.raises(ValueError, match=r"^quant.ptq.scheme: expected one of"):  # before training, not after
        compress.prepare(None, ptq, [], None, None)
