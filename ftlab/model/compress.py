"""The torchao side of the quant group: quantization-aware training and its conversion, post-training quantization
with the same schemes, and fine-tuning under fixed sparsity masks. A run calls prepare() before the strategy and
finish() after training; quant.method none and bnb pass through both."""

import shutil
from pathlib import Path

import torch

from ftlab.model.strategy import merged

# quant.qat.scheme / quant.ptq.scheme -> the torchao post-training config that QAT trains against and converts to, and
# that PTQ applies. Both convert on CPU (torchao 0.18); Int4WeightOnlyConfig is left out: it needs CUDA kernels (mslk).
SCHEMES = {
    "int8_int4": "int8 dynamic per-token activations, int4 weights in groups (ExecuTorch/XNNPACK's CPU scheme)",
    "int4_weight": "int4 weights in groups, activations stay in the model dtype",
}
# sparsity.pattern -> (block shape, zeros per block) of torch.ao.pruning's magnitude sparsifier.
PATTERNS = {"2of4": ((1, 4), 2), "unstructured": ((1, 1), 1)}


def torchao_config(scheme_cfg, key: str):
    """The torchao config of quant.qat or quant.ptq (key names it in errors)."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, PerGroup

    if scheme_cfg.scheme not in SCHEMES:
        raise ValueError(f"{key}.scheme: expected one of {', '.join(SCHEMES)}, got {scheme_cfg.scheme!r}")
    group = PerGroup(scheme_cfg.group_size)
    if scheme_cfg.scheme == "int8_int4":
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=group)
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=group)


def target_layers(model, target_modules) -> list:
    """Names of the Linear layers inside the transformer blocks (the model's target_modules): embeddings, the
    output head and a reward score head stay as they are."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in set(target_modules)
    ]


def prepare(model, quant_cfg, target_modules, tokenizer, train_data):
    """Before the strategy wraps the layers; None unless quant.method is qat or sparsity. QAT: the target layers
    become torchao fake-quantized layers (a PEFT adapter then wraps those, so LoRA trains against int4 weights).
    Sparsity: masks are computed once (magnitude, or Wanda on training rows) and stay fixed: the pruned weights are
    zero in every forward and get no gradient."""
    if quant_cfg.method == "ptq":
        torchao_config(quant_cfg.ptq, "quant.ptq")  # a scheme it does not know fails now, not after training
    if quant_cfg.method not in ("qat", "sparsity"):
        return None
    layers = target_layers(model, target_modules)
    if not layers:
        raise ValueError(f"model.target_modules: none of {list(target_modules)} is a Linear layer of this model")
    if quant_cfg.method == "qat":
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig

        names, scheme = set(layers), torchao_config(quant_cfg.qat, "quant.qat")
        quantize_(model, QATConfig(scheme, step="prepare"), filter_fn=lambda module, name: name in names)
        return {"layers": layers}
    texts = (
        calibration_texts(train_data, tokenizer, quant_cfg.sparsity.calibration_examples)
        if quant_cfg.sparsity.method == "wanda"
        else []
    )
    return {"layers": layers, "sparsifier": _sparsify(model, quant_cfg.sparsity, layers, tokenizer, texts)}


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
        sparsifier = WandaSparsifier(
            sparsity_level=sparsity_cfg.level, semi_structured_block_size=4 if pattern == "2of4" else None
        )
        sparsifier.prepare(model, config)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for start in range(0, len(texts), 8):
                batch = tokenizer(
                    texts[start : start + 8], return_tensors="pt", padding=True, truncation=True, max_length=512
                ).to(model.device)
                model(**batch)
        model.train(was_training)
    else:
        raise ValueError(f"quant.sparsity.method: expected magnitude or wanda, got {method!r}")
    sparsifier.step()  # the masks, once: training never calls step() again, so they stay fixed
    for group in sparsifier.groups:
        _remove_qconfig(group["module"])  # Wanda's activation observers: not needed once the masks exist
    return sparsifier


def calibration_texts(train_data, tokenizer, limit: int) -> list:
    """Training rows as the model reads them (chat template applied), for Wanda's activation statistics: the
    conversation, or the prompt with the answer the objective trains towards (the chosen one of a pair)."""
    rows = train_data.select(range(min(limit, len(train_data))))
    if "text" in rows.column_names:
        return list(rows["text"])
    if "messages" in rows.column_names:
        conversations = list(rows["messages"])
    else:
        answer = next((c for c in ("completion", "chosen") if c in rows.column_names), None)
        conversations = [row["prompt"] + (row[answer] if answer else []) for row in rows]
    return [tokenizer.apply_chat_template(conversation, tokenize=False) for conversation in conversations]


