"""Resuming: which checkpoints are complete, what an existing run directory allows, the command that resumes."""

import json
import logging
import re
import shlex
import shutil
import struct
import sys
import zipfile
from pathlib import Path

log = logging.getLogger("ftlab")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Keys that may differ between a run and its resumption: they say how to run, not what is trained.
HOW_TO_RUN = {
    "resume",
    "overwrite",
    "output_dir",
    "wandb",
    "tracking",
    "log",
    "eval.batch_size",
    "train.keep_checkpoints",
}


def checkpoint_problem(folder: Path, allow_pickle: bool = False) -> str | None:
    """Why this checkpoint cannot be resumed from, None when it is complete. The Trainer writes the weights, then
    the optimizer, scheduler and RNG states, then trainer_state.json: a folder killed while writing lacks the
    state or has a truncated file, which the sizes and zip directories below reveal without loading anything."""
    state_file = folder / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json (killed while writing?)"
    try:
        step = json.loads(state_file.read_text())["global_step"]
    except (ValueError, KeyError) as err:
        return f"trainer_state.json is unreadable ({err})"
    if step != int(CHECKPOINT.match(folder.name)[1]):
        return f"trainer_state.json says step {step}"
    weights = sorted(folder.glob("*.safetensors"))
    pickled = [p for p in folder.glob("*.bin") if p.name != "training_args.bin"]
    if not weights and pickled and not allow_pickle:
        return f"its weights are a pickle ({pickled[0].name}), which can run code when loaded (model.allow_pickle)"
    if not weights and not pickled:
        return "no model weights"
    for path in weights:
        if why := safetensors_problem(path):
            return f"{path.name}: {why}"
    for name in ("optimizer.pt", "scheduler.pt"):
        if not zipfile.is_zipfile(folder / name):  # torch.save writes a zip; a cut one lacks its directory
            return f"{name} is missing or truncated"
    if not any(zipfile.is_zipfile(p) for p in folder.glob("rng_state*.pth")):
        return "rng_state.pth is missing or truncated"
    return None


def safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header with each tensor's byte range, then the data."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError) as err:
        return f"unreadable header ({err})"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if path.stat().st_size < 8 + length + end:
        return "truncated"
    return None


def latest_checkpoint(checkpoints: Path, allow_pickle: bool = False) -> Path | None:
    """The newest complete checkpoint; newer incomplete ones (a kill mid-write) are reported and removed, so the
    resumed run writes them afresh instead of beside leftovers."""
    found = sorted((int(m[1]), p) for p in checkpoints.glob("checkpoint-*") if (m := CHECKPOINT.match(p.name)))
    for _, folder in reversed(found):
        why = checkpoint_problem(folder, allow_pickle)
        if why is None:
            return folder
        log.warning("checkpoint %s is incomplete: %s; skipped and removed", folder, why)
        shutil.rmtree(folder, ignore_errors=True)
    return None


def config_changes(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ, as `key: old -> new`, leaving out how-to-run keys."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if name in HOW_TO_RUN:
            continue
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += config_changes(old, new, name + ".")
        elif old != new:
            changes.append(f"{name}: {old} -> {new}")
    return changes


def claim_run_dir(run_dir: Path, cfg, config_yaml: str, multirun: bool) -> tuple[str, Path | None]:
    """What to do in run_dir: ("finished", None) keeps a finished run (a resumed sweep skips it); ("start", None)
    or ("resume", checkpoint). Refuses to replace a finished run unless overwrite=true, and to resume a run with
    other settings (config drift): both errors say which key to set."""
    import yaml

    previous = _status(run_dir / "results.json")
    checkpoints = run_dir / "checkpoints"
    allow_pickle = cfg.model.allow_pickle
    if cfg.resume not in ("auto", "never"):  # an explicit checkpoint folder: the user vouches for the settings
        folder = Path(cfg.resume).expanduser()
        why = (
            checkpoint_problem(folder, allow_pickle)
            if CHECKPOINT.match(folder.name) and folder.is_dir()
            else "not a checkpoint-N folder"
        )
        if why:
            raise ValueError(f"resume={cfg.resume}: {why}")
        return "resume", folder
    saved = run_dir / "config.yaml"
    changes = (
        config_changes(yaml.safe_load(saved.read_text()) or {}, yaml.safe_load(config_yaml))
        if saved.is_file() and previous
        else []
    )
    if previous == "ok" and not cfg.overwrite:
        if multirun and not changes:
            return "finished", None
        other = f" with other settings ({'; '.join(changes[:4])})" if changes else ""
        raise ValueError(
            f"output directory {run_dir} holds a finished run{other} (results.json status ok): choose "
            "another directory, or add overwrite=true to replace it"
        )
    if cfg.overwrite or cfg.resume == "never":
        shutil.rmtree(checkpoints, ignore_errors=True)  # ftlab's own files of the replaced run
        return "start", None
    if not checkpoints.is_dir():
        return "start", None
    if changes:
        raise ValueError(
            f"output directory {run_dir} holds an unfinished run with other settings "
            f"({'; '.join(changes[:4])}): resume it with its own settings, or add resume=never "
            "to start it over"
        )
    checkpoint = latest_checkpoint(checkpoints, allow_pickle)
    return ("resume", checkpoint) if checkpoint else ("start", None)


def _status(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError):
        return None


def resume_command(cfg, hydra_cfg, run_dir: Path, multirun: bool) -> str:
    """The command that continues this run (or, for a sweep, the sweep) where it stopped."""
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("resume=")]
    if multirun:
        args = [a for a in sys.argv[1:] if a not in ("-m", "--multirun") and not a.startswith("hydra.sweep.dir=")]
        words = ["python", "-m", "ftlab", "-m", *args, f"hydra.sweep.dir={hydra_cfg.sweep.dir}"]
    else:
        words = ["python", "-m", "ftlab", *overrides] + ([] if cfg.output_dir else [f"hydra.run.dir={run_dir}"])
    return shlex.join(words)
