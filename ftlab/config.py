"""The typed config schema (a wrong type or unknown key fails at composition) and the combinations that cannot train."""

from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from ftlab.distributed import SHARDED, world_size


@dataclass
class TinyConfig:
    """Size of the embedded model that `model=tiny` builds locally (see ftlab/tiny.py)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 352
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position: int = 512
    pretrain_steps: int = 300  # steps on generic HR text, so the base answers like a generic chatbot
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = MISSING  # short name used in run names
    path: str = MISSING  # hub id, local Hugging Face folder, or "tiny" (built locally)
    dtype: str = "auto"  # auto (bfloat16 on GPUs that have it, else float16; float32 on CPU) | float32 | ...
    attn_implementation: str = "auto"  # auto: flash_attention_2 when installed, on a GPU, in 16 bits; else sdpa
    target_modules: List[str] = field(default_factory=list)  # linear layers that LoRA/DoRA/IA3 adapt
    feedforward_modules: List[str] = field(default_factory=list)  # IA3 scales these on their input
    chat_template: Optional[str] = None  # a .jinja file; None: the tokenizer's own
    trust_remote_code: bool = False  # runs the model repository's Python code: only for repositories you trust
    allow_pickle: bool = False  # accept pickle weights (.bin), which can run code when loaded; safetensors otherwise
    revision: Optional[str] = None
    tiny: Optional[TinyConfig] = None


@dataclass
class AdapterConfig:
    bottleneck: int = 64
    placement: str = "houlsby"  # houlsby: after attention and after the MLP; pfeiffer: after the MLP only
    activation: str = "gelu"
    dropout: float = 0.0


@dataclass
class StrategyConfig:
    name: str = MISSING
    kind: str = MISSING  # full | freeze | peft | adapter
    lr: float = 1e-4  # the learning rate this strategy usually wants; optimizer.lr defaults to it
    peft: Optional[Dict[str, Any]] = None  # a PEFT config with _target_ (kind=peft); its keys are PEFT's own
    train_last_blocks: int = 2  # kind=freeze: how many of the last transformer blocks train
    adapter: Optional[AdapterConfig] = None  # kind=adapter


@dataclass
class ObjectiveConfig:
    name: str = MISSING
    trainer: str = "sft"
    data_format: str = MISSING  # prompt_completion | messages | text: the data.train source it reads
    args: Dict[str, Any] = field(default_factory=dict)  # passed to the trainer's TRL config (SFTConfig, DPOConfig, ...)
    reference: str = "auto"  # dpo/kto: auto (PEFT: adapter disabled; else a frozen copy) | precompute
    reward_model: Optional[str] = None  # online RL: an objective=reward run directory (or a reward model folder)
    reward_funcs: List[str] = field(default_factory=list)  # online RL: Python callables, e.g. ftlab.rewards.concise


@dataclass
class DataConfig:
    name: str = MISSING
    train: Dict[str, Optional[str]] = field(default_factory=dict)  # data format -> file, folder or hub dataset
    eval: Optional[str] = None  # held-out questions: question, answer, facts
    eval_pairs: Optional[str] = None  # held-out preference pairs: prompt, chosen, rejected
    columns: Any = None  # your column name -> ftlab's name, e.g. {q: prompt, a: completion}
    system_prompt: Optional[str] = None
    max_train_examples: Optional[int] = None
    format: str = "auto"  # the training file's format: auto (detected) | alpaca | sharegpt | messages | ... (formats)
    on_error: str = "stop"  # a record that breaks its format: stop (file:line: field) | drop (dropped and counted)
    dedupe: str = "near"  # none | exact | near (case, punctuation and spacing ignored)
    min_tokens: int = 0  # drop training examples shorter than this (tokens of their text)
    max_tokens: Optional[int] = None  # drop longer ones (None: keep; train.max_length truncates them instead)
    validation_split: float = 0.0  # > 0: this share of the training examples (seeded) is held out for eval loss
    leakage: str = "warn"  # held-out questions also in training: warn | drop (from training) | error


@dataclass
class QatConfig:
    """Quantization-aware training with torchao (ftlab/compress.py)."""

    scheme: str = "int8_int4"  # int8_int4 | int4_weight
    group_size: int = 32  # weights share a scale per group of this many
    ptq_baseline: bool = True  # also fine-tune without fake quantization and quantize after: QAT's yardstick


@dataclass
class SparsityConfig:
    """Fine-tuning under fixed sparsity masks (ftlab/compress.py)."""

    pattern: str = "2of4"  # 2of4 (2 of every 4 consecutive weights zero) | unstructured
    method: str = "wanda"  # wanda (|weight| x input activation norm) | magnitude (|weight|)
    level: float = 0.5  # fraction of each layer's weights set to zero; 2of4 is 0.5
    calibration_examples: int = 64  # wanda: training rows whose activations rank the weights


@dataclass
class QuantConfig:
    name: str = MISSING
    bnb: Optional[Dict[str, Any]] = None  # transformers.BitsAndBytesConfig arguments; None: no quantization
    qat: Optional[QatConfig] = None  # torchao quantization-aware training, converted to int weights after training
    sparsity: Optional[SparsityConfig] = None  # pruned base weights, kept at zero while training


@dataclass
class OptimizerConfig:
    name: str = MISSING
    optim: str = MISSING  # a transformers optimizer name
    lr: float = 2e-4
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup: float = 0.0  # < 1: a fraction of the training steps; >= 1: a number of steps
    max_grad_norm: float = 1.0
    optim_args: Optional[str] = None


@dataclass
class DistConfig:
    """How many processes train, and how the model is split among them (conf/dist/)."""

    name: str = "none"
    args: Dict[str, Any] = field(default_factory=dict)  # TrainingArguments fields: ddp_*, fsdp, fsdp_config, deepspeed


@dataclass
class TrainConfig:
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 256
    gradient_checkpointing: Optional[bool] = None  # None: on for models over 1B parameters (less memory, slower)
    packing: Optional[bool] = None  # several examples per row (TRL's bfd packing); None: raw text only
    padding_free: Optional[bool] = None  # None: on with flash attention (no padding computed), off otherwise
    liger: Optional[bool] = None  # Liger kernels; None: on when liger-kernel is installed and training on CUDA
    labelled_logits_only: bool = True  # CPUs: the LM head scores only labelled positions, as TRL does on GPUs
    logging_steps: int = 10
    eval_steps: float = 0.1  # eval loss on held-out answers: < 1 a fraction of training, >= 1 steps, 0 never
    cache_tokenized: bool = True  # reuse the tokenized dataset of an earlier run with the same data and tokenizer
    save_steps: int = 100  # a resumable checkpoint every this many steps (0: none)
    save_total_limit: int = 2  # keep the newest this many checkpoints
    keep_checkpoints: bool = False  # keep them once the run has finished (model/ holds the result either way)


@dataclass
class EvalConfig:
    max_new_tokens: int = 48
    batch_size: int = 32
    max_questions: Optional[int] = None  # None: every held-out question
    num_failures: int = 10  # worst failures written to failures.jsonl
    sample_question: str = "What is the notice period for a Senior Consultant?"
    reward_model: Optional[str] = None  # an objective=reward run: scores base vs fine-tuned answers (win rate)


@dataclass
class WandbConfig:
    mode: str = "auto"  # auto (online if logged in, else offline) | online | offline | disabled
    project: str = "ftlab"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class Config:
    model: ModelConfig = MISSING
    strategy: StrategyConfig = MISSING
    objective: ObjectiveConfig = MISSING
    data: DataConfig = MISSING
    quant: QuantConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    dist: DistConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    seed: int = 42
    metric: str = "eval.answer_accuracy"  # what a run returns to a Hydra sweeper (Optuna optimises it)
    run_name: str = MISSING
    output_dir: Optional[str] = None  # None: Hydra's run directory
    resume: str = "auto"  # auto: continue an unfinished run in the directory | never: start over | checkpoint-N dir
    overwrite: bool = False  # true: replace a finished run in the directory


PROMPT_METHODS = ("prefix", "prompt", "ia3")


def incompatibility(cfg) -> str | None:
    """Why this combination cannot train, found before anything loads (None when it can)."""
    if sum(cfg.quant.get(k) is not None for k in ("bnb", "qat", "sparsity")) > 1:
        return f"quant={cfg.quant.name}: set one of quant.bnb, quant.qat and quant.sparsity, not several"
    quantized = cfg.quant.bnb is not None
    if quantized and cfg.strategy.kind in ("full", "freeze"):
        return (
            f"strategy={cfg.strategy.name} trains base weights, which a {cfg.quant.name} bitsandbytes base cannot "
            f"do (transformers refuses it): use a PEFT strategy such as strategy=lora with quant={cfg.quant.name}"
        )
    if quantized and cfg.strategy.kind == "adapter":
        return f"strategy=adapter trains on a float base; with quant={cfg.quant.name} use strategy=lora (QLoRA)"
    if cfg.strategy.name == "dora" and cfg.quant.name == "8bit" and not _cuda():
        return "strategy=dora with quant=8bit fails on CPU (bitsandbytes 0.50 loses the int8 scales): use quant=4bit"
    if cfg.strategy.name == "ia3" and quantized and dtype_name(cfg.model) != "float32":
        return (
            f"strategy=ia3 on a {cfg.quant.name} base needs model.dtype=float32 (PEFT's IA3 then gives float32 "
            f"keys and values beside {dtype_name(cfg.model)} queries, which attention refuses)"
        )
    if cfg.objective.trainer == "reward" and (cfg.strategy.kind == "adapter" or cfg.strategy.name in PROMPT_METHODS):
        return f"objective=reward trains a score head with strategy=full, freeze, lora or dora, not {cfg.strategy.name}"
    target = (cfg.strategy.peft or {}).get("_target_", "")
    if cfg.dist.name == "none" and world_size() > 1:
        return (f"launched with {world_size()} processes but dist=none: add dist=ddp (or fsdp, deepspeed_zero2, "
                "deepspeed_zero3)")
    if cfg.dist.name in SHARDED and not _cuda():
        return (f"dist={cfg.dist.name} shards the model across CUDA GPUs, and accelerate runs it on GPUs only (on CPUs "
                "it would silently be plain data parallel): use dist=ddp here")
    if cfg.dist.name.startswith("deepspeed") and find_spec("deepspeed") is None:
        return f"dist={cfg.dist.name} needs DeepSpeed, which is not installed: pip install deepspeed (or use dist=fsdp)"
    if target.endswith("PrefixTuningConfig") and cfg.train.gradient_checkpointing:
        return "strategy=prefix cannot run with train.gradient_checkpointing=true (PEFT's prefix cache breaks it)"
    compressing = cfg.quant.get("qat") is not None or cfg.quant.get("sparsity") is not None
    if compressing and cfg.objective.trainer == "reward":
        return f"quant={cfg.quant.name} compresses the causal LM that answers; train the reward model with quant=none"
    folds_in = cfg.strategy.kind != "adapter" and cfg.strategy.name not in ("prefix", "prompt")
    if cfg.quant.get("qat") is not None and not folds_in:
        return (f"quant={cfg.quant.name} converts the trained weights to int; strategy={cfg.strategy.name} adds "
                f"tokens or modules that cannot be folded into them: use full, freeze, lora, dora or ia3")
    if cfg.quant.get("sparsity") is not None and cfg.strategy.kind not in ("full", "freeze"):
        return (f"quant={cfg.quant.name} trains the pruned weights under fixed masks: use strategy=full or freeze "
                f"(a dense {cfg.strategy.name} update would fill the zeros when merged)")
    return None


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


def register() -> None:
    from omegaconf import OmegaConf

    from ftlab.distributed import start_time

    ConfigStore.instance().store(name="ftlab_schema", node=Config)
    OmegaConf.register_new_resolver("start_time", start_time, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("dtype", resolve_dtype, replace=True)
