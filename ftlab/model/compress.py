"""The torchao side of the quant group: quantization-aware training and its conversion, and fixed-mask sparsity."""

import shutil
from pathlib import Path

import torch

# quant.qat.scheme -> the torchao post-training config that QAT trains against and converts to. Both convert on CPU
# (torchao 0.18); Int4WeightOnlyConfig is left out: its conversion needs CUDA kernels (mslk).
SCHEMES = {
    "int8_int4": "int8 dynamic per-token activations, int4 weights in groups (ExecuTorch/XNNPACK's CPU scheme)",
    "int4_weight": "int4 weights in groups, activations stay in the model dtype",
}
# sparsity.pattern -> (block shape, zeros per block) of torch.ao.pruning's magnitude sparsifier.
PATTERNS = {"2of4": ((1, 4), 2), "unstructured": ((1, 1), 1)}


def torchao_config(qat_cfg):
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, PerGroup

    if qat_cfg.scheme not in SCHEMES:
        raise ValueError(f"quant.qat.scheme: expected one of {', '.join(SCHEMES)}, got {qat_cfg.scheme!r}")
    group = PerGroup(qat_cfg.group_size)
    if qat_cfg.scheme == "int8_int4":
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=group)
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=group)


def target_layers(model, target_modules) -> list:
    """Names of the Linear layers inside the transformer blocks (the model's target_modules): embeddings, the
    output head and a reward score head stay as they are."""
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in set(target_modules)]


def prepare(model, quant_cfg, target_modules, tokenizer, calibration_texts: list):
    """Before the strategy wraps the layers. QAT: the target layers become torchao fake-quantized layers (a PEFT
    adapter then wraps those, so LoRA trains against int4 weights). Sparsity: masks are computed once (magnitude, or
    Wanda on training text) and stay fixed: the pruned weights are zero in every forward and get no gradient."""
    layers = target_layers(model, target_modules)
    if not layers:
        raise ValueError(f"model.target_modules: none of {list(target_modules)} is a Linear layer of this model")
    if quant_cfg.get("qat"):
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig

        names = set(layers)
        quantize_(model, QATConfig(torchao_config(quant_cfg.qat), step="prepare"), filter_fn=lambda m, n: n in names)
        return {"kind": "qat", "layers": layers}
    if quant_cfg.get("sparsity"):
        return {"kind": "sparsity", "layers": layers,
                "sparsifier": _sparsify(model, quant_cfg.sparsity, layers, tokenizer, calibration_texts)}
    return None


def _sparsify(model, sparsity_cfg, layers: list, tokenizer, texts: list):
    from torch.ao.quantization.quantize import _remove_qconfig
    from torchao.prototype.sparsity.sparsifier.weight_norm_sparsifier import WeightNormSparsifier
    from torchao.sparsity import WandaSparsifier

    pattern, method = sparsity_cfg.pattern, sparsity_cfg.method
    if pattern not in PATTERNS:
        raise ValueError(f"quant.sparsity.pattern: expected one of {', '.join(PATTERNS)}, got {pattern!r}")
    if not 0 < sparsity_cfg.level < 1:
        raise ValueError(f"quant.sparsity.level: expected a fraction between 0 and 1, got {sparsity_cfg.level}")
    if pattern == "2of4" and sparsity_cfg.level != 0.5:
        raise ValueError(f"quant.sparsity.level: pattern 2of4 is 0.5 by definition, got {sparsity_cfg.level}")
    config = [{"tensor_fqn": f"{name}.weight"} for name in layers]
    if method == "magnitude":
        block, zeros = PATTERNS[pattern]
        level = 1.0 if pattern == "2of4" else sparsity_cfg.level  # 2of4: every block of 4 loses its 2 smallest
        sparsifier = WeightNormSparsifier(sparsity_level=level, sparse_block_shape=block, zeros_per_block=zeros)
        sparsifier.prepare(model, config)
    elif method == "wanda":
        # Wanda (Sun et al. 2023) ranks |weight| x the norm of its input activation, measured on training text.
        sparsifier = WandaSparsifier(sparsity_level=sparsity_cfg.level,
                                     semi_structured_block_size=4 if pattern == "2of4" else None)
        sparsifier.prepare(model, config)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for start in range(0, len(texts), 8):
                batch = tokenizer(texts[start:start + 8], return_tensors="pt", padding=True, truncation=True,
                                  max_length=512).to(model.device)
                model(**batch)
        model.train(was_training)
    else:
        raise ValueError(f"quant.sparsity.method: expected magnitude or wanda, got {method!r}")
    sparsifier.step()  # the masks, once: training never calls step() again, so they stay fixed
    for group in sparsifier.groups:
        _remove_qconfig(group["module"])  # Wanda's activation observers: not needed once the masks exist
    return sparsifier


