"""Training progress as ftlab shows it, in place of transformers' bar and its raw dict lines: one bar with step, loss,
learning rate, tokens/s and ETA on a terminal (tqdm), a plain line at every quarter of the steps elsewhere; every log
the Trainer makes goes into ftlab.log."""

import logging
import time

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from ftlab.core.console import FILE_ONLY, live

log = logging.getLogger("ftlab")


class Progress(TrainerCallback):
    def __init__(self):
        self.bar, self.started, self.shown, self.last = None, None, 0, {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        if live():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc="train", unit="step", leave=False, disable=False
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if k != "total_flos"}
        log.info("step %d: %s", state.global_step, logs, extra=FILE_ONLY)
        self.last |= {k: v for k, v in logs.items() if k in ("loss", "learning_rate", "eval_loss")}
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        tokens = getattr(state, "num_input_tokens_seen", 0) or 0
        shown = {
            **{k.replace("learning_rate", "lr"): f"{v:.3g}" for k, v in self.last.items()},
            **({"tokens/s": f"{tokens / elapsed:.0f}"} if tokens and elapsed else {}),
        }
        if self.bar:
            self.bar.set_postfix(shown, refresh=False)
        elif state.max_steps and state.global_step * 4 // state.max_steps > self.shown:
            self.shown = state.global_step * 4 // state.max_steps
            left = elapsed / max(state.global_step, 1) * (state.max_steps - state.global_step)
            fields = " ".join(f"{k} {v}" for k, v in shown.items())
            log.info("train: step %d/%d %s, %.0f s left", state.global_step, state.max_steps, fields, left)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar:
            self.bar.update(state.global_step - self.bar.n)
            self.bar.refresh()  # the last step drawn (tqdm skips redraws within 0.1 s), then the bar gives way
            self.bar.close()


def use_ftlab_progress(trainer) -> None:
    """The trainer reports through Progress instead of transformers' bar (ProgressCallback) or, without a bar, its
    raw dict lines (PrinterCallback)."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(Progress())
