"""The lifecycle of a run directory around the recipe (lightning-hydra-template's task_wrapper idea): claiming the
directory, resuming, skipping a combination that cannot train, results.json's status, failures and Ctrl-C, exit
codes, closing the tracker, the summary. The recipe (ftlab/recipe.py) only builds, trains, evaluates and saves.

    with run_directory(cfg) as run:
        if run.to_do:
            run.done(*recipe(cfg, run))
    return run.metric

results.json says `running` from the claim on (what a killed run leaves behind), then `skipped`, `failed` or
`interrupted` with a reason, or `ok`, written last: a run whose results say ok has every other file in place."""

import errno
import json
import logging
import math
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from ftlab.config.rules import incompatibility
from ftlab.core.console import FILE_ONLY, into_log
from ftlab.core.distributed import rank, share
from ftlab.core.files import write_atomic, write_json
from ftlab.core.secrets import hide_secrets, redact, register_secrets, secret_values
from ftlab.runs.card import write_model_card
from ftlab.runs.checkpoints import claim_run_dir, latest_checkpoint, resume_command
from ftlab.runs.records import Phases, environment, saved, summary, sweep_line, tracker_metrics, write_answers
from ftlab.runs.trackers import NoTracker, RunInfo, backend_names, start_tracker

log = logging.getLogger("ftlab")
GROUPS = ("model", "strategy", "objective", "data", "quant", "optimizer", "dist")
# Settings a preset may leave as a placeholder (`model.path: <the SFT run directory>`) for the command line to fill.
PLACEHOLDERS = ("model.path", "eval.reward_model", "objective.reward_model")
NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # a full disk, a file-size limit, a full quota


