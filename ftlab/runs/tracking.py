"""The experiment tracker of a run (W&B): set up so it never prompts or hangs, fed, and closed; a stand-in that does
nothing where there is none (W&B disabled, ranks other than 0), so callers never ask which they hold."""

import netrc
import os
import sys
from pathlib import Path

from ftlab.core.secrets import hide_secrets, redact


def wandb_mode(requested: str) -> str:
    """auto: online only when credentials exist (a run must never prompt for a key or wait ~100 s for a network
    that is not there); offline writes the run under wandb/ for a later `wandb sync`."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    return "online" if logged_in else "offline"


class NoTracker:
    """What a run logs to when nothing tracks it."""

    report_to = "none"  # the Trainer's report_to

    def finish(self, metrics: dict, answers: list) -> dict:
        return {}

    def fail(self) -> None:
        pass


class Tracker(NoTracker):
    """A W&B run: transformers' WandbCallback logs the training curves into it (report_to), finish() the final
    numbers and answers."""

    report_to = "wandb"

    def __init__(self, wandb_run, group: str | None):
        self.wandb_run, self.group = wandb_run, group

    def finish(self, metrics: dict, answers: list) -> dict:
        """Final numbers into the run's summary (what W&B's tables and parallel-coordinates views compare across a
        sweep) and the base-vs-tuned answers as a table; returns what results.json records of the W&B run (`wandb`)."""
        import wandb

        run = self.wandb_run
        run.summary.update(metrics)
        columns = ["question", "expected", "base_answer", "tuned_answer", "tuned_correct"]
        rows = [
            [a["question"], ", ".join(a["expected"]), a["base_answer"], a["tuned_answer"], a["tuned_correct"]]
            for a in answers
        ]
        run.log({"eval/answers": wandb.Table(columns=columns, data=rows), **metrics})
        record = {"mode": run.settings.mode, "dir": str(Path(run.dir).parent), "group": self.group, "id": run.id}
        run.finish()
        return {"wandb": record}

    def fail(self) -> None:
        """A run that failed mid-way closes its W&B run as failed, so the next run of a sweep starts a fresh one."""
        self.wandb_run.finish(exit_code=1)


def start_tracker(cfg_dict: dict, wandb_cfg, run_dir: Path, run_name: str, group: str | None, tags: list) -> NoTracker:
    """The run's tracker: W&B as wandb.mode says, or the stand-in when it is disabled."""
    mode = wandb_mode(wandb_cfg.mode)  # passed to wandb.init, not to the environment: each run of a sweep decides
    if mode == "disabled":
        return NoTracker()
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    # W&B writes its own files, which ftlab's writer does not see: the config and the command it records are
    # handed over with the secrets hidden.
    argv, sys.argv = sys.argv, [hide_secrets(arg) for arg in sys.argv]
    try:
        run = wandb.init(
            project=wandb_cfg.project,
            entity=wandb_cfg.entity,
            name=run_name,
            group=group,
            tags=tags,
            config=redact(cfg_dict),
            dir=str(run_dir),
            mode=mode,
            settings=wandb.Settings(console="off", init_timeout=30),
        )
    finally:
        sys.argv = argv
    return Tracker(run, group)