def calibration_texts(train_data, tokenizer, limit: int) -> list:
    """Training rows as the model reads them (chat template applied), for Wanda's activation statistics."""
    texts = []
    for row in train_data.select(range(min(limit, len(train_data)))):
        if "messages" in row:
            texts.append(tokenizer.apply_chat_template(row["messages"], tokenize=False))
        elif isinstance(row.get("prompt"), list):
            answer = row.get("completion") or row.get("chosen") or []
            texts.append(tokenizer.apply_chat_template(row["prompt"] + answer, tokenize=False))
        else:
            texts.append(row.get("text") or f"{row.get('prompt', '')}{row.get('completion') or row.get('chosen', '')}")
    return texts


def finish(model, quant_cfg, state, tokenizer, work_dir: Path) -> tuple:
    """After training: (the model to evaluate and save, what was done to it). QAT: merge the adapter, remove the
    fake quantizers and quantize with the same torchao config: the int model that ships. Sparsity: fold the masks
    into the weights, check that every pruned weight is still zero, and measure the sparsity reached."""
    if state is None:
        return model, None
    if state["kind"] == "qat":
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig

        model = _merged(model)
        quantize_(model, QATConfig(step="convert"))  # no base config: only swaps fake-quantized layers back
        quantized = quantize_with_transformers(model, tokenizer, quant_cfg.qat, work_dir)
        return quantized, {"method": "qat", "scheme": quant_cfg.qat.scheme, "group_size": quant_cfg.qat.group_size,
                           "description": SCHEMES[quant_cfg.qat.scheme], **quantized_layers(quantized)}
    masks = {g["tensor_fqn"]: g["module"].parametrizations.weight[0].mask.bool().clone()
             for g in state["sparsifier"].groups}
    state["sparsifier"].squash_mask()
    modules = dict(model.named_modules())
    layers, zeros, total = {}, 0, 0
    for fqn, mask in masks.items():
        weight = modules[fqn.removesuffix(".weight")].weight
        if bool((weight.detach()[~mask] != 0).any()):
            raise RuntimeError(f"{fqn}: pruned weights changed during training (the sparsity mask did not hold)")
        layers[fqn] = round(float((weight == 0).float().mean()), 6)
        zeros, total = zeros + int((weight == 0).sum()), total + weight.numel()
    record = {"method": "sparsity", "pattern": quant_cfg.sparsity.pattern, "criterion": quant_cfg.sparsity.method,
              "target": quant_cfg.sparsity.level, "overall": zeros / total, "layers": layers,
              "masked_weights_stayed_zero": True}
    record["kernels"] = semi_structured(model, list(masks)) if quant_cfg.sparsity.pattern == "2of4" else \
        "dense kernels: unstructured zeros save no compute without a sparse kernel"
    return model, record


