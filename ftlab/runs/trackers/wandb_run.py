"""W&B (tracking.backend=wandb, the default): online only with credentials, never a prompt or a hang."""

import netrc
import os
import sys
from pathlib import Path

from ftlab.core.secrets import hide_secrets, redact
from ftlab.runs.trackers.base import ANSWER_COLUMNS, NoTracker, RunInfo, answer_rows


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


class WandbTracker(NoTracker):
    """A W&B run as wandb.mode says: transformers' WandbCallback logs into the run ftlab started."""

    report_to = "wandb"

    def __init__(self, wandb_run, group: str | None):
        self.wandb_run, self.group = wandb_run, group

    @classmethod
    def start(cls, config: dict, cfg, run: RunInfo):
        mode = wandb_mode(cfg.wandb.mode)  # passed to wandb.init, not to the environment: each run of a sweep decides
        if mode == "disabled":
            return None
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        # W&B records the command itself, beside the config it is handed: both with the secrets hidden.
        argv, sys.argv = sys.argv, [hide_secrets(arg) for arg in sys.argv]
        try:
            wandb_run = wandb.init(
                project=cfg.wandb.project,
                entity=cfg.wandb.entity,
                name=run.name,
                group=run.group,
                tags=run.tags,
                config=redact(config),
                dir=str(run.dir),
                mode=mode,
                settings=wandb.Settings(console="off", init_timeout=30),
            )
        finally:
            sys.argv = argv
        return cls(wandb_run, run.group)

    def finish(self, metrics: dict, answers: list) -> dict:
        """Final numbers into the run's summary (what W&B's tables and parallel-coordinates views compare across a
        sweep) and the answers as a table."""
        import wandb

        run = self.wandb_run
        run.summary.update(metrics)
        run.log({"eval/answers": wandb.Table(columns=ANSWER_COLUMNS, data=answer_rows(answers)), **metrics})
        record = {"mode": run.settings.mode, "dir": str(Path(run.dir).parent), "group": self.group, "id": run.id}
        run.finish()
        return {"wandb": record}

    def fail(self) -> None:
        self.wandb_run.finish(exit_code=1)
