"""What every tracker shares: the run it names, groups and places, the stand-in that logs nothing, several trackers
as one, and the answers table and flat config they log."""

from pathlib import Path
from typing import NamedTuple

BACKENDS = ("wandb", "mlflow", "tensorboard", "trackio", "none")
ANSWER_COLUMNS = ["question", "expected", "base_answer", "tuned_answer", "tuned_correct"]


class RunInfo(NamedTuple):
    """What a tracker names, groups and places a run by."""

    dir: Path
    sweep_dir: Path | None  # a multirun's directory (None for a single run): where its runs' trackers meet
    name: str
    group: str | None  # runs of one sweep share it: the sweep directory's name, or wandb.group
    tags: list  # the group choices (strategy=lora, ...) and wandb.tags


def backend_names(backend) -> list:
    """tracking.backend, one name or a list of them, checked: the trackers to start (`none` starts none)."""
    names = backend if isinstance(backend, list) else [backend]
    for name in names:
        if name not in BACKENDS:
            raise ValueError(f"tracking.backend: unknown tracker {name!r} (choose from {', '.join(BACKENDS)})")
    return [name for name in dict.fromkeys(names) if name != "none"]


def answer_rows(answers: list) -> list:
    return [
        [a["question"], ", ".join(a["expected"]), a["base_answer"], a["tuned_answer"], a["tuned_correct"]]
        for a in answers
    ]


def markdown_table(columns: list, rows: list) -> str:
    """The answers as TensorBoard's text view shows a table."""
    cells = [[str(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in [columns, *rows]]
    lines = [f"| {' | '.join(row)} |" for row in cells]
    return "\n".join([lines[0], "|---" * len(columns) + "|", *lines[1:]])


def tag_dict(tags: list) -> dict:
    """strategy=lora -> {strategy: lora}: the tags as the key-value pairs MLflow and TensorBoard's HParams take."""
    return dict(tag.partition("=")[::2] for tag in tags)


def flat(tree: dict, prefix: str = "") -> dict:
    """{model: {name: tiny}} -> {model.name: tiny}: a nested config as MLflow's flat parameters."""
    out = {}
    for key, value in tree.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value}
    return out


class NoTracker:
    """What a run logs to when nothing tracks it."""

    report_to = "none"  # the Trainer's report_to

    def finish(self, metrics: dict, answers: list) -> dict:
        """The final numbers and answers logged, the run closed; returns what results.json records of it."""
        return {}

    def fail(self) -> None:
        """A run that failed mid-way closes its tracker's run (as failed where the tracker has that notion), so the
        next run of a sweep starts a fresh one."""


class Trackers(NoTracker):
    """Several trackers at once (tracking.backend=[wandb,mlflow]): each gets everything."""

    def __init__(self, trackers: list):
        self.trackers, self.report_to = trackers, [t.report_to for t in trackers]

    def finish(self, metrics: dict, answers: list) -> dict:
        record = {}
        for tracker in self.trackers:
            record |= tracker.finish(metrics, answers)
        return record

    def fail(self) -> None:
        for tracker in self.trackers:
            tracker.fail()
