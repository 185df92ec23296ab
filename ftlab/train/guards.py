"""Trainer callbacks that guard a run (divergence, Ctrl-C/SIGTERM to a checkpoint, no secrets in checkpoints) and
the advice for a run out of memory."""

import copy
import dataclasses
import logging
import math
import signal
from pathlib import Path

from omegaconf import DictConfig
from transformers import TrainerCallback

log = logging.getLogger("ftlab")
DIVERGED_ADVICE = "lower optimizer.lr, raise optimizer.warmup, or check the data"


class StopOnDivergence(TrainerCallback):
    """A NaN or infinite gradient fails the run before the optimizer applies it (the weights and the checkpoints
    stay finite), and so does a non-finite logged loss, instead of training on garbage for hours."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        import torch

        if args.fp16:  # fp16's loss scaler expects overflows: it skips those steps and lowers the scale itself
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        # One multi-tensor norm for all gradients, then one check and one device sync: a NaN or infinity anywhere makes
        # its tensor's norm non-finite (as would a gradient of 1e19, divergence all the same). 12x cheaper on the tiny
        # model than a check per tensor, which cost 2.5% of its training step (benchmarks/README.md).
        if grads and not bool(torch.stack(torch._foreach_norm(grads)).isfinite().all()):
            raise FloatingPointError(
                f"training diverged: a gradient is NaN or infinite at step {state.global_step + 1}"
                f" (not applied; {DIVERGED_ADVICE})"
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "eval_loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise FloatingPointError(
                    f"training diverged: {key} is {value} at step {state.global_step} ({DIVERGED_ADVICE})"
                )


def out_of_memory(err: BaseException) -> bool:
    """CUDA's allocator raises its own type; PyTorch's CPU allocator has none (a RuntimeError saying "can't allocate
    memory"), nor do some CUDA kernels ("out of memory" in a RuntimeError): for those the message is all there is."""
    import torch

    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(err, RuntimeError) and any(s in str(err) for s in ("out of memory", "can't allocate memory"))
    )


def memory_advice(cfg: DictConfig, err: BaseException) -> str:
    """What to change when a run runs out of memory, from the settings it ran with."""
    t = cfg.train
    tips = []
    if t.batch_size > 1:
        tips.append(f"train.batch_size={t.batch_size // 2} train.grad_accum={t.grad_accum * 2} (same effective batch)")
    if not t.gradient_checkpointing:
        tips.append("train.gradient_checkpointing=true")
    if t.max_length > 128:
        tips.append(f"train.max_length={t.max_length // 2}")
    if cfg.quant.method != "bnb":  # a strategy that trains the base, or needs a float one, cannot train on 4-bit
        needs_peft = cfg.strategy.trains_base or cfg.strategy.float_base
        tips.append("quant=4bit" + (" with strategy=lora" if needs_peft else ""))
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"out of memory ({first_line[:160]}); to use less, try: {', '.join(tips) or 'a smaller model'}"


class Interrupted(Exception):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint: the run resumes from it."""


class StopOnSignal(TrainerCallback):
    """Ctrl-C (SIGINT) or SIGTERM (what SLURM sends before the time limit) while training: finish the step, save a
    checkpoint and stop, so the run resumes from there; trainer.train() then raises Interrupted instead of returning
    as if training had finished. A second Ctrl-C stops at once."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def on_train_end(self, args, state, control, **kwargs):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.received is not None:  # the Trainer saved the checkpoint at this step before ending
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            raise Interrupted(f"{self.received} at step {state.global_step}: checkpoint saved in {checkpoint}")

    def _handle(self, signum, frame):
        if self.received is not None:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        log.warning(
            "%s: saving a checkpoint at the end of this step, then stopping (again: stop at once)", self.received
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True
        return control


class HideSecretsInCheckpoints(TrainerCallback):
    """The Trainer pickles its arguments into each checkpoint (training_args.bin), hub_token included, with its own
    writer (torch.save), which ftlab's secrets policy does not see: rewrite it with every token/key/password field
    emptied."""

    def on_save(self, args, state, control, **kwargs):
        import torch

        from ftlab.core.secrets import SECRET_KEY

        secret = [f.name for f in dataclasses.fields(args) if SECRET_KEY.search(f.name) and getattr(args, f.name)]
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / "training_args.bin"
        if secret and path.is_file() and args.should_save:
            hidden = copy.copy(args)
            for name in secret:
                object.__setattr__(hidden, name, None)
            torch.save(hidden, path)
