"""Run records: W&B mode never prompts or hangs, secrets stay out of logged configs, results are written atomically;
the other trackers (MLflow, TensorBoard, trackio) get what W&B gets, grouped by sweep, and no secret."""

import json

import pytest
import yaml
from helpers import QUICK, compose_cfg, read_results, run_cli

from ftlab.core.files import write_json
from ftlab.core.secrets import redact
from ftlab.runs.trackers import backend_names, wandb_mode


def test_secrets_are_hidden_from_logged_configs():
    cfg = {
        "eval": {"max_new_tokens": 48},
        "hub": {"hf_token": "hf_abc", "api_key": "k"},
        "wandb": {"password": "p"},
        "model": {"target_modules": ["q_proj"]},
    }
    assert redact(cfg) == {
        "eval": {"max_new_tokens": 48},
        "hub": {"hf_token": "***", "api_key": "***"},
        "wandb": {"password": "***"},
        "model": {"target_modules": ["q_proj"]},
    }


def test_wandb_goes_online_only_with_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    assert wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto") == "offline"


def test_write_json_leaves_no_partial_file(tmp_path):
    write_json(tmp_path / "results.json", {"status": "ok"})
    assert json.loads((tmp_path / "results.json").read_text()) == {"status": "ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_cpu_peak_memory_is_measured_per_phase():
    """A multirun shares one process: each run's peak must not inherit the previous run's."""
    import torch

    from ftlab.train.trainer import peak_memory_mb, reset_peak_memory

    if torch.cuda.is_available():
        return  # on CUDA the peak is torch's allocator statistic
    reset_peak_memory()
    block = bytearray(300 * 2**20)
    high = peak_memory_mb()
    del block
    reset_peak_memory()
    assert high - peak_memory_mb() > 200


# The trackers besides W&B (tracking.backend), read back from what each library wrote: one sweep of two runs of one
# name (the learning rate is not part of a run's name), the second diverging, so each tracker shows a finished and a
# failed run. The same sweep shows how a sweep reports a diverging run (the last test). W&B: tests/test_run.py and
# tests/test_sweeps.py.
TRACKED = "tracking.backend=[mlflow,tensorboard,trackio]"
CONFIG_SECRET, ENV_SECRET = "hf_trackSECRETvalue0123456789", "pwSECRETvalue98765"


@pytest.fixture(scope="module")
def tracked_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    quick = [o for o in QUICK if not o.startswith("train.max_steps")]
    args = [
        "-m",
        *quick,
        "train.max_steps=3",
        "train.logging_steps=1",
        "train.eval_steps=0",
        "train.save_steps=1",
        "optimizer.lr=3e-3,1e30",
        TRACKED,
        f"+objective.args.hub_token={CONFIG_SECRET}",
        f"hydra.sweep.dir={root / 'sweep'}",
    ]
    env = {"TRACKIO_DIR": str(root / "trackio"), "MY_SERVICE_PASSWORD": ENV_SECRET}  # trackio's store: not ~/.cache
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        code, out = run_cli(args)
    assert code == 1 and "2 runs: 1 ok, 1 failed" in out, out[-3000:]
    runs = sorted(p for p in (root / "sweep").iterdir() if (p / "results.json").is_file())
    return root, [read_results(p) for p in runs], runs, (args, env, out)


def test_unknown_tracker_is_one_line(tmp_path):
    assert backend_names("wandb") == ["wandb"]
    assert backend_names(["wandb", "mlflow", "none", "mlflow"]) == ["wandb", "mlflow"]
    assert backend_names("none") == backend_names([]) == []
    for bad in ("mlflw", ["wandb", "x"], None):
        with pytest.raises(ValueError, match=r"^tracking.backend: unknown tracker .* \(choose from wandb, mlflow, "):
            backend_names(bad)
    code, out = run_cli(["tracking.backend=mlflw", f"hydra.run.dir={tmp_path}"])  # before anything loads: a second
    assert code == 1 and out.splitlines()[-1] == (
        "error: tracking.backend: unknown tracker 'mlflw' (choose from wandb, mlflow, tensorboard, trackio, none)"
    )
    assert not (tmp_path / "results.json").exists()
    # Hydra takes a name or a list for the one key
    assert compose_cfg([TRACKED]).tracking.backend == ["mlflow", "tensorboard", "trackio"]
    assert compose_cfg(["tracking.backend=none"]).tracking.backend == "none"


@pytest.mark.slow
def test_mlflow_one_experiment_per_sweep_one_run_per_run(tracked_sweep, monkeypatch):
    from mlflow import MlflowClient

    root, (ok, _), _, _ = tracked_sweep
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((root / "sweep" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("sweep")  # the sweep's group: its directory's name
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    # one MLflow run per ftlab run: transformers' callback logged into ftlab's run rather than starting its own
    assert sorted(r.info.status for r in runs.values()) == ["FAILED", "FINISHED"]
    assert ok["mlflow"]["experiment"] == "sweep"
    run = runs[ok["mlflow"]["run_id"]]
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny-full-sft-none-s42"
    assert {"strategy": "full", "quant": "none", "model": "tiny"}.items() <= run.data.tags.items()
    params = run.data.params
    assert params["ftlab.optimizer.lr"] == "0.003" and params["learning_rate"] == "0.003"  # ftlab's and the Trainer's
    assert params["ftlab.objective.args.hub_token"] == "***"
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 3]
    assert run.data.metrics["eval/answer_accuracy"] == ok["eval"]["answer_accuracy"]
    assert run.data.metrics["params/trainable"] == ok["params"]["trainable"]
    artifacts = root / "sweep" / "mlruns" / experiment.experiment_id / run.info.run_id / "artifacts"
    table = json.loads((artifacts / "eval" / "answers.json").read_text())
    assert table["columns"][:2] == ["question", "expected"] and len(table["data"]) == 6
    assert "hub_token: '***'" in (artifacts / "config.yaml").read_text()


@pytest.mark.slow
def test_tensorboard_one_directory_per_run_under_the_sweep(tracked_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, (ok, _), runs, _ = tracked_sweep
    logdir = root / "sweep" / "tensorboard"
    assert sorted(p.name for p in logdir.iterdir()) == [p.name for p in runs]
    assert ok["tensorboard"]["dir"] == str(logdir / runs[0].name)
    events = EventAccumulator(str(logdir / runs[0].name)).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]  # the callback's curve
    (final,) = events.Scalars("eval/answer_accuracy")  # ftlab's final numbers, at the last step
    assert (final.step, final.value) == (3, pytest.approx(ok["eval"]["answer_accuracy"]))
    text = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]}
    assert "name: full" in text["config/text_summary"] and "hub_token: '***'" in text["config/text_summary"]
    assert text["eval/answers/text_summary"].startswith("| question | expected |")
    assert text["eval/answers/text_summary"].count("\n") == 7  # header, rule, 6 answers
    failed = EventAccumulator(str(logdir / runs[1].name)).Reload()
    assert [e.step for e in failed.Scalars("train/loss")] == [1, 2]  # up to the divergence