def finish(model, quant_cfg, state, tokenizer, work_dir: Path) -> tuple:
    """After training: (the model to evaluate and save, the `compression` record for results.json, None for
    quant.method none and bnb). QAT: merge the adapter, remove the fake quantizers and quantize with the same torchao
    config: the int model that ships. PTQ: the same, on weights trained without fake quantization. Sparsity: fold the
    masks into the weights, check that every pruned weight is still zero, measure the sparsity reached."""
    if quant_cfg.method == "qat":
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig

        model = merged(model)
        quantize_(model, QATConfig(step="convert"))  # no base config: only swaps fake-quantized layers back
        return _int_model(model, quant_cfg.qat, "qat", tokenizer, work_dir)
    if quant_cfg.method == "ptq":
        return _int_model(merged(model), quant_cfg.ptq, "ptq", tokenizer, work_dir)
    if quant_cfg.method == "sparsity":
        return model, _fold_masks(model, quant_cfg.sparsity, state["sparsifier"])
    return model, None


def _int_model(model, scheme_cfg, method: str, tokenizer, work_dir: Path) -> tuple:
    """The float model quantized with the scheme, and its record (method qat or ptq, so the report pairs them)."""
    quantized = quantize_with_transformers(model, tokenizer, scheme_cfg, f"quant.{method}", work_dir)
    return quantized, {
        "method": method,
        "scheme": scheme_cfg.scheme,
        "group_size": scheme_cfg.group_size,
        "description": SCHEMES[scheme_cfg.scheme],
        **quantized_layers(quantized),
    }


def _fold_masks(model, sparsity_cfg, sparsifier) -> dict:
    """The masks folded into the weights, checked (every pruned weight still zero) and measured."""
    masks = {g["tensor_fqn"]: g["module"].parametrizations.weight[0].mask.bool().clone() for g in sparsifier.groups}
    sparsifier.squash_mask()
    modules = dict(model.named_modules())
    layers, zeros, total = {}, 0, 0
    for fqn, mask in masks.items():
        weight = modules[fqn.removesuffix(".weight")].weight
        if bool((weight.detach()[~mask] != 0).any()):
            raise RuntimeError(f"{fqn}: pruned weights changed during training (the sparsity mask did not hold)")
        layers[fqn] = round(float((weight == 0).float().mean()), 6)
        zeros, total = zeros + int((weight == 0).sum()), total + weight.numel()
    record = {
        "method": "sparsity",
        "pattern": sparsity_cfg.pattern,
        "criterion": sparsity_cfg.method,
        "target": sparsity_cfg.level,
        "overall": zeros / total,
        "layers": layers,
        "masked_weights_stayed_zero": True,
    }
    record["kernels"] = (
        semi_structured(model, list(masks))
        if sparsity_cfg.pattern == "2of4"
        else "dense kernels: unstructured zeros save no compute without a sparse kernel"
    )
    return record


def quantize_with_transformers(model, tokenizer, scheme_cfg, key: str, work_dir: Path):
    """Quantizes through transformers' torchao integration (TorchAoConfig): the same int weights torchao's convert
    gives, in a model that save_pretrained writes as safetensors and from_pretrained loads back quantized."""
    from transformers import AutoModelForCausalLM, TorchAoConfig

    float_dir = Path(work_dir) / "float_weights.tmp"
    model.save_pretrained(float_dir, safe_serialization=True)
    try:
        quantized = AutoModelForCausalLM.from_pretrained(
            float_dir,
            dtype=model.dtype,
            quantization_config=TorchAoConfig(quant_type=torchao_config(scheme_cfg, key)),
            use_safetensors=True,
            device_map="auto" if torch.cuda.is_available() else None,
        )
    finally:
        shutil.rmtree(float_dir, ignore_errors=True)
    quantized.generation_config.pad_token_id = tokenizer.pad_token_id
    return quantized.eval()


def quantized_layers(model) -> dict:
    kinds = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and type(module.weight) is not torch.nn.Parameter:
            kinds[type(module.weight).__name__] = kinds.get(type(module.weight).__name__, 0) + 1
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
