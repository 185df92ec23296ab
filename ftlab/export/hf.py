"""The Hugging Face folders llama.cpp's converters read: a run as one float model, and a LoRA run's base."""

from pathlib import Path

from ftlab.config.rules import CONVERTING


def float_folder(run_dir: Path, cfg, out: Path) -> Path:
    """The run as a standalone float model folder: merged (python -m ftlab.merge), or for QAT/PTQ runs, whose saved
    model holds torchao int weights the converter cannot read, those weights de-quantized (scale x int, exactly the
    values the int model computes with)."""
    from ftlab.model.source import merge_run

    if cfg.quant.method not in CONVERTING:
        merge_run(run_dir, out)
        return out
    import torch
    from transformers import AutoModelForCausalLM

    from ftlab.model.load import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(run_dir / "model", use_safetensors=True)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and type(module.weight) is not torch.nn.Parameter:
            module.weight = torch.nn.Parameter(module.weight.dequantize(), requires_grad=False)
    plain = AutoModelForCausalLM.from_config(_without_quantization(model.config), dtype=model.dtype)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out, safe_serialization=True)
    load_tokenizer(cfg.model, str(run_dir / "model")).save_pretrained(out)
    return out


def _without_quantization(config):
    config = config.__class__.from_dict(config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config


def base_folder(cfg) -> Path:
    """A LoRA run's base as a local folder: the tiny model, a folder, or a hub id already in the local cache."""
    from ftlab.model.source import model_path

    path = model_path(cfg.model)
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(path, local_files_only=True))
    except Exception:
        raise FileNotFoundError(f"model.path={path}: the base is not on this machine; download it first") from None


def lora_adapter(run_dir: Path) -> bool:
    """Whether the run saved a plain LoRA adapter (what llama.cpp's LoRA converter reads: not DoRA, not IA3)."""
    import json

    config = run_dir / "model" / "adapter_config.json"
    if not config.is_file():
        return False
    saved = json.loads(config.read_text(encoding="utf-8"))
    return saved.get("peft_type") == "LORA" and not saved.get("use_dora")
