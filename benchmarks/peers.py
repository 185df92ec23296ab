"""ftlab against the frameworks users choose between (LLaMA-Factory, Axolotl, ms-swift, oumi, torchtune), each run as
its users run it (its CLI and its config file) in its own pinned virtual environment, on the same local model, rows,
chat template, hyperparameters and seed. Per tool: training tokens/s over one token count shared by all, training and
whole-process wall time, peak RSS, and the saved model scored by ftlab's own evaluator on the held-out questions."""

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.measure import environment  # noqa: E402
from benchmarks.trl_vs_ftlab import compose_cfg  # noqa: E402
from ftlab.core.files import cache_root  # noqa: E402

PEERS = ["llamafactory", "axolotl", "swift", "oumi", "torchtune"]  # modules of benchmarks/peer_recipes/
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}
# The recipe every tool runs: ftlab's hr_bot experiment, spelled out. No evaluation during training (no peer does it
# by default) and float32 weights on CPU.
EXPERIMENT = ["experiment=hr_bot", "train.eval_steps=0", "tracking.backend=none"]


def shared_job(folder: Path, max_steps: int) -> dict:
    """The model folder, ftlab's prepared training rows (checked, de-duplicated) written as system/prompt/completion
    JSONL for the peers to convert, the hyperparameters, and the training tokens every tool is credited with: the
    chat-templated rows' tokens (truncated to max_length) once per epoch, counted with the model's tokenizer."""
    from ftlab.data.load import prepare
    from ftlab.model.load import load_tokenizer
    from ftlab.model.source import model_path

    cfg = compose_cfg([*EXPERIMENT, f"train.max_steps={max_steps}"])
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, path)
    rows = prepare(cfg.data, "prompt_completion", cfg.data.system_prompt, tokenizer, cfg.seed)[0]
    train_file = folder / "train.jsonl"
    lengths = []
    with train_file.open("w", encoding="utf-8") as out:
        for row in rows:
            system, user = row["prompt"]
            answer = row["completion"][0]["content"]
            out.write(json.dumps({"system": system["content"], "prompt": user["content"], "completion": answer}) + "\n")
            ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
            lengths.append(min(len(ids), cfg.train.max_length))
    steps_per_epoch = -(-len(lengths) // cfg.train.batch_size)
    epochs = cfg.train.epochs if max_steps <= 0 else max_steps / steps_per_epoch
    return {
        "model": str(Path(path).resolve()),
        "train_file": str(train_file),
        "rows": len(lengths),
        "tokens": round(sum(lengths) * epochs),
        "steps": max_steps if max_steps > 0 else steps_per_epoch * int(cfg.train.epochs),
        "system_prompt": cfg.data.system_prompt,
        "template": "chatml",
        "epochs": int(cfg.train.epochs),
        "max_steps": max_steps,
        "batch_size": cfg.train.batch_size,
        "grad_accum": cfg.train.grad_accum,
        "lr": float(cfg.optimizer.lr),
        "scheduler": cfg.optimizer.scheduler,
        "warmup_ratio": cfg.optimizer.warmup,
        "weight_decay": cfg.optimizer.weight_decay,
        "max_grad_norm": cfg.optimizer.max_grad_norm,
        "max_length": cfg.train.max_length,
        "seed": cfg.seed,
        "optim": cfg.optimizer.optim,
        "logging_steps": cfg.train.logging_steps,
        "finetuning": cfg.strategy.kind,
    }


class Ftlab:
    """ftlab itself, through the same harness: `python -m ftlab` in this environment, the run directory in `work`."""

    NAME, VERSION, INSTALL, ENV = "ftlab", "this checkout", None, {}

    @staticmethod
    def prepare(work: Path, job: dict) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ftlab",
            *EXPERIMENT,
            f"train.max_steps={job['max_steps']}",
            f"hydra.run.dir={work}/run",
        ]

    @staticmethod
    def saved_model(work: Path, job: dict) -> Path:
        return work / "run" / "model"

    @staticmethod
    def train_seconds(work: Path, job: dict) -> float:
        return json.loads((work / "run" / "results.json").read_text())["train"]["runtime_s"]

    @staticmethod
    def evaluation_seconds(work: Path) -> float:
        """ftlab evaluates the base and the tuned model inside the run, which no peer does: told apart in the table."""
        phases = json.loads((work / "run" / "results.json").read_text())["phases_s"]
        return phases.get("base_eval", 0) + phases.get("eval", 0)


