"""The TRL trainer of a run: its arguments, its guards, tokenized data reused across runs, memory probes."""

import dataclasses
import hashlib
import importlib
import json
import resource
import sys
import time
from importlib.util import find_spec
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# objective.trainer -> TRL's trainer and config classes (module, trainer, config). PPO left TRL in 1.13: online RL is
# GRPO (the default of objective=rlhf) or RLOO; a PPO trainer, should one return, is one more line here.
TRAINERS = {
    "sft": ("trl", "SFTTrainer", "SFTConfig"),
    "reward": ("trl", "RewardTrainer", "RewardConfig"),
    "dpo": ("trl", "DPOTrainer", "DPOConfig"),
    "kto": ("trl", "KTOTrainer", "KTOConfig"),
    "orpo": ("trl.experimental.orpo", "ORPOTrainer", "ORPOConfig"),
    "grpo": ("trl", "GRPOTrainer", "GRPOConfig"),
    "rloo": ("trl", "RLOOTrainer", "RLOOConfig"),
}
ONLINE = ("grpo", "rloo")  # the policy generates; reward functions score


def trl_classes(name: str) -> tuple:
    if name not in TRAINERS:
        raise ValueError(f"objective.trainer: expected one of {', '.join(TRAINERS)}, got {name!r}")
    module, trainer, config = TRAINERS[name]
    loaded = importlib.import_module(module)
    return getattr(loaded, trainer), getattr(loaded, config)


# SFTConfig fields that change what the tokenized dataset holds: part of its cache key.
DATA_ARGS = (
    "max_length",
    "packing",
    "packing_strategy",
    "padding_free",
    "completion_only_loss",
    "assistant_only_loss",
    "dataset_text_field",
    "eos_token",
    "pad_token",
    "eval_packing",
    "truncation_mode",
)


def trainer_args(
    cfg: DictConfig, run_dir: Path, report_to: str | list, has_eval_data: bool, checkpoints: bool = True, model=None
):
    """The objective's TRL config (SFTConfig, DPOConfig, ...) from the train, optimizer, objective and dist groups;
    precision, kernels and memory savers follow the hardware and the model (performance() records what was used)."""
    import torch

    from ftlab.config.hardware import attention_name, dtype_name
    from ftlab.train.speedups import labelled_logits_only

    _, config_class = trl_classes(cfg.objective.trainer)
    fields = {f.name for f in dataclasses.fields(config_class)}
    cuda = torch.cuda.is_available()
    dtype, attention, t = dtype_name(cfg.model), attention_name(cfg.model), cfg.train
    big = model is not None and sum(p.numel() for p in model.parameters()) > 1e9
    # auto settings: each one on where it helps. Gradient checkpointing trades 25-40% speed for activation memory,
    # which only large models need; packing suits raw text (documents cut to fill rows), while for question/answer
    # pairs it changes how many examples a step sees (opt in); padding-free batches need flash attention's
    # variable-length kernels (SDPA would attend across the whole flattened batch); Liger kernels exist on CUDA only;
    # fused AdamW (one kernel for all parameters) runs on CUDA and CPU alike.
    auto = {
        "activation_checkpointing": big and cfg.strategy.allows_gradient_checkpointing
        if t.gradient_checkpointing is None
        else t.gradient_checkpointing,
        "packing": cfg.objective.data_format == "text" if t.packing is None else t.packing,
        "padding_free": attention.startswith("flash") if t.padding_free is None else t.padding_free,
        "use_liger_kernel": cuda and find_spec("liger_kernel") is not None if t.liger is None else t.liger,
        "optim": "adamw_torch_fused" if cfg.optimizer.optim == "adamw_torch" else cfg.optimizer.optim,
    }
    labelled_logits_only(t.labelled_logits_only)  # not a TRL argument: the CPU path of TRL's fused LM head
    evaluating = has_eval_data and cfg.train.eval_steps > 0
    common = dict(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=cfg.train.epochs,
        max_steps=cfg.train.max_steps,
        per_device_train_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        max_length=cfg.train.max_length,
        **auto,
        optim_args=cfg.optimizer.optim_args,
        learning_rate=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay,
        lr_scheduler_type=cfg.optimizer.scheduler,
        warmup_steps=cfg.optimizer.warmup,
        max_grad_norm=cfg.optimizer.max_grad_norm,
        use_cpu=not cuda,  # trl defaults to bf16, which fails on CPU
        bf16=cuda and dtype == "bfloat16",
        fp16=cuda and dtype == "float16",
        logging_steps=cfg.train.logging_steps,
        logging_first_step=True,
        # The held-out answers in the objective's own format: an eval-loss curve beside the training curve.
        eval_strategy="steps" if evaluating else "no",
        eval_steps=cfg.train.eval_steps if evaluating else None,
        per_device_eval_batch_size=cfg.eval.batch_size,
        include_num_input_tokens_seen="non_padding",  # tokens/s counts real tokens, not padding
        report_to=report_to,  # the run's trackers (runs/trackers/): their transformers callbacks log the curves
        run_name=cfg.run_name,
        project=cfg.wandb.project,  # the trackio project its callback logs into: named as the W&B project
        # Resumable checkpoints (weights in safetensors, optimizer, scheduler, RNG states, data position); the
        # result itself is saved by the run script into model/.
        save_strategy="steps" if checkpoints and cfg.train.save_steps > 0 else "no",
        save_steps=cfg.train.save_steps if cfg.train.save_steps > 0 else 500,
        save_total_limit=cfg.train.save_total_limit,
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN, not replaced by the running mean
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not sys.stderr.isatty(),
    )
    if cfg.objective.reference == "precompute":
        common["precompute_ref_log_probs"] = True  # no reference model in memory while training
    if "max_length" not in fields:
        del common["max_length"]  # online RL bounds prompt and completion lengths in objective.args instead
    if "packing" not in fields:  # only SFT-style trainers pack (several examples per row, TRL's bfd packing)
        if common.pop("packing"):
            raise ValueError(f"train.packing: objective={cfg.objective.name} cannot pack examples (only sft-style do)")
    if "padding_free" not in fields:
        del common["padding_free"]
    try:
        return config_class(
            **common,
            **OmegaConf.to_container(cfg.dist.args, resolve=True),
            **OmegaConf.to_container(cfg.objective.args, resolve=True),
        )
    except TypeError as err:  # a key the TRL config does not have
        raise ValueError(f"objective.args: {err}") from None


