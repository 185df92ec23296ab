"""TensorBoard (tracking.backend=tensorboard): event files, one directory per run under a sweep's."""

import os

from ftlab.core.secrets import redact
from ftlab.runs.trackers.base import ANSWER_COLUMNS, NoTracker, RunInfo, answer_rows, markdown_table, tag_dict


class TensorBoardTracker(NoTracker):
    """Event files in <run>/tensorboard, or <sweep>/tensorboard/<run> for a sweep's runs, so that `tensorboard
    --logdir <sweep>/tensorboard` shows them together. transformers' TensorBoardCallback writes the curves there;
    ftlab's writer the config, the final numbers as HParams (TensorBoard's view that compares a sweep's runs by their
    group choices) and the answers."""

    report_to = "tensorboard"

    def __init__(self, writer, hparams: dict):
        self.writer, self.hparams = writer, hparams

    @classmethod
    def start(cls, config: dict, cfg, run: RunInfo):
        from omegaconf import OmegaConf
        from torch.utils.tensorboard import SummaryWriter

        logdir = run.sweep_dir / "tensorboard" / run.dir.name if run.sweep_dir else run.dir / "tensorboard"
        # Read by the callback when the Trainer is built, after this: each run of a sweep sets its own.
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(logdir)
        writer = SummaryWriter(str(logdir))
        yaml = OmegaConf.to_yaml(redact(config))
        writer.add_text("config", "\n".join(f"    {line}" for line in yaml.splitlines()))  # markdown code block
        return cls(writer, tag_dict(run.tags))

    def finish(self, metrics: dict, answers: list) -> dict:
        step = metrics["final/steps"]
        self.writer.add_hparams(self.hparams, metrics, run_name=".", global_step=step)  # ".": this run's directory
        self.writer.add_text("eval/answers", markdown_table(ANSWER_COLUMNS, answer_rows(answers)), step)
        self.writer.close()
        return {"tensorboard": {"dir": self.writer.log_dir}}

    def fail(self) -> None:
        self.writer.close()
