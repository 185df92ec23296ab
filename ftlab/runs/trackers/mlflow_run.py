"""MLflow (tracking.backend=mlflow): a file store in the run or sweep directory, or a tracking server."""

import os

from ftlab.core.secrets import redact
from ftlab.runs.trackers.base import ANSWER_COLUMNS, NoTracker, RunInfo, answer_rows, flat, tag_dict


class MlflowTracker(NoTracker):
    """An MLflow run, in a file store under the run directory (a sweep's: under the sweep directory, one store) or at
    tracking.mlflow.uri; one experiment per sweep (its group), wandb.project's for single runs. ftlab starts the run
    and transformers' MLflowCallback, finding it active, logs into it rather than starting its own."""

    report_to = "mlflow"

    def __init__(self, uri: str, experiment: str, run_id: str):
        self.uri, self.experiment, self.run_id = uri, experiment, run_id

    @classmethod
    def start(cls, config: dict, cfg, run: RunInfo):
        uri = cfg.tracking.mlflow.uri
        if uri is None:
            # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked; it needs no server and
            # no database, and `mlflow migrate-filestore` moves it into one later.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = ((run.sweep_dir or run.dir) / "mlruns").resolve().as_uri()
        import mlflow
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        mlflow.set_tracking_uri(uri)
        experiment = run.group or cfg.wandb.project
        mlflow.set_experiment(experiment)
        active = mlflow.start_run(run_name=run.name, tags=tag_dict(run.tags))
        config = redact(config)
        mlflow.log_dict(config, "config.yaml")  # whole; the parameters below leave out values too long for one
        # Prefixed: the Trainer's arguments, which the callback logs into this run, have flat names (seed,
        # output_dir) and MLflow refuses a parameter logged twice with different values.
        params = {f"ftlab.{k}": v for k, v in flat(config).items() if len(str(v)) <= MAX_PARAM_VAL_LENGTH}
        mlflow.log_params(params)
        return cls(uri, experiment, active.info.run_id)

    def finish(self, metrics: dict, answers: list) -> dict:
        """Final numbers at the last step (so they are the run's latest values, what MLflow's runs table compares)
        and the answers as a table artifact (eval/answers.json)."""
        import mlflow

        mlflow.log_metrics(metrics, step=metrics["final/steps"])
        rows = answer_rows(answers)
        mlflow.log_table({c: [row[i] for row in rows] for i, c in enumerate(ANSWER_COLUMNS)}, "eval/answers.json")
        mlflow.end_run()
        return {"mlflow": {"uri": self.uri, "experiment": self.experiment, "run_id": self.run_id}}

    def fail(self) -> None:
        import mlflow

        mlflow.end_run(status="FAILED")
