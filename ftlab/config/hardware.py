"""Settings whose `auto` depends on the machine: dtype and attention kernel."""

from importlib.util import find_spec


def dtype_name(model_cfg) -> str:
    """model.dtype with auto resolved: bfloat16 on a GPU that has it, float16 on an older one, float32 on a CPU."""
    return resolve_dtype(model_cfg.dtype)


def resolve_dtype(name: str) -> str:
    """The `dtype` resolver too: ${dtype:${model.dtype}} in a config is the dtype the run really uses."""
    if name != "auto":
        return name
    import torch

    if not torch.cuda.is_available():
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def attention_name(model_cfg) -> str:
    """model.attn_implementation with auto resolved: flash attention where it is installed and can run, else SDPA."""
    if model_cfg.attn_implementation != "auto":
        return model_cfg.attn_implementation
    if _cuda() and dtype_name(model_cfg) != "float32" and find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