def recipe(name: str):
    return Ftlab if name == "ftlab" else importlib.import_module(f"benchmarks.peer_recipes.{name}")


def peer_python(peer) -> Path | None:
    """The peer's own virtual environment under ftlab's cache, created and installed once (torch 2.13.0's CPU wheel
    first, so pip keeps it wherever the peer accepts it), then reused while its pins are unchanged."""
    if peer.INSTALL is None:
        return None
    venv = cache_root() / "peers" / f"{peer.NAME}-{peer.VERSION}"
    stamp = venv / ".installed"
    pins = "\n".join(peer.INSTALL)
    if stamp.exists() and stamp.read_text() == pins:
        return venv / "bin"
    print(f"[{peer.NAME}] creating {venv} (pip install {' '.join(peer.INSTALL)})", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable.replace(sys.prefix, sys.base_prefix), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *peer.INSTALL], check=True)
    stamp.write_text(pins)
    return venv / "bin"


def stack(bin_dir: Path | None) -> dict:
    """The versions a tool trains with: its own and those of the libraries under it (each peer resolves its own)."""
    probe = (
        "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
        "['torch', 'transformers', 'trl', 'peft', 'accelerate'] if __import__('importlib.util').util.find_spec(p)}))"
    )
    python = str(bin_dir / "python") if bin_dir else sys.executable
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-200:]}


def run_tool(argv: list, cwd: Path, env: dict, log: Path) -> dict:
    """The command as a child process: its wall time, exit status, and its peak resident memory (the largest process
    of its tree, from wait4, so launchers that start the trainer as a child are measured by the trainer's)."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "process_s": time.perf_counter() - started,
        "returncode": process.returncode,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def score(model_dir: Path, job: dict, cfg) -> dict:
    """ftlab's evaluator (the one every ftlab run reports) on the tool's saved model: held-out answer accuracy and
    the reference answers' loss. A peer that saves no tokenizer is scored with the shared model's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftlab.eval.judges import evaluator

    tokenizer_dir = model_dir if (model_dir / "tokenizer.json").exists() else job["model"]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = AutoTokenizer.from_pretrained(job["model"]).chat_template  # the shared template
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    numbers = evaluator(cfg, tokenizer)(model)
    return {"answer_accuracy": numbers["answer_accuracy"], "heldout_loss": numbers["loss"]}


def measure(name: str, job: dict, folder: Path, cfg, repeat: int) -> dict:
    peer = recipe(name)
    if getattr(peer, "UNSUPPORTED_ON_CPU", None):
        return {"error": f"does not train on CPU: {peer.UNSUPPORTED_ON_CPU}"}
    bin_dir = peer_python(peer)
    work = folder / f"{name}-{repeat}"
    work.mkdir()
    argv = peer.prepare(work, job)
    env = {**os.environ, **OFFLINE, **peer.ENV}
    if bin_dir is not None:
        argv = [str(bin_dir / argv[0]), *argv[1:]]
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
        env["VIRTUAL_ENV"] = str(bin_dir.parent)
    print(f"[{name}] run {repeat + 1}: {' '.join(argv)}", flush=True)
    result = run_tool(argv, work, env, work / "output.log")
    if result["returncode"] != 0:
        tail = (work / "output.log").read_text(errors="replace").strip().splitlines()[-3:]
        return {**result, "error": " | ".join(tail)[-400:]}
    train_s = peer.train_seconds(work, job)
    tokens = job["tokens"] * (peer.trained_share(job) if hasattr(peer, "trained_share") else 1.0)
    result.update(train_s=train_s, tokens=round(tokens), tokens_per_s=tokens / train_s, stack=stack(bin_dir))
    if name == "ftlab":
        result["process_s_without_evaluation"] = result["process_s"] - Ftlab.evaluation_seconds(work)
    result.update(score(peer.saved_model(work, job), job, cfg))
    shutil.rmtree(work, ignore_errors=True)  # a full run's model, checkpoints and logs: gone once measured
    return result


