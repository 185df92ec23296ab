"""Loads the base model and tokenizer (quantized or not), applies a fine-tuning strategy, reloads a saved run."""

from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ftlab.core.files import resolve

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(model_cfg, path: str):
    from transformers import AutoTokenizer

    with explained_load_errors(path):
        tokenizer = AutoTokenizer.from_pretrained(
            path, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
        )
    if model_cfg.chat_template:
        tokenizer.chat_template = resolve(model_cfg.chat_template).read_text(encoding="utf-8")
    if tokenizer.chat_template is None:
        raise ValueError(f"model.chat_template: {path} has no chat template; name a .jinja file")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # batching needs one; the attention mask hides it
    return tokenizer


@contextmanager
def explained_load_errors(path: str):
    """transformers' refusals, as one line that names the setting: code shipped with the model, pickle weights."""
    try:
        yield
    except (OSError, ValueError) as err:
        folder = Path(path)
        if "trust_remote_code" in str(err):
            raise ValueError(
                f"model.path: {path} ships its own Python code (auto_map); ftlab runs it only with "
                "model.trust_remote_code=true, for a repository you trust"
            ) from None
        if folder.is_dir() and not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
            raise ValueError(
                f"model.path: {path} holds pickle weights (.bin) only, which can run code when "
                "loaded: convert them to safetensors, or set model.allow_pickle=true for files you trust"
            ) from None
        raise


def load_base(model_cfg, quant_cfg, path: str, head: str = "causal_lm", dist_name: str = "none"):
    """The model to train: a causal LM, or for head="reward" the same network with a one-score head (a reward
    model: the head starts random, the body from the base). dist_name: where the weights go (distributed.py)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, BitsAndBytesConfig

    from ftlab.config.hardware import attention_name, dtype_name
    from ftlab.core.distributed import device_map

    quantization = (
        BitsAndBytesConfig(**OmegaConf.to_container(quant_cfg.bnb, resolve=True)) if quant_cfg.method == "bnb" else None
    )
    auto_class, extra = AutoModelForCausalLM, {}
    if head == "reward":
        auto_class, extra = AutoModelForSequenceClassification, {"num_labels": 1}
    if quantization is not None:  # None would also drop the quantization a saved model (QAT's int model) declares
        extra["quantization_config"] = quantization
    with explained_load_errors(path):
        model = auto_class.from_pretrained(
            path,
            **extra,
            revision=model_cfg.revision,
            dtype=DTYPES[dtype_name(model_cfg)],
            attn_implementation=attention_name(model_cfg),
            trust_remote_code=model_cfg.trust_remote_code,
            use_safetensors=not model_cfg.allow_pickle,  # a pickle can run code when unpickled
            device_map=device_map(dist_name),
        )
    guard_4bit_cpu_gradients(model)
    if head == "reward" and model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id  # the score is read at the last non-pad token
    return model


def guard_4bit_cpu_gradients(model) -> None:
    """bitsandbytes repacks 4-bit weights for a faster CPU kernel after any no-grad forward (our base-model eval),
    and gradients through the repacked weights are silently 48-60% wrong (stack-facts). Turn the repacking off."""
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
