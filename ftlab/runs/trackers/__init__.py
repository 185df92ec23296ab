"""The experiment trackers of a run (tracking.backend: W&B, MLflow, TensorBoard, trackio, several or none): set up so
they never prompt or hang, fed, and closed; a stand-in that does nothing where there is none (none chosen, W&B
disabled, ranks other than 0), so callers never ask which they hold.

Each tracker is one run per ftlab run: ftlab opens it with the config, transformers' integration callback (named in
the Trainer's report_to) logs the Trainer's arguments and training curves into that same run, and finish() adds the
final numbers (records.tracker_metrics) and the base-vs-tuned answers. The libraries are imported only when chosen."""

from ftlab.runs.trackers.base import BACKENDS, NoTracker, RunInfo, Trackers, backend_names
from ftlab.runs.trackers.mlflow_run import MlflowTracker
from ftlab.runs.trackers.tensorboard_run import TensorBoardTracker
from ftlab.runs.trackers.trackio_run import TrackioTracker
from ftlab.runs.trackers.wandb_run import WandbTracker, wandb_mode

__all__ = ["BACKENDS", "NoTracker", "RunInfo", "backend_names", "start_tracker", "wandb_mode"]

STARTS = {
    "wandb": WandbTracker.start,
    "mlflow": MlflowTracker.start,
    "tensorboard": TensorBoardTracker.start,
    "trackio": TrackioTracker.start,
}


def start_tracker(names: list, config: dict, cfg, run: RunInfo) -> NoTracker:
    """The run's trackers (backend_names), each given the config with its secrets hidden; the stand-in when none
    tracks it. One that cannot start closes those already started (a sweep's next run starts fresh ones)."""
    trackers = []
    try:
        for name in names:
            tracker = STARTS[name](config, cfg, run)
            trackers += [tracker] if tracker else []
    except BaseException:
        Trackers(trackers).fail()
        raise
    if not trackers:
        return NoTracker()
    return trackers[0] if len(trackers) == 1 else Trackers(trackers)