@pytest.mark.slow
def test_trackio_one_run_per_run_grouped_by_sweep(tracked_sweep):
    import sqlite3

    root, (ok, _), _, _ = tracked_sweep
    assert ok["trackio"] == {
        "project": "ftlab",
        "run": "tiny-full-sft-none-s42",
        "group": "sweep",
        "dir": str(root / "trackio"),
    }
    db = sqlite3.connect(root / "trackio" / "ftlab.db")  # the project's store
    logs = {}
    for run_id, metrics in db.execute("SELECT run_id, metrics FROM metrics ORDER BY step"):
        logs.setdefault(run_id, []).append(json.loads(metrics))
    assert len(logs) == 2  # two runs of one name, neither resumed into the other
    finished, _ = sorted(logs.values(), key=lambda rows: "eval/answer_accuracy" not in rows[-1])
    assert [m["train/global_step"] for m in finished if "train/loss" in m] == [1, 2, 3]
    assert finished[-1]["eval/answer_accuracy"] == ok["eval"]["answer_accuracy"]
    assert finished[-1]["eval/answers"]["_type"] == "trackio.table"
    configs = [json.loads(c) for (c,) in db.execute("SELECT config FROM configs")]
    assert len(configs) == 2 and all(c["_Group"] == "sweep" for c in configs)
    assert all(c["model"]["name"] == "tiny" and c["learning_rate"] for c in configs)  # ftlab's config, the Trainer's
    alerts = db.execute("SELECT run_id, title, level FROM alerts").fetchall()
    assert [(title, level) for _, title, level in alerts] == [("run failed", "error")]
    assert alerts[0][0] in logs and "eval/answer_accuracy" not in logs[alerts[0][0]][-1]


@pytest.mark.slow
def test_no_tracker_writes_a_secret(tracked_sweep):
    root, _, _, _ = tracked_sweep
    files = [p for d in ("sweep/mlruns", "sweep/tensorboard", "trackio") for p in (root / d).rglob("*") if p.is_file()]
    assert len(files) > 100
    for secret in (CONFIG_SECRET, ENV_SECRET):
        leaks = [str(p.relative_to(root)) for p in files if secret.encode() in p.read_bytes()]
        assert not leaks, f"{secret} written into {leaks}"
    hydra_files = [*(root / "sweep").glob("*/.hydra/*.yaml"), root / "sweep" / "multirun.yaml"]
    for path in hydra_files:  # Hydra's own files, the secret hidden as '***', still load (a bare *** would not)
        assert CONFIG_SECRET not in path.read_text() and yaml.safe_load(path.read_text()) is not None, path
    assert len(hydra_files) == 7


@pytest.mark.slow
def test_a_diverging_run_fails_the_sweep_but_not_the_other_runs(tracked_sweep, monkeypatch):
    """lr=1e30 makes the gradients NaN: that run is recorded as failed with the step and its last good checkpoint,
    the other run finishes, each ends with its line ([2/2] ...), the report lists both, and the sweep's exit code
    says something failed. The same command again keeps the finished run and retries the failed one (last in this
    file: the trackers then hold a third run)."""
    root, (ok, failed), runs, (args, env, out) = tracked_sweep
    assert (ok["status"], failed["status"]) == ("ok", "failed")
    assert "training diverged: a gradient is NaN or infinite at step 3 (not applied" in failed["reason"]
    assert "; last good checkpoint: " in failed["reason"] and "checkpoint-2" in failed["reason"]
    report = (root / "sweep" / "report" / "report.md").read_text()
    assert "training diverged" in report and "failed" in report
    lines = out.splitlines()
    assert any(line.startswith("[1/2] tiny-full-sft-none-s42: ok, accuracy ") for line in lines), out[-2000:]
    assert any(line.startswith("error: [2/2] tiny-full-sft-none-s42: failed: training diverged") for line in lines)
    assert "Traceback" not in out  # the failed run's traceback is in its ftlab.log
    assert "Traceback" in (runs[1] / "ftlab.log").read_text()
    stamp = (runs[0] / "results.json").stat().st_mtime_ns
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, again = run_cli(args)
    assert code != 0 and again.count("finished earlier: kept") == 1 and "1 failed" in again
    assert (runs[0] / "results.json").stat().st_mtime_ns == stamp