@contextmanager
def run_directory(cfg):
    """The run directory of cfg, claimed; the block runs the recipe when run.to_do (not for a finished run kept or
    a combination skipped) and hands its outcome to run.done(). Exits: an `error:` line (SystemExit 1) for bad input,
    130 after Ctrl-C; in a multirun a run that fails is recorded and logged, and the sweep goes on."""
    run = Run(cfg)
    run.claim()
    if not run.to_do:
        yield run
        return
    try:
        check_placeholders(cfg)
        yield run
    except (Exception, KeyboardInterrupt) as err:
        stop = run.failed(err)
        if stop.status == "interrupted":  # Ctrl-C stops a whole sweep, after saving this run's checkpoint
            # The console is not a file ftlab's writer sees: the command is printed with the secrets hidden.
            print(
                f"{stop.reason}\nresume with: {hide_secrets(run.results['resume_command'])}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(130) from None
        if run.multirun:
            # The other runs of the sweep go on. The report lists this one with its reason, and the sweep's report
            # callback (conf/config.yaml: hydra.callbacks) makes the sweep's exit code say that a run failed.
            log.exception("run %s failed", cfg.run_name, extra=FILE_ONLY)  # the traceback: ftlab.log
            log.error(sweep_line({**run.results, "status": stop.status, "reason": stop.reason}, run.position))
            return
        if stop.expected:
            raise SystemExit(f"error: {stop.reason}") from None
        raise  # a bug: its traceback
    run.finished()


class Run:
    """One run in its directory: what the recipe reads (dir, checkpoint, is_main, phase, start_tracker) and the
    results.json the lifecycle keeps."""

    def __init__(self, cfg):
        hydra_cfg = HydraConfig.get()
        self.cfg, self.started = cfg, time.perf_counter()
        self.dir = Path(cfg.output_dir or hydra_cfg.runtime.output_dir)
        self.multirun = hydra_cfg.mode == RunMode.MULTIRUN
        # Under accelerate/torchrun every rank runs; only rank 0 writes results, weights and tracker logs.
        self.is_main = rank() == 0
        self.overrides = list(hydra_cfg.overrides.task)
        # Runs of one sweep share a tracker group (the sweep's directory name) and carry their group choices as tags;
        # MLflow and TensorBoard keep a sweep's runs together in its directory.
        self.sweep_dir = Path(hydra_cfg.sweep.dir) if self.multirun else None
        self.position = sweep_position(hydra_cfg) if self.multirun else None
        self.group = cfg.wandb.group or (self.sweep_dir.name if self.multirun else None)
        self.tags = [f"{g}={hydra_cfg.runtime.choices.get(g)}" for g in GROUPS] + list(cfg.wandb.tags)
        # Hydra saved the composed config and the overrides (.hydra/, multirun.yaml) with its own writer.
        self.hydra_files = [
            *Path(hydra_cfg.runtime.output_dir, ".hydra").glob("*.yaml"),
            *(Path(hydra_cfg.sweep.dir).glob("multirun.yaml") if self.multirun else []),
        ]
        self.plain_cfg = OmegaConf.to_container(cfg, resolve=True)
        try:  # a mistyped tracker fails here, before the directory is claimed or anything loads
            self.trackers = backend_names(self.plain_cfg["tracking"]["backend"])
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        register_secrets(secret_values(self.plain_cfg))  # before anything is written: every writer hides them
        self.results = {
            "status": "running",  # what a crashed run (killed, out of host memory) leaves behind: the report says so
            "run_name": cfg.run_name,
            "choices": {g: hydra_cfg.runtime.choices.get(g) for g in GROUPS},
            "overrides": self.overrides,
            "seed": cfg.seed,
            "resume_command": resume_command(cfg, hydra_cfg, self.dir, self.multirun),
            "safety": {"trust_remote_code": cfg.model.trust_remote_code, "allow_pickle": cfg.model.allow_pickle},
        }
        if cfg.tune.trial is not None or cfg.tune.chosen:  # a fair-ablation run: its arm and rate (report/fair.py)
            self.results["tune"] = {"arm": cfg.tune.arm, "trial": cfg.tune.trial, "lr": float(cfg.optimizer.lr)}
        self.to_do, self.checkpoint, self.metric = False, None, None  # checkpoint: the checkpoint-N to resume from
        self.phase, self.tracker, self.environment, self.record = Phases(), NoTracker(), None, {}

    def claim(self) -> None:
        """Rank 0 decides what to do in the directory (the other ranks take its decision), so two processes never
        race over one directory: keep a finished run, refuse, skip, resume or start."""
        action, detail = "error", None  # detail: the checkpoint to resume from, or what went wrong
        try:
            if self.is_main:
                action, detail = self._claim()
        except (ValueError, OSError) as err:  # a finished run, config drift, a directory that cannot be written
            detail = (
                f"{self.dir}: cannot write ({err.strerror})" if isinstance(err, OSError) and err.strerror else str(err)
            )
        action, detail = share((action, detail))
        if action == "finished":
            log.info("%s finished earlier: kept (overwrite=true replaces it)", self.dir)
            self.metric = metric_value(json.loads((self.dir / "results.json").read_text()), self.cfg.metric)
            return
        if action == "error":
            if not self.multirun:
                raise SystemExit(f"error: {detail}") from None
            log.error("run %s not started: %s", self.cfg.run_name, detail)
            return
        if detail:
            self.checkpoint = self.results["resumed_from"] = str(detail)
            log.info("resuming from %s", detail)
        reason = incompatibility(self.cfg)
        if reason:
            self._write({"status": "skipped", "reason": reason})
            log.warning("skipped: %s", reason)
            if not self.multirun:
                raise SystemExit(f"error: {reason}")
            return  # the other runs of the sweep go on; the report lists this one with its reason
        self.to_do = True

    def _claim(self) -> tuple[str, Path | None]:
        for path in self.hydra_files:  # rewritten with the secrets hidden as quoted '***' (a bare *** is a YAML alias)
            saved = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            write_atomic(path, OmegaConf.to_yaml(redact(saved)))
        self.dir.mkdir(parents=True, exist_ok=True)
        # The resolved config beside Hydra's own (.hydra/ keeps the unresolved one and the overrides). Redacted, not
        # left to the writer: a secret key keeps a quoted '***' (YAML; the writer's bare *** would be an alias), and a
        # resumed run compares its config with this text as written.
        config_yaml = OmegaConf.to_yaml(redact(self.plain_cfg))
        # A finished run is never replaced unless asked; an unfinished one resumes only with its own settings.
        action, checkpoint = claim_run_dir(self.dir, self.cfg, config_yaml, self.multirun)
        if action != "finished":
            write_atomic(self.dir / "config.yaml", config_yaml)
            write_json(
                self.dir / "results.json",
                {**self.results, "resumed_from": str(checkpoint)} if checkpoint else self.results,
            )
        return action, checkpoint

    def start_tracker(self):
        """The run's trackers on rank 0 as tracking.backend says (a stand-in elsewhere), given the config and the
        environment the run runs in."""
        self.environment = environment(self.overrides)
        if self.is_main:
            self.tracker = start_tracker(
                self.trackers,
                {**self.plain_cfg, "environment": self.environment},
                self.cfg,
                RunInfo(self.dir, self.sweep_dir, self.cfg.run_name, self.group, self.tags),
            )
        return self.tracker

    def done(self, record: dict, answers: list) -> None:
        """What the recipe measured (records.run_record) and answered, recorded: answers.json, failures.json and the
        tracker's final numbers. Still part of the run: a failure here fails it."""
        if self.is_main:
            record["saved"] = saved(self.dir / "model")
            write_answers(self.dir, answers, self.cfg.eval.num_failures)
            with into_log():
                record |= self.tracker.finish(tracker_metrics(record), answers)
        self.record = record

    def finished(self) -> None:
        self.results |= {**self.record, "status": "ok", "wall_s": time.perf_counter() - self.started}
        self.metric = metric_value(self.results, self.cfg.metric)
        if not self.is_main:
            return
        try:  # README.md, the Hugging Face model card, in place before results.json says ok
            write_model_card(self.dir, self.results)
        except Exception as err:  # documentation: it never turns a finished run into a failed one
            log.warning("model card not written: %s", err)
        write_json(self.dir / "results.json", self.results)  # last: everything else is in place
        if not self.cfg.train.keep_checkpoints:
            shutil.rmtree(self.dir / "checkpoints", ignore_errors=True)  # model/ holds the result
        if self.multirun:  # a line per run; the report sums the sweep up at its end
            log.info(summary(self.results, self.dir), extra=FILE_ONLY)
            log.info(sweep_line(self.results, self.position))
        else:
            print(summary(self.results, self.dir), flush=True)

    def failed(self, err: BaseException) -> "Failure":
        with into_log():
            self.tracker.fail()
        stop = failure(self.cfg, err, self.dir)
        try:
            self._write({"status": stop.status, "reason": stop.reason, "wall_s": time.perf_counter() - self.started})
        except OSError as write_err:  # a full disk: results.json keeps saying "running", never "ok"
            log.error("could not record the failure in %s: %s", self.dir / "results.json", write_err)
        return stop

    def _write(self, outcome: dict) -> None:
        if self.is_main:
            write_json(self.dir / "results.json", {**self.results, **outcome})


def sweep_position(hydra_cfg) -> str:
    """'3/12': a run's place in its sweep. The total is the product of the swept values, the sweep preset's
    (hydra.sweeper.params) under the command line's, for Hydra's basic sweeper; other sweepers get the number alone."""
    number = str(hydra_cfg.job.num + 1)
    if not str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return number
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        given = OmegaConf.load(Path(hydra_cfg.sweep.dir) / "multirun.yaml").hydra.overrides.task
    except Exception:  # an unreadable multirun.yaml: the number alone
        return number
    parser, counts = OverridesParser.create(), {}
    for text in [*(f"{k}={v}" for k, v in (hydra_cfg.sweeper.get("params") or {}).items()), *given]:
        try:  # one by one: a value ftlab hid (token=***) is no override syntax, and no sweep either
            (override,) = parser.parse_overrides([text])
        except Exception:
            continue
        counts[override.key_or_group] = (
            len(list(override.sweep_string_iterator())) if override.is_sweep_override() else 1
        )
    return f"{number}/{math.prod(counts.values())}"


def check_placeholders(cfg) -> None:
    """A preset's placeholder (`model.path: <the SFT run directory>`) must be replaced on the command line: said
    before the heavy imports, in a second."""
    for key in PLACEHOLDERS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
            raise ValueError(f"{key}: this preset needs {value[1:-1]}: add {key}=DIR to the command")


class Failure(NamedTuple):
    status: str  # failed | interrupted
    reason: str  # one line, what results.json and the `error:` line say
    expected: bool  # bad input, a missing file, divergence, no memory, no disk space: no traceback, which says "bug"


def failure(cfg, err: BaseException, run_dir: Path) -> Failure:
    """Why a run stopped, by the type of what stopped it: interrupted (a resumable checkpoint was saved) or failed,
    with what to change for running out of memory or disk, and the last good checkpoint after divergence."""
    from ftlab.train.guards import Interrupted, memory_advice, out_of_memory

    if isinstance(err, (Interrupted, KeyboardInterrupt)):
        return Failure("interrupted", str(err) or "interrupted (no checkpoint saved since the last one)", True)
    if out_of_memory(err):
        return Failure("failed", memory_advice(cfg, err), True)
    if os_errno(err) in NO_SPACE:
        return Failure(
            "failed",
            f"no space left to write ({str(err).strip().splitlines()[0][:200]}): free disk space "
            "or choose another output_dir; the same command then resumes from the last complete checkpoint",
            True,
        )
    if isinstance(err, FloatingPointError):  # divergence (train/guards.py)
        last = latest_checkpoint(run_dir / "checkpoints", cfg.model.allow_pickle)
        return Failure(
            "failed",
            f"{err}; " + (f"last good checkpoint: {last}" if last else "no checkpoint was saved before it"),
            True,
        )
    if isinstance(err, (ValueError, OSError)):  # bad input (data.load.DataError is a ValueError), a missing file
        return Failure("failed", str(err), True)
    return Failure("failed", f"{type(err).__name__}: {err}", False)


def os_errno(err: BaseException) -> int | None:
    """The OS error number behind a failed write: an OSError's own, or the one that safetensors' writer (Rust, whose
    SafetensorError keeps no errno) reports in its message as "(os error 28)"."""
    from safetensors import SafetensorError

    if isinstance(err, OSError):
        return err.errno
    found = re.search(r"\(os error (\d+)\)", str(err)) if isinstance(err, SafetensorError) else None
    return int(found[1]) if found else None


def metric_value(results: dict, dotted: str) -> float | None:
    """results' value at a dotted key (cfg.metric, eval.answer_accuracy by default), None where there is none."""
    value = results
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
