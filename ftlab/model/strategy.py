"""A fine-tuning strategy applied to a loaded model: what trains, and what is saved afterwards."""

from pathlib import Path

import torch
from hydra.utils import instantiate

from ftlab.model import adapter


def apply_strategy(model, strategy_cfg, task_type: str = "CAUSAL_LM"):
    """Marks what trains. Returns (model, peft_config): PEFT methods are handed to the TRL trainer, which wraps the
    model (and prepares a quantized base for training); the others change the model here."""
    kind = strategy_cfg.kind
    if kind == "full":
        return model, None
    if kind == "freeze":
        layers = model.model.layers
        keep = strategy_cfg.train_last_blocks
        if not 0 < keep <= len(layers):
            raise ValueError(f"strategy.train_last_blocks: expected 1..{len(layers)}, got {keep}")
        for param in model.parameters():
            param.requires_grad_(False)
        for module in list(layers[-keep:]) + [model.model.norm]:
            for param in module.parameters():
                param.requires_grad_(True)
        return model, None
    if kind == "adapter":
        a = strategy_cfg.adapter
        return adapter.add_adapters(model, a.bottleneck, a.placement, a.activation, a.dropout), None
    if kind == "peft":
        return model, peft_config(strategy_cfg, task_type)
    raise ValueError(f"strategy.kind: expected full, freeze, peft or adapter, got {kind!r}")


def peft_config(strategy_cfg, task_type: str = "CAUSAL_LM"):
    """The PEFT config; a reward model is a SEQ_CLS task, for which PEFT also trains and saves the score head."""
    try:
        extra = {"task_type": task_type} if "task_type" in strategy_cfg.peft else {}
        return instantiate(strategy_cfg.peft, **extra)
    except Exception as err:  # an unknown or mistyped PEFT argument: name the key, not a stack trace
        raise ValueError(f"strategy.peft: {err.__cause__ or err}") from None


def count_params(model) -> dict:
    """Parameters, not stored elements: a 4-bit bitsandbytes weight packs two values per byte (as PEFT counts)."""
    trainable = total = 0
    for param in model.parameters():
        count = param.numel()
        if param.__class__.__name__ == "Params4bit":
            count *= 2 * getattr(param, "quant_storage", torch.uint8).itemsize
        total += count
        trainable += count if param.requires_grad else 0
    return {"trainable": trainable, "total": total}


def save_trained(model, tokenizer, strategy_cfg, out_dir: Path) -> None:
    """Only what was trained: a PEFT adapter, ftlab's bottleneck adapters, or the whole model (safetensors). Saved
    beside out_dir and renamed into place, so out_dir never holds half a model."""
    import shutil

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if strategy_cfg.kind == "adapter":
        adapter.save_adapters(model, partial)
    else:
        model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
