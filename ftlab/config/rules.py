"""The combinations that cannot train, found before anything loads."""

from importlib.util import find_spec

from ftlab.config.hardware import _cuda, dtype_name
from ftlab.core.distributed import SHARDED, world_size

PROMPT_METHODS = ("prefix", "prompt", "ia3")


def incompatibility(cfg) -> str | None:
    """Why this combination cannot train, found before anything loads (None when it can)."""
    if sum(cfg.quant.get(k) is not None for k in ("bnb", "qat", "sparsity")) > 1:
        return f"quant={cfg.quant.name}: set one of quant.bnb, quant.qat and quant.sparsity, not several"
    quantized = cfg.quant.bnb is not None
    if quantized and cfg.strategy.kind in ("full", "freeze"):
        return (
            f"strategy={cfg.strategy.name} trains base weights, which a {cfg.quant.name} bitsandbytes base cannot "
            f"do (transformers refuses it): use a PEFT strategy such as strategy=lora with quant={cfg.quant.name}"
        )
    if quantized and cfg.strategy.kind == "adapter":
        return f"strategy=adapter trains on a float base; with quant={cfg.quant.name} use strategy=lora (QLoRA)"
    if cfg.strategy.name == "dora" and cfg.quant.name == "8bit" and not _cuda():
        return "strategy=dora with quant=8bit fails on CPU (bitsandbytes 0.50 loses the int8 scales): use quant=4bit"
    if cfg.strategy.name == "ia3" and quantized and dtype_name(cfg.model) != "float32":
        return (
            f"strategy=ia3 on a {cfg.quant.name} base needs model.dtype=float32 (PEFT's IA3 then gives float32 "
            f"keys and values beside {dtype_name(cfg.model)} queries, which attention refuses)"
        )
    if cfg.objective.trainer == "reward" and (cfg.strategy.kind == "adapter" or cfg.strategy.name in PROMPT_METHODS):
        return f"objective=reward trains a score head with strategy=full, freeze, lora or dora, not {cfg.strategy.name}"
    target = (cfg.strategy.peft or {}).get("_target_", "")
    if cfg.dist.name == "none" and world_size() > 1:
        return (f"launched with {world_size()} processes but dist=none: add dist=ddp (or fsdp, deepspeed_zero2, "
                "deepspeed_zero3)")
    if cfg.dist.name in SHARDED and not _cuda():
        return (f"dist={cfg.dist.name} shards the model across CUDA GPUs, and accelerate runs it on GPUs only (on CPUs "
                "it would silently be plain data parallel): use dist=ddp here")
    if cfg.dist.name.startswith("deepspeed") and find_spec("deepspeed") is None:
        return f"dist={cfg.dist.name} needs DeepSpeed, which is not installed: pip install deepspeed (or use dist=fsdp)"
    if target.endswith("PrefixTuningConfig") and cfg.train.gradient_checkpointing:
        return "strategy=prefix cannot run with train.gradient_checkpointing=true (PEFT's prefix cache breaks it)"
    compressing = cfg.quant.get("qat") is not None or cfg.quant.get("sparsity") is not None
    if compressing and cfg.objective.trainer == "reward":
        return f"quant={cfg.quant.name} compresses the causal LM that answers; train the reward model with quant=none"
    folds_in = cfg.strategy.kind != "adapter" and cfg.strategy.name not in ("prefix", "prompt")
    if cfg.quant.get("qat") is not None and not folds_in:
        return (f"quant={cfg.quant.name} converts the trained weights to int; strategy={cfg.strategy.name} adds "
                f"tokens or modules that cannot be folded into them: use full, freeze, lora, dora or ia3")
    if cfg.quant.get("sparsity") is not None and cfg.strategy.kind not in ("full", "freeze"):
        return (f"quant={cfg.quant.name} trains the pruned weights under fixed masks: use strategy=full or freeze "
                f"(a dense {cfg.strategy.name} update would fill the zeros when merged)")
    return None