def performance(args, model) -> dict:
    """What a run's speed and memory depend on, as the trainer used it: results.json's `performance`."""
    from ftlab.train.speedups import lm_head_positions

    precision = "bf16 mixed" if args.bf16 else "fp16 mixed" if args.fp16 else "fp32"
    return {
        "precision": precision,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "attention": model.config._attn_implementation,
        "gradient_checkpointing": args.activation_checkpointing,
        "packing": getattr(args, "packing", False),
        "padding_free": getattr(args, "padding_free", False),  # packed rows stay rows (block-diagonal) when false
        "optimizer": args.optim.value,
        "liger_kernel": args.use_liger_kernel,
        "lm_head_positions": lm_head_positions(next(model.parameters()).device),  # labelled: answer tokens only
        "batch_size": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
    }


def reference_model(cfg: DictConfig, trainer_name: str) -> str | None:
    """What DPO/KTO/ORPO compare the policy with: recorded, since it decides memory and results."""
    if trainer_name not in ("dpo", "kto"):
        return None
    if cfg.objective.reference == "precompute":
        return "log-probabilities of the starting model, computed once before training"
    if cfg.strategy.kind == "peft":
        return "the policy with its adapter disabled (no second model in memory)"
    return "a frozen copy of the starting model"


def reward_functions(objective_cfg) -> tuple:
    """(functions, tokenizers) for online RL: the callables named in objective.reward_funcs, then the reward model
    of objective.reward_model (an objective=reward run), scored with its own tokenizer."""
    from hydra.utils import get_method

    functions, tokenizers = [], []
    for name in objective_cfg.reward_funcs:
        try:
            functions.append(get_method(name))
        except Exception as err:
            raise ValueError(f"objective.reward_funcs: cannot import {name} ({err})") from None
        tokenizers.append(None)
    if objective_cfg.reward_model:
        from ftlab.model.source import load_reward_model

        model, tokenizer = load_reward_model(objective_cfg.reward_model)
        functions.append(model)
        tokenizers.append(tokenizer)
    if not functions:
        raise ValueError("objective.reward_model / objective.reward_funcs: online RL needs at least one reward")
    return functions, tokenizers


