"""The combinations that cannot train, found before anything loads: rules over what the YAML files declare (a
strategy's facts, quant.method, the objective's head, the PEFT config class), not over option names."""

from importlib.util import find_spec

from ftlab.config.hardware import _cuda, dtype_name
from ftlab.core.distributed import SHARDED, world_size

METHODS = ("none", "bnb", "qat", "ptq", "sparsity")  # quant.method; each but none reads the quant node of its name
CONVERTING = ("qat", "ptq")  # quant methods whose saved model holds int weights converted after training


def incompatibility(cfg) -> str | None:
    """Why this combination cannot train (the first rule that applies), None when it can."""
    return next((message for applies, message in rules(cfg) if applies), None)


def rules(cfg):
    """(condition, message) for every refusal, in the order they are checked. A generator: a rule is evaluated only
    when the ones before it did not apply, so it may rely on them (the method's settings exist, say)."""
    s, q, o = cfg.strategy, cfg.quant, cfg.objective
    quant, bnb = f"quant={q.name}", q.method == "bnb"
    peft_class = s.peft._target_.rpartition(".")[2] if s.peft else None
    yield (q.method not in METHODS, f"{quant}: quant.method must be one of {', '.join(METHODS)}, not {q.method!r}")
    yield (
        [k for k in METHODS[1:] if q[k] is not None] != ([] if q.method == "none" else [q.method]),
        f"{quant}: set one of quant.bnb, quant.qat, quant.ptq and quant.sparsity, not several: the one that "
        f"quant.method ({q.method}) names",
    )
    yield (
        bnb and s.trains_base,
        f"strategy={s.name} trains base weights, which a {q.name} bitsandbytes base cannot do (transformers "
        f"refuses it): use a PEFT strategy such as strategy=lora with {quant}",
    )
    yield (bnb and s.float_base, f"strategy={s.name} trains on a float base; with {quant} use strategy=lora (QLoRA)")
    yield (
        bnb
        and q.bnb.get("load_in_8bit", False)
        and s.peft is not None
        and s.peft.get("use_dora", False)
        and not _cuda(),
        f"strategy={s.name} with {quant} fails on CPU (bitsandbytes 0.50 loses the int8 scales of DoRA): use "
        "quant=4bit",
    )
    yield (
        bnb and peft_class == "IA3Config" and dtype_name(cfg.model) != "float32",
        f"strategy={s.name} on a {q.name} base needs model.dtype=float32 (PEFT's IA3 then gives float32 keys and "
        f"values beside {dtype_name(cfg.model)} queries, which attention refuses)",
    )
    yield (
        o.head == "reward" and not s.reward_head,
        f"objective={o.name} trains a score head with strategy=full, freeze, lora or dora, not {s.name}",
    )
    yield (
        cfg.dist.name == "none" and world_size() > 1,
        f"launched with {world_size()} processes but dist=none: add dist=ddp (or fsdp, deepspeed_zero2, "
        "deepspeed_zero3)",
    )
    yield (
        cfg.dist.name in SHARDED and not _cuda(),
        f"dist={cfg.dist.name} shards the model across CUDA GPUs, and accelerate runs it on GPUs only (on CPUs it "
        "would silently be plain data parallel): use dist=ddp here",
    )
    yield (
        cfg.dist.name.startswith("deepspeed") and find_spec("deepspeed") is None,
        f"dist={cfg.dist.name} needs DeepSpeed, which is not installed: pip install deepspeed (or use dist=fsdp)",
    )
    yield (
        cfg.train.gradient_checkpointing and not s.allows_gradient_checkpointing,
        f"strategy={s.name} cannot run with train.gradient_checkpointing=true (its file says "
        "allows_gradient_checkpointing: false; for prefix tuning, PEFT's prefix cache breaks it)",
    )
    yield (
        q.method in ("qat", "ptq", "sparsity") and o.head == "reward",
        f"{quant} compresses the causal LM that answers; train the reward model with quant=none",
    )
    yield (
        q.method in CONVERTING and not s.mergeable,
        f"{quant} converts the trained weights to int; strategy={s.name} adds tokens or modules that cannot be "
        "folded into them: use full, freeze, lora, dora or ia3",
    )
    yield (
        q.method == "sparsity" and not s.trains_base,
        f"{quant} trains the pruned weights under fixed masks: use strategy=full or freeze (a dense {s.name} "
        "update would fill the zeros when merged)",
    )
