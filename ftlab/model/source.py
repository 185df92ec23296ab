"""Where a model comes from: the tiny model, a folder, a hub id, or an earlier ftlab run (its trained weights merged into its base once); reloading a finished run."""

import hashlib
import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ftlab.core.files import resolve
from ftlab.model import adapter
from ftlab.model.load import load_base, load_tokenizer


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

UNMERGEABLE = {"prefix", "prompt"}  # virtual tokens: nothing to fold into the weights
# A bottleneck adapter is non-linear: it cannot be folded into the weights either. It is exported as a model with its
# adapter modules, whose code (ftlab/adapter.py plus these lines) travels in the folder (trust_remote_code=True).
ADAPTER_MODEL_CODE = """

from transformers import {config_class} as _BaseConfig, {model_class} as _BaseModel


class FtlabAdapterConfig(_BaseConfig):
    # Not a built-in type: without trust_remote_code loading fails, instead of silently dropping the adapters.
    model_type = "ftlab_adapter"


class FtlabAdapterForCausalLM(_BaseModel):
    config_class = FtlabAdapterConfig

    def __init__(self, config):
        super().__init__(config)
        add_adapters(self, **config.ftlab_adapter)
"""


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "model").is_dir()


def run_config(run_dir: Path):
    """The run's resolved config as ftlab saved it (Hydra's .hydra/ holds the latest command in that directory,
    which may be a refused one)."""
    return OmegaConf.load(run_dir / "config.yaml")


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
    from ftlab.model.load import load_base, load_tokenizer
    cfg = run_config(run_dir)
    kind, name = cfg.strategy.kind, cfg.strategy.name
    if name in UNMERGEABLE:
        raise ValueError(f"{run_dir}: strategy={name} cannot be merged into the base weights (it adds virtual "
                         f"tokens); start the next stage from its base instead")
    if cfg.quant.get("qat"):
        raise ValueError(f"{run_dir}: a quant={cfg.quant.name} run saves its converted int model, already standalone: "
                         f"load {run_dir / 'model'} with from_pretrained; train a next stage from a float run")
    head = "reward" if cfg.objective.trainer == "reward" else "causal_lm"
    trained = run_dir / "model"
    no_quant = OmegaConf.create({"name": "none", "bnb": None})
    if kind in ("full", "freeze"):
        model = load_base(cfg.model, no_quant, str(trained), head)
    elif kind == "adapter":
        from ftlab.model.adapter import load_adapters

        model = load_adapters(load_base(cfg.model, no_quant, model_path(cfg.model), head), trained)
        model.to(model.get_input_embeddings().weight.dtype)  # the adapters trained in float32: stored in the base dtype
    else:
        from peft import PeftModel

        base = load_base(cfg.model, no_quant, model_path(cfg.model), head)
        model = PeftModel.from_pretrained(base, str(trained)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    if kind == "adapter":
        _with_adapter_code(model, out_dir)
    load_tokenizer(cfg.model, str(trained)).save_pretrained(out_dir)
    provenance = {
        "run": str(run_dir.resolve()),
        "strategy": name,
        "objective": cfg.objective.name,
        "head": head,
        "dtype": dtype_name(cfg.model),
        "quantized_run": cfg.quant.name,
        "note": f"merged into the de-quantized ({dtype_name(cfg.model)}) base" if cfg.quant.get("bnb") else
        "bottleneck adapters kept as modules: load with trust_remote_code=True" if kind == "adapter" else "",
    }
    (out_dir / "ftlab_merge.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def _with_adapter_code(model, out_dir: Path) -> None:
    """config.json names the exported classes (auto_map) and the adapter shape; the code goes beside the weights."""
    import inspect

    from ftlab.model import adapter

    code = inspect.getsource(adapter) + ADAPTER_MODEL_CODE.format(
        config_class=type(model.config).__name__, model_class=type(model).__name__)
    (out_dir / "modeling_ftlab_adapter.py").write_text(code)
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    config.update(model_type="ftlab_adapter", architectures=["FtlabAdapterForCausalLM"],
                  ftlab_adapter=model.ftlab_adapter,
                  auto_map={"AutoConfig": "modeling_ftlab_adapter.FtlabAdapterConfig",
                            "AutoModelForCausalLM": "modeling_ftlab_adapter.FtlabAdapterForCausalLM"})
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def load_reward_model(path: str):
    """(model, tokenizer) of a reward model: an objective=reward run directory (merged once) or a model folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftlab.core.files import resolve
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
