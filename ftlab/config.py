"""Typed schema of the ftlab config: a wrong type or an unknown key fails at composition, before any model loads."""

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
    dtype: str = "float32"  # float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"
    target_modules: List[str] = field(default_factory=list)  # linear layers that LoRA/DoRA/IA3 adapt
    feedforward_modules: List[str] = field(default_factory=list)  # IA3 scales these on their input
    chat_template: Optional[str] = None  # a .jinja file; None: the tokenizer's own
    trust_remote_code: bool = False
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


@dataclass
class QuantConfig:
    name: str = MISSING
    bnb: Optional[Dict[str, Any]] = None  # transformers.BitsAndBytesConfig arguments; None: no quantization


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
class TrainConfig:
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 256
    gradient_checkpointing: bool = False  # less memory, 25-40% slower
    logging_steps: int = 10
    eval_steps: float = 0.1  # eval loss on held-out answers: < 1 a fraction of training, >= 1 steps, 0 never
    cache_tokenized: bool = True  # reuse the tokenized dataset of an earlier run with the same data and tokenizer


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
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    seed: int = 42
    metric: str = "eval.answer_accuracy"  # what a run returns to a Hydra sweeper (Optuna optimises it)
    run_name: str = MISSING
    output_dir: Optional[str] = None  # None: Hydra's run directory


def register() -> None:
    ConfigStore.instance().store(name="ftlab_schema", node=Config)