def callbacks() -> list:
    """The guards every trainer carries: divergence, Ctrl-C/SIGTERM to a checkpoint, no secrets in checkpoints."""
    from ftlab.train.guards import HideSecretsInCheckpoints, StopOnDivergence, StopOnSignal

    return [StopOnDivergence(), StopOnSignal(), HideSecretsInCheckpoints()]


def build_trainer(name: str, model, tokenizer, args, train_data, eval_data, peft_config, cache: bool, rewards=None):
    """(TRL trainer, data record). TRL tokenizes, templates, masks and packs the data; for SFT the result is kept on
    disk under a key of everything that shapes it, so the other runs of a sweep (other strategies, seeds, learning
    rates) load it instead of preparing it again. rewards: (functions, tokenizers) for online RL."""
    from datasets import DatasetDict, load_from_disk

    from ftlab.core.console import verbose
    from ftlab.core.files import cache_root
    from ftlab.train.progress import use_ftlab_progress
    from ftlab.train.speedups import packed_rows_collator

    trainer_class, _ = trl_classes(name)
    started = time.perf_counter()
    extra = {"reward_funcs": rewards[0], "reward_processing_classes": rewards[1]} if name in ONLINE else {}
    cache = cache and name == "sft"  # the other trainers prepare little, or (online RL) generate their data
    folder = cache_root() / "datasets" / _prepared_key(tokenizer, args, train_data, eval_data) if cache else None
    hit = cache and (folder / "dataset_dict.json").exists()
    if hit:
        prepared = load_from_disk(str(folder))
        train_data, eval_data = prepared["train"], prepared["eval"] if "eval" in prepared else None
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks(),
        **extra,
    )
    if not verbose():  # one bar (or a line a quarter) instead of transformers' bar and its raw dict lines
        use_ftlab_progress(trainer)
    if name == "reward":
        # TRL casts a quantized model's trainable weights to bf16 (QLoRA's recipe); for the score head, a plain
        # Linear fed by the float hidden states, that breaks the forward: keep it in the body's dtype.
        dtype = trainer.model.get_input_embeddings().weight.dtype
        for param_name, param in trainer.model.named_parameters():
            if "score" in param_name and param.requires_grad:
                param.data = param.data.to(dtype)
    if name == "sft" and args.packing and not args.padding_free:
        # TRL flattens packed batches into one row for flash attention's variable-length kernels; SDPA and eager
        # would attend to that row as a whole (measured 2x slower than not packing on CPU), so the rows stay rows.
        trainer.data_collator = packed_rows_collator(tokenizer.pad_token_id)
    if cache and not hit:
        splits = {"train": trainer.train_dataset}
        if trainer.eval_dataset is not None:
            splits["eval"] = trainer.eval_dataset
        _save_atomically(DatasetDict(splits), folder)
    record = {"cache": "hit" if hit else ("miss" if cache else "off"), "trainer_setup_s": time.perf_counter() - started}
    return trainer, record


def _prepared_key(tokenizer, args, train_data, eval_data) -> str:
    import trl

    digest = hashlib.sha256()
    settings = {name: getattr(args, name) for name in DATA_ARGS}
    digest.update(json.dumps([trl.__version__, settings, tokenizer.chat_template], default=str).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())  # vocabulary, merges, special tokens
    for dataset in (train_data, eval_data):
        for batch in [] if dataset is None else dataset.iter(batch_size=1000):
            digest.update(json.dumps(batch, sort_keys=True, default=str).encode())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def _save_atomically(dataset_dict, folder: Path) -> None:
    """Saved under a temporary name and renamed: a run that dies mid-save leaves no half cache for the next."""
    from ftlab.core.files import atomic_dir

    try:
        with atomic_dir(folder) as tmp:
            dataset_dict.save_to_disk(str(tmp))
    except OSError:
        pass  # another run saved the same data first, or the disk is full: the cache is an optimisation only


def loss_history(log_history: list) -> dict:
    """Training and eval loss against the step, for the report's curves."""
    return {
        "train": [[e["step"], e["loss"]] for e in log_history if "loss" in e],
        "eval": [[e["step"], e["eval_loss"]] for e in log_history if "eval_loss" in e],
    }


def reset_peak_memory() -> None:
    """Start a new peak: per phase, and per run when a multirun shares one process."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux: resets the process's peak resident memory
        except OSError:
            pass


def peak_memory_mb() -> float:
    """CUDA: peak allocated on the GPU; CPU: peak resident memory of this process since the last reset."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # lifetime peak elsewhere
