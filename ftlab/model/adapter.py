"""Bottleneck adapter layers (Houlsby / Pfeiffer) inserted into each transformer block: strategy.kind=adapter's row of
ftlab/model/strategy.py (apply, save, attach, export). Saved and reloaded alone; exported as a model whose code is this
module's (its imports stay torch, safetensors and the standard library: the export runs it without ftlab)."""

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "adapter.safetensors"
CONFIG = "adapter_config.json"
# Where an adapter goes in each decoder block (Llama-style module names).
PLACEMENTS = {"pfeiffer": ["mlp"], "houlsby": ["self_attn", "mlp"]}


class Bottleneck(nn.Module):
    """down-project, non-linearity, up-project, added to the wrapped module's output; zero-initialised up-projection
    makes a fresh adapter the identity, so training starts from the base model's behaviour."""

    def __init__(self, hidden: int, bottleneck: int, activation: str, dropout: float):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return self.up(self.dropout(self.act(self.down(x.to(self.down.weight.dtype))))).to(x.dtype)


class WithAdapter(nn.Module):
    """Wraps a block's sub-module; works for modules returning a tensor or a tuple whose first item is the output."""

    def __init__(self, inner: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.inner = inner
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] + self.adapter(out[0]),) + out[1:]
        return out + self.adapter(out)


def apply(model, strategy_cfg, task_type):
    """strategy=adapter: the model frozen, trainable adapters added (strategy.adapter gives their shape)."""
    a = strategy_cfg.adapter
    return add_adapters(model, a.bottleneck, a.placement, a.activation, a.dropout), None


def add_adapters(model: nn.Module, bottleneck: int, placement: str, activation: str = "gelu", dropout: float = 0.0):
    """Freezes the model and inserts a trainable adapter after each placement module of every decoder layer."""
    if placement not in PLACEMENTS:
        raise ValueError(f"strategy.adapter.placement: expected one of {sorted(PLACEMENTS)}, got {placement!r}")
    for param in model.parameters():
        param.requires_grad_(False)
    hidden = model.config.hidden_size
    for layer in model.model.layers:
        for name in PLACEMENTS[placement]:
            adapter = Bottleneck(hidden, bottleneck, activation, dropout).to(model.device)
            setattr(layer, name, WithAdapter(getattr(layer, name), adapter))
    model.ftlab_adapter = {
        "bottleneck": bottleneck,
        "placement": placement,
        "activation": activation,
        "dropout": dropout,
    }
    return model


def adapter_state(model: nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if ".adapter." in k}


def save(model: nn.Module, out_dir) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(out / WEIGHTS))
    (out / CONFIG).write_text(json.dumps(model.ftlab_adapter, indent=2))


def attach(model: nn.Module, adapter_dir) -> nn.Module:
    """A saved run's adapters, added to its base."""
    folder = Path(adapter_dir)
    add_adapters(model, **json.loads((folder / CONFIG).read_text()))
    state = load_file(str(folder / WEIGHTS))
    missing = set(adapter_state(model)) - set(state)
    if missing:
        raise ValueError(f"{folder / WEIGHTS}: missing adapter weights {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)
    return model


# The exported model: the base architecture with this module's adapters, loaded with trust_remote_code=True.
MODEL_CODE = """

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


def export(model: nn.Module, out_dir) -> str:
    """A bottleneck adapter is non-linear: it cannot be folded into the weights. The model is saved with its adapter
    modules, in the base dtype, and with their code; config.json names the classes (auto_map) and the adapter shape."""
    import inspect
    import sys

    from ftlab.core.files import write_atomic, write_json

    out = Path(out_dir)
    model.to(model.get_input_embeddings().weight.dtype)  # the adapters trained in float32
    model.save_pretrained(out, safe_serialization=True)
    code = inspect.getsource(sys.modules[__name__]) + MODEL_CODE.format(
        config_class=type(model.config).__name__, model_class=type(model).__name__
    )
    write_atomic(out / "modeling_ftlab_adapter.py", code)
    config = json.loads((out / "config.json").read_text())
    config.update(
        model_type="ftlab_adapter",
        architectures=["FtlabAdapterForCausalLM"],
        ftlab_adapter=model.ftlab_adapter,
        auto_map={
            "AutoConfig": "modeling_ftlab_adapter.FtlabAdapterConfig",
            "AutoModelForCausalLM": "modeling_ftlab_adapter.FtlabAdapterForCausalLM",
        },
    )
    write_json(out / "config.json", config)
    return "bottleneck adapters kept as modules: load with trust_remote_code=True"
