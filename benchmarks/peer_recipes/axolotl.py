"""Axolotl as its README runs it: `axolotl train config.yaml`, a local JSONL in OpenAI `messages` form (system, user,
assistant turns) loaded with `type: chat_template` and the model's own tokenizer template (ChatML), loss on the
assistant turn only (`roles_to_train`, its closing <|im_end|> included).

Deviations, each for a reason:
- Axolotl 0.21.0 declares Requires-Python >=3.12, the harness's venvs are Python 3.11 (torch 2.13.0's CPU wheel here
  is cp311 only). Its code runs on 3.11, so it installs with `--ignore-requires-python`, numpy and scipy pinned to the
  last releases with 3.11 wheels (otherwise pip, told to ignore Python versions, picks 3.12-only sources to build).
- `--launcher python` (one of its CLI's launchers): the default `accelerate launch` sets OMP_NUM_THREADS=1 on a
  machine without a GPU, so torch would train on one core where every other tool gets torch's default thread count.
- max_steps: Axolotl hands the trainer its own estimate ceil(rows * epochs / batch) (324 here), which stops at 14.7
  epochs; the epochs' true step count (330, every epoch's last partial batch counted) is passed instead.
- AXOLOTL_DO_NOT_TRACK: its telemetry (on by default) would only retry against an unreachable host.
Without checkpoints it writes no trainer_state.json: the training time is the `train_runtime` its trainer logs, which
it also copies into output_dir/debug.log."""

import ast
import json
import re
from pathlib import Path

from benchmarks.peer_recipes import write_messages

NAME = "axolotl"
VERSION = "0.21.0"
INSTALL = ["--ignore-requires-python", "axolotl==0.21.0", "numpy==2.3.5", "scipy==1.17.1"]
ENV = {"AXOLOTL_DO_NOT_TRACK": "1"}


def prepare(work: Path, job: dict) -> list[str]:
    write_messages(job, work / "train.jsonl")
    dataset = {
        "path": str(work / "train.jsonl"),
        "ds_type": "json",
        "type": "chat_template",
        "roles_to_train": ["assistant"],
        "train_on_eos": "turn",
    }
    config = {
        "base_model": job["model"],
        "chat_template": "tokenizer_default",
        "datasets": [dataset],
        "dataset_prepared_path": str(work / "prepared"),
        "val_set_size": 0.0,
        "output_dir": str(work / "out"),
        "sequence_len": job["max_length"],
        "sample_packing": False,
        "pad_to_sequence_len": False,
        "num_epochs": job["epochs"],
        "max_steps": job["steps"],  # the shared job's count: every epoch's last partial batch counted
        "micro_batch_size": job["batch_size"],
        "gradient_accumulation_steps": job["grad_accum"],
        "learning_rate": job["lr"],
        "lr_scheduler": job["scheduler"],
        "warmup_ratio": job["warmup_ratio"],
        "weight_decay": job["weight_decay"],
        "max_grad_norm": job["max_grad_norm"],
        "optimizer": job["optim"],
        "seed": job["seed"],
        "logging_steps": job["logging_steps"],
        "save_strategy": "no",  # the final model is saved all the same, into output_dir
        "bf16": False,
        "fp16": False,
        "tf32": False,
        "gradient_checkpointing": False,
    }
    (work / "config.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    return ["axolotl", "train", str(work / "config.yaml"), "--launcher", "python"]


def saved_model(work: Path, job: dict) -> Path:
    return work / "out"


def train_seconds(work: Path, job: dict) -> float:
    # The trainer's closing log, a dict: {'train_runtime': '158.4', 'train_loss': ..., ...}
    log = (work / "out" / "debug.log").read_text(errors="replace")
    return float(ast.literal_eval(re.findall(r"\{[^{}]*'train_runtime'[^{}]*\}", log)[-1])["train_runtime"])
