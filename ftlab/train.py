"""The TRL trainer of a run: its arguments, tokenized data reused across runs, a divergence guard, memory probes."""

import hashlib
import json
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

# SFTConfig fields that change what the tokenized dataset holds: part of its cache key.
DATA_ARGS = ("max_length", "packing", "packing_strategy", "padding_free", "completion_only_loss",
             "assistant_only_loss", "dataset_text_field", "eos_token", "pad_token", "eval_packing", "truncation_mode")


def sft_args(cfg: DictConfig, run_dir: Path, report_to: str, has_eval_data: bool):
    """TRL's SFTConfig from the train, optimizer and objective groups; precision follows the hardware."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    evaluating = has_eval_data and cfg.train.eval_steps > 0
    return SFTConfig(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=cfg.train.epochs,
        max_steps=cfg.train.max_steps,
        per_device_train_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        max_length=cfg.train.max_length,
        activation_checkpointing=cfg.train.gradient_checkpointing,
        optim=cfg.optimizer.optim,
        optim_args=cfg.optimizer.optim_args,
        learning_rate=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay,
        lr_scheduler_type=cfg.optimizer.scheduler,
        warmup_steps=cfg.optimizer.warmup,
        max_grad_norm=cfg.optimizer.max_grad_norm,
        use_cpu=not cuda,  # trl defaults to bf16, which fails on CPU
        bf16=cuda and cfg.model.dtype == "bfloat16",
        fp16=cuda and cfg.model.dtype == "float16",
        logging_steps=cfg.train.logging_steps,
        logging_first_step=True,
        # The held-out answers in the objective's own format: an eval-loss curve beside the training curve.
        eval_strategy="steps" if evaluating else "no",
        eval_steps=cfg.train.eval_steps if evaluating else None,
        per_device_eval_batch_size=cfg.eval.batch_size,
        include_num_input_tokens_seen="non_padding",  # tokens/s counts real tokens, not padding
        report_to=report_to,
        run_name=cfg.run_name,
        save_strategy="no",  # the trained weights are saved once, by the run script, in safetensors
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not sys.stderr.isatty(),
        **OmegaConf.to_container(cfg.objective.args),
    )


class StopOnDivergence(TrainerCallback):
    """A NaN or infinite loss fails the run at once with the step, instead of training on garbage for hours."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "eval_loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise FloatingPointError(
                    f"training diverged: {key} is {value} at step {state.global_step} "
                    f"(lower optimizer.lr, raise optimizer.warmup, or check the data)"
                )


def build_trainer(model, tokenizer, args, train_data, eval_data, peft_config, cache: bool):
    """(SFTTrainer, data record). TRL tokenizes, templates, masks and packs the data; the result is kept on disk
    under a key of everything that shapes it, so the other runs of a sweep (other strategies, seeds, learning rates)
    load it instead of preparing it again."""
    from datasets import DatasetDict, load_from_disk
    from trl import SFTTrainer

    from ftlab.tiny import cache_root

    started = time.perf_counter()
    folder = cache_root() / "datasets" / _prepared_key(tokenizer, args, train_data, eval_data)
    hit = cache and (folder / "dataset_dict.json").exists()
    if hit:
        prepared = load_from_disk(str(folder))
        train_data, eval_data = prepared["train"], prepared["eval"] if "eval" in prepared else None
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[StopOnDivergence()],
    )
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
    settings = {name: getattr(args, name, None) for name in DATA_ARGS}
    digest.update(json.dumps([trl.__version__, settings, tokenizer.chat_template], default=str).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())  # vocabulary, merges, special tokens
    for dataset in (train_data, eval_data):
        for batch in ([] if dataset is None else dataset.iter(batch_size=1000)):
            digest.update(json.dumps(batch, sort_keys=True, default=str).encode())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def _save_atomically(dataset_dict, folder: Path) -> None:
    """Saved under a temporary name and renamed: a run that dies mid-save leaves no half cache for the next."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        dataset_dict.save_to_disk(str(tmp))
        tmp.rename(folder)
    except OSError:
        pass  # another run saved the same data first, or the disk is full: the cache is an optimisation only
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
