"""The typed config schema: a wrong type or an unknown key fails at composition. Types only: every value, and the
comment that says what it does, lives in conf/ (conf/config.yaml; conf/<group>.yaml for what every option of a
group shares, conf/<group>/*.yaml for each option). `| None` marks the settings that may be null."""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TinyConfig:
    vocab_size: int = MISSING
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    num_layers: int = MISSING
    num_heads: int = MISSING
    num_kv_heads: int = MISSING
    max_position: int = MISSING
    pretrain_steps: int = MISSING
    seed: int = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    path: str = MISSING
    dtype: str = MISSING
    attn_implementation: str = MISSING
    target_modules: list[str] = MISSING
    feedforward_modules: list[str] = MISSING
    chat_template: str | None = MISSING
    trust_remote_code: bool = MISSING
    allow_pickle: bool = MISSING
    revision: str | None = MISSING
    tiny: TinyConfig | None = MISSING


@dataclass
class AdapterConfig:
    bottleneck: int = MISSING
    placement: str = MISSING
    activation: str = MISSING
    dropout: float = MISSING


@dataclass
class StrategyConfig:
    name: str = MISSING
    kind: str = MISSING
    lr: float = MISSING
    lr_range: list[float] = MISSING  # [low, high]: what sweep=fair_ablation searches, log-spaced
    # Facts the rules (ftlab/config/rules.py) and the run read, declared by every strategy (conf/strategy.yaml).
    trains_base: bool = MISSING
    float_base: bool = MISSING
    mergeable: bool = MISSING
    virtual_tokens: bool = MISSING
    reward_head: bool = MISSING
    allows_gradient_checkpointing: bool = MISSING
    # The settings of its kind; null for the other kinds.
    peft: dict[str, Any] | None = MISSING
    train_last_blocks: int | None = MISSING
    adapter: AdapterConfig | None = MISSING


@dataclass
class ObjectiveConfig:
    name: str = MISSING
    trainer: str = MISSING
    data_format: str = MISSING
    head: str = MISSING
    eval_pairs: bool = MISSING
    args: dict[str, Any] = MISSING
    reference: str = MISSING
    reward_model: str | None = MISSING
    reward_funcs: list[str] = MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    train: dict[str, str | None] = MISSING
    eval: str | None = MISSING
    eval_pairs: str | None = MISSING
    columns: Any = MISSING  # a mapping or null
    system_prompt: str | None = MISSING
    max_train_examples: int | None = MISSING
    format: str = MISSING
    on_error: str = MISSING
    dedupe: str = MISSING
    min_tokens: int = MISSING
    max_tokens: int | None = MISSING
    validation_split: float = MISSING
    leakage: str = MISSING
    retention: str | None = MISSING


@dataclass
class IntSchemeConfig:
    """quant.qat and quant.ptq: the torchao scheme that QAT trains against, or PTQ applies after training."""

    scheme: str = MISSING
    group_size: int = MISSING


@dataclass
class SparsityConfig:
    pattern: str = MISSING
    method: str = MISSING
    level: float = MISSING
    calibration_examples: int = MISSING


@dataclass
class QuantConfig:
    name: str = MISSING
    method: str = MISSING  # none | bnb | qat | ptq | sparsity: its settings are the node of that name
    bnb: dict[str, Any] | None = MISSING
    qat: IntSchemeConfig | None = MISSING
    ptq: IntSchemeConfig | None = MISSING
    sparsity: SparsityConfig | None = MISSING


@dataclass
class OptimizerConfig:
    name: str = MISSING
    optim: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    scheduler: str = MISSING
    warmup: float = MISSING
    max_grad_norm: float = MISSING
    optim_args: str | None = MISSING


@dataclass
class DistConfig:
    name: str = MISSING
    args: dict[str, Any] = MISSING


@dataclass
class TrainConfig:
    epochs: float = MISSING
    max_steps: int = MISSING
    batch_size: int = MISSING
    grad_accum: int = MISSING
    max_length: int = MISSING
    gradient_checkpointing: bool | None = MISSING
    packing: bool | None = MISSING
    padding_free: bool | None = MISSING
    liger: bool | None = MISSING
    labelled_logits_only: bool = MISSING
    logging_steps: int = MISSING
    eval_steps: float = MISSING
    cache_tokenized: bool = MISSING
    save_steps: int = MISSING
    save_total_limit: int = MISSING
    keep_checkpoints: bool = MISSING


@dataclass
class HarnessConfig:
    tasks: list[str] = MISSING
    include_path: str | None = MISSING
    limit: int | None = MISSING
    num_fewshot: int | None = MISSING
    batch_size: int = MISSING
    chat_template: bool = MISSING
    bootstrap_iters: int = MISSING
    metric: str = MISSING


@dataclass
class EvalConfig:
    max_new_tokens: int = MISSING
    batch_size: int = MISSING
    max_questions: int | None = MISSING
    num_failures: int = MISSING
    sample_question: str = MISSING
    reward_model: str | None = MISSING
    harness: HarnessConfig = MISSING


@dataclass
class TuneConfig:
    trials: int = MISSING
    trial: int | None = MISSING
    seeds: int = MISSING
    arm: str = MISSING
    chosen: dict[str, float] = MISSING


@dataclass
class MlflowConfig:
    uri: str | None = MISSING


@dataclass
class TrackingConfig:
    backend: Any = MISSING  # a name or a list of names (runs/trackers/ checks them)
    mlflow: MlflowConfig = MISSING


@dataclass
class LogConfig:
    verbose: bool = MISSING


@dataclass
class WandbConfig:
    mode: str = MISSING
    project: str = MISSING
    entity: str | None = MISSING
    group: str | None = MISSING
    tags: list[str] = MISSING


@dataclass
class Config:
    model: ModelConfig = MISSING
    strategy: StrategyConfig = MISSING
    objective: ObjectiveConfig = MISSING
    data: DataConfig = MISSING
    quant: QuantConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    dist: DistConfig = MISSING
    train: TrainConfig = MISSING
    eval: EvalConfig = MISSING
    tune: TuneConfig = MISSING
    tracking: TrackingConfig = MISSING
    wandb: WandbConfig = MISSING
    log: LogConfig = MISSING
    seed: int = MISSING
    metric: str = MISSING
    run_name: str = MISSING
    output_dir: str | None = MISSING
    resume: str = MISSING
    overwrite: bool = MISSING


def register() -> None:
    from omegaconf import OmegaConf

    from ftlab.config.hardware import resolve_dtype
    from ftlab.config.tuning import tuned_lr
    from ftlab.core.distributed import start_time

    ConfigStore.instance().store(name="ftlab_schema", node=Config)
    OmegaConf.register_new_resolver("start_time", start_time, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("dtype", resolve_dtype, replace=True)
    OmegaConf.register_new_resolver("tuned_lr", tuned_lr, replace=True)
