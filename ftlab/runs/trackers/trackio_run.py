"""trackio (tracking.backend=trackio): its local store, one project, the sweep as a group."""

from ftlab.core.secrets import redact
from ftlab.runs.trackers.base import ANSWER_COLUMNS, NoTracker, RunInfo, answer_rows


class TrackioTracker(NoTracker):
    """A trackio run in trackio's local store (TRACKIO_DIR, by default ~/.cache/huggingface/trackio), in the project
    wandb.project names, grouped by the sweep's group. transformers' TrackioCallback opens its run by name (the
    Trainer's run_name) and resumes the latest run of that name: ftlab creates this run first and logs once, so it
    is that latest run (trackio.init finishes the open run, which writes that log, before it looks). The callback's
    reopening replaces the run's config, where trackio keeps the group: finish()
    writes both again, with the callback's Trainer arguments kept."""

    report_to = "trackio"

    def __init__(self, project: str, name: str, group: str | None, config: dict):
        self.project, self.name, self.group, self.config = project, name, group, config

    @classmethod
    def start(cls, config: dict, cfg, run: RunInfo):
        import trackio

        tracker = cls(cfg.wandb.project, run.name, run.group, redact(config))
        tracker._open(resume="never")  # a new run, even where an earlier one has this name
        trackio.log({})
        return tracker

    def _open(self, resume: str) -> None:
        import trackio

        trackio.init(project=self.project, name=self.name, group=self.group, config=self.config, resume=resume)

    def _reopen(self) -> None:
        """This run again, its config (the group in it) written with the next log: ftlab's over the callback's."""
        import trackio

        trainer = {k: v for k, v in trackio.config.items() if not k.startswith("_")}  # `_` keys: trackio's own
        self.config = trainer | self.config
        self._open(resume="must")

    def finish(self, metrics: dict, answers: list) -> dict:
        import trackio
        from trackio.utils import TRACKIO_DIR

        self._reopen()
        trackio.log({**metrics, "eval/answers": trackio.Table(columns=ANSWER_COLUMNS, data=answer_rows(answers))})
        trackio.finish()
        return {"trackio": {"project": self.project, "run": self.name, "group": self.group, "dir": str(TRACKIO_DIR)}}

    def fail(self) -> None:
        """trackio has no failed state: an error alert on the run says it."""
        import trackio

        self._reopen()
        trackio.alert("run failed", level=trackio.AlertLevel.ERROR)
        trackio.log({})
        trackio.finish()