def _merged(model):
    """A PEFT model with its adapter folded into the (fake-quantized) base layers; other models as they are."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def post_training_quantize(model, quant_cfg, tokenizer, work_dir: Path):
    """The PTQ baseline: the same torchao config applied to a model fine-tuned without fake quantization."""
    return quantize_with_transformers(_merged(model), tokenizer, quant_cfg.qat, work_dir)


def quantize_with_transformers(model, tokenizer, qat_cfg, work_dir: Path):
    """Quantizes through transformers' torchao integration (TorchAoConfig): the same int weights torchao's convert
    gives, in a model that save_pretrained writes as safetensors and from_pretrained loads back quantized."""
    from transformers import AutoModelForCausalLM, TorchAoConfig

    float_dir = Path(work_dir) / "float_weights.tmp"
    model.save_pretrained(float_dir, safe_serialization=True)
    try:
        quantized = AutoModelForCausalLM.from_pretrained(
            float_dir, dtype=model.dtype, quantization_config=TorchAoConfig(quant_type=torchao_config(qat_cfg)),
            use_safetensors=True, device_map="auto" if torch.cuda.is_available() else None)
    finally:
        shutil.rmtree(float_dir, ignore_errors=True)
    quantized.generation_config.pad_token_id = tokenizer.pad_token_id
    return quantized.eval()


def quantized_layers(model) -> dict:
    kinds = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and weight is not None and type(weight) is not torch.nn.Parameter:
            kinds[type(weight).__name__] = kinds.get(type(weight).__name__, 0) + 1
    return {"quantized_layers": sum(kinds.values()), "weight_tensors": kinds}


def semi_structured(model, fqns: list) -> str:
    """CUDA: the 2:4 layers get PyTorch's semi-structured sparse kernels (cuSPARSELt/CUTLASS) for evaluation; layers
    whose shape or dtype the kernels do not take stay dense. CPU: no such kernels, the 2:4 zeros are kept by masks."""
    if not torch.cuda.is_available():
        return "masks only: semi-structured 2:4 kernels exist only on CUDA; the zeros are kept in dense weights"
    from torch.sparse import to_sparse_semi_structured

    modules, converted, refused = dict(model.named_modules()), 0, {}
    for fqn in fqns:
        module = modules[fqn.removesuffix(".weight")]
        try:
            module.weight = torch.nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)
            converted += 1
        except (RuntimeError, ValueError) as err:
            refused[fqn] = str(err).splitlines()[0][:120]
    note = f"semi-structured 2:4 CUDA kernels on {converted} of {len(fqns)} layers"
    return note + (f"; dense for {len(refused)} ({next(iter(refused.values()))})" if refused else "")


def densify(model) -> None:
    """Semi-structured weights back to dense tensors (zeros included), so save_pretrained writes plain safetensors."""
    from torch.sparse import SparseSemiStructuredTensor

    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, SparseSemiStructuredTensor):
            module.weight = torch.nn.Parameter(weight.to_dense(), requires_grad=False)


def ptq_baseline(cfg, path, tokenizer, train_data, eval_data, rows, run_dir: Path, rewards) -> dict:
    """The same fine-tuning as the QAT run (data, seed, steps) without fake quantization, then the same torchao
    config applied after training (post-training quantization): eval.ptq_* (quantized) and eval.ptq_float_*."""
    from transformers import set_seed

    from ftlab.eval.answers import evaluate
    from ftlab.model.load import load_base
    from ftlab.model.strategy import apply_strategy
    from ftlab.train.trainer import build_trainer, trainer_args

    set_seed(cfg.seed)
    work = run_dir / "ptq_baseline"
    model, peft_config = apply_strategy(load_base(cfg.model, cfg.quant, path, dist_name=cfg.dist.name), cfg.strategy)
    args = trainer_args(cfg, work, "none", has_eval_data=eval_data is not None, checkpoints=False, model=model)
    trainer, _ = build_trainer(cfg.objective.trainer, model, tokenizer, args, train_data, eval_data, peft_config,
                               cache=cfg.train.cache_tokenized, rewards=rewards)
    trainer.train()
    measured = {"float": evaluate(trainer.model, tokenizer, rows, cfg.data.system_prompt, cfg.eval)}
    quantized = post_training_quantize(trainer.model, cfg.quant, tokenizer, work)
    measured["quantized"] = evaluate(quantized, tokenizer, rows, cfg.data.system_prompt, cfg.eval)
    shutil.rmtree(work, ignore_errors=True)
    return {f"ptq_{'float_' if kind == 'float' else ''}{k}": numbers[k] for kind, numbers in measured.items()
            for k in ("answer_accuracy", "loss") if k in numbers}
