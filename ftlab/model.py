"""Loads the base model and tokenizer (quantized or not), applies a fine-tuning strategy, reloads a saved run."""

from contextlib import contextmanager
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ftlab import adapter
from ftlab.paths import resolve

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def model_path(model_cfg) -> str:
    if model_cfg.path == "tiny":
        from ftlab.tiny import tiny_model_dir

        return tiny_model_dir(model_cfg.tiny)
    local = resolve(model_cfg.path)
    from ftlab.merge import is_run_dir, merged_model_dir

    if is_run_dir(local):  # an earlier ftlab run (SFT before DPO, say): its trained weights merged into its base
        return merged_model_dir(local)
    if local.exists():
        return str(local)
    if model_cfg.path.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model.path: no such folder: {model_cfg.path}")
    return model_cfg.path  # a hub id


def load_tokenizer(model_cfg, path: str):
    from transformers import AutoTokenizer

    with explained_load_errors(path):
        tokenizer = AutoTokenizer.from_pretrained(path, revision=model_cfg.revision,
                                                  trust_remote_code=model_cfg.trust_remote_code)
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
            raise ValueError(f"model.path: {path} ships its own Python code (auto_map); ftlab runs it only with "
                             "model.trust_remote_code=true, for a repository you trust") from None
        if folder.is_dir() and not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
            raise ValueError(f"model.path: {path} holds pickle weights (.bin) only, which can run code when "
                             "loaded: convert them to safetensors, or set model.allow_pickle=true for files you trust"
                             ) from None
        raise


def load_base(model_cfg, quant_cfg, path: str, head: str = "causal_lm", dist_name: str = "none"):
    """The model to train: a causal LM, or for head="reward" the same network with a one-score head (a reward
    model: the head starts random, the body from the base). dist_name: where the weights go (distributed.py)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, BitsAndBytesConfig

    from ftlab.config import attention_name, dtype_name
    from ftlab.distributed import device_map

    quantization = BitsAndBytesConfig(**OmegaConf.to_container(quant_cfg.bnb, resolve=True)) if quant_cfg.bnb else None
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
            use_safetensors=not model_cfg.get("allow_pickle", False),  # a pickle can run code when unpickled
            device_map=device_map(dist_name),
        )
    guard_4bit_cpu_gradients(model)
    if head == "reward" and model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id  # the score is read at the last non-pad token
    return model


def guard_4bit_cpu_gradients(model) -> None:
    """bitsandbytes repacks 4-bit weights for a faster CPU kernel after any no-grad forward (our base-model eval),
    and gradients through the repacked weights are silently 48-60% wrong (stack-facts). Turn the repacking off."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


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


def standalone(model_dir: Path) -> bool:
    """A whole model (config.json and weights), not an adapter to put on a base."""
    return (model_dir / "config.json").is_file() and not (model_dir / "adapter_config.json").is_file()


def load_run(run_dir):
    """(model, tokenizer, cfg) of a finished run: its base model and quantization from its config.yaml, plus
    what it trained from run_dir/model."""
    from ftlab.merge import run_config

    run_dir = Path(run_dir)
    cfg: DictConfig = run_config(run_dir)
    trained = run_dir / "model"
    kind = cfg.strategy.kind
    head = "reward" if cfg.objective.trainer == "reward" else "causal_lm"
    base_path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, base_path)
    if kind in ("full", "freeze") or standalone(trained):  # a QAT run saves its converted model, even after LoRA
        model = load_base(cfg.model, cfg.quant, str(trained), head)
    else:
        model = load_base(cfg.model, cfg.quant, base_path, head)
        if kind == "adapter":
            model = adapter.load_adapters(model, trained)
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(trained))
    model.eval()
    return model, tokenizer, cfg