def summarise(runs: list) -> dict:
    ok = [run for run in runs if "error" not in run]
    if not ok:
        return {"error": runs[-1]["error"], "runs": runs}
    best = max(ok, key=lambda run: run["tokens_per_s"])
    return {
        **best,
        "median_tokens_per_s": statistics.median(run["tokens_per_s"] for run in ok),
        "median_train_s": statistics.median(run["train_s"] for run in ok),
        "median_process_s": statistics.median(run["process_s"] for run in ok),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in ok),
        "runs": runs,
    }


def ratios(tools: dict) -> dict:
    """ftlab / peer for every peer that ran: above 1 means ftlab is faster (tokens/s), below 1 that it holds less
    memory or takes less time."""
    f = tools["ftlab"]
    out = {}
    for name, t in tools.items():
        if name == "ftlab" or "error" in t or "error" in f:
            continue
        out[name] = {
            "tokens_per_s": f["tokens_per_s"] / t["tokens_per_s"],
            "median_tokens_per_s": f["median_tokens_per_s"] / t["median_tokens_per_s"],
            "process_s": f["median_process_s"] / t["median_process_s"],
            "peak_rss": f["peak_rss_mb"] / t["peak_rss_mb"],
            "answer_accuracy_difference": f["answer_accuracy"] - t["answer_accuracy"],
        }
    return out


def table(tools: dict, ratio: dict) -> str:
    lines = [
        "| tool | version (torch, transformers) | tokens/s best, median | train s | process s | peak RSS MB "
        "| answer acc. | held-out loss | ftlab x tokens/s | ftlab x memory |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in tools.items():
        if "error" in t:
            lines.append(f"| {name} | {t['version']} | failed: {t['error'][:150]} ||||||||")
            continue
        r = ratio.get(name)
        versions = f"{t['version']} ({t['stack'].get('torch')}, {t['stack'].get('transformers')})"
        lines.append(
            f"| {name} | {versions} | {t['tokens_per_s']:.0f}, {t['median_tokens_per_s']:.0f} | "
            f"{t['median_train_s']:.1f} | {t['median_process_s']:.1f} | {t['peak_rss_mb']:.0f} | "
            f"{t['answer_accuracy']:.3f} | {t['heldout_loss']:.3f} | "
            + (f"x{r['tokens_per_s']:.2f} | x{r['peak_rss']:.2f} |" if r else " | |")
        )
    f = tools["ftlab"]
    if "error" not in f:
        evaluation = statistics.median(
            r["process_s"] - r["process_s_without_evaluation"] for r in f["runs"] if "error" not in r
        )
        lines.append(
            f"\nftlab's process s includes its evaluation of the base and the tuned model ({evaluation:.1f} s)"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peer recipes (ftlab always runs)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool; the order alternates each repeat")
    parser.add_argument("--steps", type=int, default=-1, help="> 0: this many steps instead of the 15 epochs")
    parser.add_argument("--out", default="benchmarks/peers.json")
    a = parser.parse_args(argv)
    names = ["ftlab", *[n for n in a.peers.split(",") if n and n != "ftlab"]]
    cfg = compose_cfg(EXPERIMENT)
    runs = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="ftlab-peers-") as tmp:
        job = shared_job(Path(tmp), a.steps)
        for r in range(a.repeats):
            for name in names if r % 2 == 0 else names[::-1]:
                try:
                    runs[name].append(measure(name, job, Path(tmp), cfg, r))
                except Exception as err:  # a peer's setup that fails is recorded with its reason, not skipped
                    runs[name].append({"error": f"{type(err).__name__}: {err}"})
        job = {k: v for k, v in job.items() if k not in ("model", "train_file")}
    tools = {name: summarise(runs[name]) for name in names}
    for name, t in tools.items():
        t["version"] = recipe(name).VERSION
    ratio = ratios(tools)
    result = {
        **environment(),
        "command": " ".join(sys.argv),
        "job": job,
        "reported": "per tool the run with the best tokens/s and the medians of the repeats; tokens/s: the shared "
        "token count over the tool's own training-loop time; process s: the whole command (start-up, data "
        "preparation, training, save; ftlab's also its base and tuned evaluation); peak RSS: the largest process",
        "tools": tools,
        "ftlab_over_peer": ratio,
    }
    out = Path(a.out)
    out.write_text(json.dumps(result, indent=2, default=str))
    print("\n" + table(tools, ratio) + f"\n\nfigures: {out}")


if __name__ == "__main__":
    main()
