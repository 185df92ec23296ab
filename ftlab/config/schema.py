"""The typed config schema (a wrong type or unknown key fails at composition) and the combinations that cannot train."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


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
    head: str = MISSING  # causal_lm | reward (a one-score head, judged on preference pairs)
    eval_pairs: bool = MISSING  # the trainer's eval loss uses held-out preference pairs
    args: Dict[str, Any] = field(default_factory=dict)  # passed to the trainer's TRL config (SFTConfig, DPOConfig, ...)
    reference: str = "auto"  # dpo/kto: auto (PEFT: adapter disabled; else a frozen copy) | precompute
    reward_model: Optional[str] = None  # online RL: an objective=reward run directory (or a reward model folder)
    reward_funcs: List[str] = field(default_factory=list)  # online RL: Python callables, e.g. ftlab.eval.rewards.concise


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


def register() -> None:
    from omegaconf import OmegaConf

    from ftlab.config.hardware import resolve_dtype
    from ftlab.core.distributed import start_time

    ConfigStore.instance().store(name="ftlab_schema", node=Config)
    OmegaConf.register_new_resolver("start_time", start_time, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("dtype", resolve_dtype, replace=True)
