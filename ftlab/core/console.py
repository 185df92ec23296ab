"""What a run shows on the terminal: ftlab's own lines (a line per phase, its warnings, the summary), errors, and one
live progress bar at a time; everything else (libraries' warnings and notices, their progress bars, the trainer's
raw logs) goes to the run's ftlab.log only. log.verbose=true (`ftlab train --verbose`) shows it all again.

A terminal gets a redrawn bar (tqdm); a pipe or a file (CI, SLURM logs) gets a plain line now and then instead."""

import contextlib
import io
import logging
import os
import sys

FILE_ONLY = {"file_only": True}  # log.info(..., extra=FILE_ONLY): into ftlab.log, never onto the terminal
_verbose = False


class Quiet(logging.Filter):
    """The terminal handler's filter (Hydra's job_logging in conf/config.yaml): ftlab's records and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _verbose:
            return True
        if getattr(record, "file_only", False):
            return False
        return record.levelno >= logging.ERROR or record.name == "ftlab" or record.name.startswith("ftlab.")


class Lines(logging.Formatter):
    """ftlab's lines as they are; a warning or an error says so first."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


def configure(verbose: bool) -> None:
    """At a run's start (log.verbose): Python warnings into logging, so into ftlab.log and not onto the terminal;
    datasets' progress bars off; MLflow's loggers left to the run's logging config, not given a handler of theirs."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    logging.captureWarnings(True)
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"  # every library's tqdm bar (lm-eval's, the converter's); ftlab's say disable=False
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")


def silence_noisy_loggers() -> None:
    """peft imports torchao, which warns about CUDA kernels it cannot load on a CPU machine, and torch's pytree about
    torchao's enums, through torch's own log handler: noise, not news, even in ftlab.log."""
    for noisy in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def quiet_command() -> None:
    """A command outside a run (python -m ftlab.export): the terminal gets ftlab's lines and errors only."""
    configure(verbose=False)
    silence_noisy_loggers()
    handler = logging.StreamHandler()
    handler.addFilter(Quiet())
    handler.setFormatter(Lines("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def quiet_libraries() -> None:
    """Once transformers is imported: its records go through the run's handlers (the terminal's filter) rather than
    its own, and its progress bars (weight loading) are off."""
    if _verbose:
        return
    import transformers

    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.disable_progress_bar()


class _LogWriter(io.TextIOBase):
    def write(self, text: str) -> int:
        if text.strip():
            logging.getLogger("ftlab.libraries").info(text.rstrip(), extra=FILE_ONLY)
        return len(text)


def into_log():
    """A block whose prints (a library's own notices, trackio's) go into ftlab.log, not onto the terminal."""
    return contextlib.nullcontext() if _verbose else contextlib.redirect_stdout(_LogWriter())


def verbose() -> bool:
    return _verbose


def live() -> bool:
    """A redrawn bar: the terminal is a terminal and the run is not verbose (whose raw logs would tear it)."""
    return sys.stderr.isatty() and not _verbose


def progress(iterable, total: int, desc: str):
    """iterable, with a bar on a terminal."""
    if not live():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=False)
