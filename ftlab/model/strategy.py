"""A fine-tuning strategy applied to a loaded model: what trains, what is saved afterwards, and how a saved run is put
back together. Each strategy.kind is one row of KINDS; what a strategy is (mergeable, trains the base, ...) is declared
in its YAML and read by the rules (ftlab/config/rules.py), not decided here."""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from hydra.utils import instantiate

from ftlab.core.files import atomic_dir
from ftlab.model import adapter


class Kind(NamedTuple):
    apply: Callable  # (model, strategy_cfg, task_type) -> (model, a PEFT config for the trainer to wrap it, or None)
    save: Callable  # (trained model, folder): what trained
    attach: Callable | None  # (base model, saved folder) -> the model as trained; None: the folder is a whole model
    export: Callable  # (model as trained, folder) -> a note: it as one standalone model (python -m ftlab.merge)


def apply_strategy(model, strategy_cfg, task_type: str = "CAUSAL_LM"):
    """Marks what trains. Returns (model, peft_config): PEFT methods are handed to the TRL trainer, which wraps the
    model (and prepares a quantized base for training); the other kinds change the model here. A reward model is a
    SEQ_CLS task, for which PEFT also trains and saves the score head."""
    return kind(strategy_cfg).apply(model, strategy_cfg, task_type)


def kind(strategy_cfg) -> Kind:
    if strategy_cfg.kind not in KINDS:
        raise ValueError(f"strategy.kind: expected one of {', '.join(KINDS)}, got {strategy_cfg.kind!r}")
    return KINDS[strategy_cfg.kind]


def _full(model, strategy_cfg, task_type):
    return model, None


def _freeze(model, strategy_cfg, task_type):
    """Only the last strategy.train_last_blocks transformer blocks and the final norm train."""
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


def _peft(model, strategy_cfg, task_type):
    return model, peft_config(strategy_cfg, task_type)


def peft_config(strategy_cfg, task_type: str = "CAUSAL_LM"):
    """The PEFT config of strategy.peft, its task type set to the run's."""
    try:
        extra = {"task_type": task_type} if "task_type" in strategy_cfg.peft else {}
        return instantiate(strategy_cfg.peft, **extra)
    except Exception as err:  # an unknown or mistyped PEFT argument: name the key, not a stack trace
        raise ValueError(f"strategy.peft: {err.__cause__ or err}") from None


def _save_pretrained(model, folder: Path) -> None:
    """The whole model, or a PEFT model's adapter, in safetensors. A sparse run evaluated on CUDA holds its 2:4 layers
    as semi-structured tensors (compress.semi_structured): safetensors takes them dense, zeros included."""
    import torch
    from torch.sparse import SparseSemiStructuredTensor

    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and isinstance(module.weight, SparseSemiStructuredTensor):
            module.weight = torch.nn.Parameter(module.weight.to_dense(), requires_grad=False)
    model.save_pretrained(folder, safe_serialization=True)


def _attach_peft(model, folder: Path):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(folder))


def merged(model):
    """A PEFT model with its adapter folded into the base layers (for QAT, the fake-quantized ones); other models as
    they are."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def _export_merged(model, folder: Path) -> str:
    merged(model).save_pretrained(folder, safe_serialization=True)
    return ""


KINDS = {
    "full": Kind(_full, _save_pretrained, None, _export_merged),
    "freeze": Kind(_freeze, _save_pretrained, None, _export_merged),
    "peft": Kind(_peft, _save_pretrained, _attach_peft, _export_merged),
    "adapter": Kind(adapter.apply, adapter.save, adapter.attach, adapter.export),
}


def count_params(model) -> dict:
    """Parameters, not stored elements: a 4-bit bitsandbytes weight packs two values per byte (as PEFT counts)."""
    trainable = total = 0
    for param in model.parameters():
        count = param.numel()
        if param.__class__.__name__ == "Params4bit":
            count *= 2 * param.quant_storage.itemsize
        total += count
        trainable += count if param.requires_grad else 0
    return {"trainable": trainable, "total": total}


def save_trained(model, tokenizer, strategy_cfg, out_dir: Path) -> None:
    """Only what was trained (a PEFT adapter, ftlab's bottleneck adapters, or the whole model: QAT's and PTQ's int
    model even after LoRA), with the tokenizer; out_dir never holds half a model."""
    with atomic_dir(out_dir, replace=True) as folder:
        kind(strategy_cfg).save(model, folder)
        tokenizer.save_pretrained(folder)
