"""Where a model comes from: the tiny model, a folder, a hub id, or an earlier ftlab run (its trained weights merged
into its base once); reloading a finished run."""

import hashlib
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ftlab.core.files import is_run_dir, resolve, run_config
from ftlab.model import strategy
from ftlab.model.load import load_base, load_tokenizer

FLOAT = {"method": "none", "bnb": None}  # a run's quant settings overridden for merging: the base in its own dtype


def model_path(model_cfg) -> str:
    if model_cfg.path == "tiny":
        from ftlab.model.tiny import tiny_model_dir

        return tiny_model_dir(model_cfg.tiny)
    local = resolve(model_cfg.path)
    if is_run_dir(local):  # an earlier ftlab run (SFT before DPO, say): its trained weights merged into its base
        return merged_model_dir(local)
    if local.exists():
        return str(local)
    if model_cfg.path.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model.path: no such folder: {model_cfg.path}")
    return model_cfg.path  # a hub id


def standalone(model_dir: Path) -> bool:
    """A whole model (config.json and weights), not an adapter to put on a base."""
    return (model_dir / "config.json").is_file() and not (model_dir / "adapter_config.json").is_file()


def load_run(run_dir):
    """(model, tokenizer, cfg) of a finished run: its base model and quantization from its config.yaml, plus
    what it trained from run_dir/model."""
    run_dir = Path(run_dir)
    cfg: DictConfig = run_config(run_dir)
    base_path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, base_path)
    model = as_trained(cfg, cfg.quant, run_dir / "model", base_path)
    model.eval()
    return model, tokenizer, cfg


def as_trained(cfg, quant_cfg, trained: Path, base_path: str):
    """What a run trained, on its base: a whole model as saved (full, freeze, and QAT's or PTQ's int model even
    after LoRA), else the base loaded with quant_cfg and what trained put back on it."""
    if standalone(trained):
        return load_base(cfg.model, quant_cfg, str(trained), cfg.objective.head)
    base = load_base(cfg.model, quant_cfg, base_path, cfg.objective.head)
    return strategy.kind(cfg.strategy).attach(base, trained)


def merged_model_dir(run_dir: Path) -> str:
    """A merged copy of a run, built once and cached (keyed by the run's saved files), for `model.path=RUN_DIR`."""
    from ftlab.core.files import build_once, cache_root

    run_dir = run_dir.resolve()
    digest = hashlib.sha256(str(run_dir).encode())
    for f in sorted((run_dir / "model").rglob("*")):
        if f.is_file():
            digest.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    target = cache_root() / "from-runs" / f"{run_dir.name[-40:]}-{digest.hexdigest()[:12]}"
    return build_once(target, lambda folder: merge_run(run_dir, folder))


def merge_run(run_dir: Path, out_dir: Path) -> dict:
    """Base + what the run trained, as one model in the base dtype (a 4-bit run merges into the de-quantized base:
    the adapter was trained against NF4 weights, so outputs differ slightly from the quantized run), with the
    tokenizer and chat template, in safetensors. Returns the provenance written to ftlab_merge.json."""
    from ftlab.config.hardware import dtype_name
    from ftlab.config.rules import CONVERTING
    from ftlab.core.files import write_json

    cfg = run_config(run_dir)
    if cfg.strategy.virtual_tokens:
        raise ValueError(
            f"{run_dir}: strategy={cfg.strategy.name} cannot be merged into the base weights (it adds "
            "virtual tokens); start the next stage from its base instead"
        )
    if cfg.quant.method in CONVERTING:
        raise ValueError(
            f"{run_dir}: a quant={cfg.quant.name} run saves its converted int model, already standalone: "
            f"load {run_dir / 'model'} with from_pretrained; train a next stage from a float run"
        )
    trained = run_dir / "model"
    model = as_trained(cfg, OmegaConf.merge(cfg.quant, FLOAT), trained, model_path(cfg.model))
    out_dir.mkdir(parents=True, exist_ok=True)
    note = strategy.kind(cfg.strategy).export(model, out_dir)
    load_tokenizer(cfg.model, str(trained)).save_pretrained(out_dir)
    provenance = {
        "run": str(run_dir.resolve()),
        "strategy": cfg.strategy.name,
        "objective": cfg.objective.name,
        "head": cfg.objective.head,
        "dtype": dtype_name(cfg.model),
        "quantized_run": cfg.quant.name,
        # ftlab wrote the model's code beside the weights (bottleneck adapters): loading it runs that code
        "ftlab_code": (out_dir / "modeling_ftlab_adapter.py").is_file(),
        "note": f"merged into the de-quantized ({dtype_name(cfg.model)}) base" if cfg.quant.method == "bnb" else note,
    }
    write_json(out_dir / "ftlab_merge.json", provenance)
    return provenance


def load_reward_model(path: str):
    """(model, tokenizer) of a reward model: an objective=reward run directory (merged once) or a model folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = resolve(path)
    if not local.exists():
        raise FileNotFoundError(f"reward_model: no such run directory or model folder: {path}")
    folder = merged_model_dir(local) if is_run_dir(local) else str(local)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = model.config.pad_token_id or tokenizer.pad_token_id
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval(), tokenizer
