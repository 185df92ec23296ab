"""oumi as its docs run it: `oumi train -c config.yaml`, a local `text_sft_jsonl` dataset (one {"messages": [system,
user, assistant]} conversation a line), TRL's SFT trainer (`trainer_type: TRL_SFT`, what oumi's SFT recipes use) and
the `text_completions_only_with_padding` collator with `train_target: FINAL_ASSISTANT_TURN`, oumi's way of training on
the assistant answer only. `chat_template: auto` keeps the tiny model's own ChatML template (else oumi may swap in a
template of its own for the model type). Truncation to max_length: `model_max_length`. No packing, no evaluation, no
intermediate checkpoints (`save_steps: 0`), no TensorBoard (on by default in oumi; off here, as every other tool logs
to its console only), no usage analytics (`DO_NOT_TRACK=1`: oumi phones PostHog by default and there is no network).

Deviations: oumi finds the answer's start from the template's assistant header with its trailing newline stripped, so
it also trains on the newline after `<|im_start|>assistant` and the one after `<|im_end|>` (two tokens a row more than
the template's {% generation %} span, which the others train on). `num_train_epochs` must be an integer in oumi.

Install: oumi 0.9 caps torch below 2.13 (`torch<2.13.0,>=2.6`) and torchvision below 0.26, so pip replaces the CPU
torch 2.13.0 wheel with PyPI's torch 2.10.0 (the build that torchvision 0.25 matches; it carries the CUDA libraries,
unused here, which makes the venv about 8.4 GB). The pins below are what that resolution chose, written out so pip
does not backtrack through four torch releases (14 minutes, 2.5 GB of downloads) to find them again.

Where things land: oumi saves the final model (weights as model.safetensors, config, tokenizer files, chat template)
into `out/` (`save_final_model: true`, its default) and the HF trainer's state into `out/trainer_state.json`, whose
log history ends with the HF trainer's own `train_runtime`: its training loop only (not start-up, model load, the
dataset's tokenization or the final save)."""

import json
from pathlib import Path

from benchmarks.peer_recipes import write_messages

NAME = "oumi"
VERSION = "0.9"
INSTALL = ["oumi==0.9", "torch==2.10.0", "torchvision==0.25.0", "torchao==0.16.0"]
ENV = {"DO_NOT_TRACK": "1"}  # its anonymous usage analytics (PostHog), on by default: no network here


def prepare(work: Path, job: dict) -> list[str]:
    write_messages(job, work / "train.jsonl")
    config = {
        "model": {
            "model_name": job["model"],
            "model_max_length": job["max_length"],  # the collator truncates to it
            "torch_dtype_str": "float32",
            "chat_template": "auto",
            "device_map": "cpu",
            "trust_remote_code": False,
        },
        "data": {
            "train": {
                "datasets": [{"dataset_name": "text_sft_jsonl", "dataset_path": str(work / "train.jsonl")}],
                "collator_name": "text_completions_only_with_padding",
                "train_target": "FINAL_ASSISTANT_TURN",
                "seed": job["seed"],
            }
        },
        "training": {
            "trainer_type": "TRL_SFT",
            "output_dir": str(work / "out"),
            "per_device_train_batch_size": job["batch_size"],
            "gradient_accumulation_steps": job["grad_accum"],
            "num_train_epochs": int(job["epochs"]),  # oumi wants an integer; the job says 15.0
            "max_steps": job["max_steps"],
            "learning_rate": job["lr"],
            "lr_scheduler_type": job["scheduler"],
            "warmup_ratio": job["warmup_ratio"],
            "weight_decay": job["weight_decay"],
            "max_grad_norm": job["max_grad_norm"],
            "optimizer": job["optim"],
            "seed": job["seed"],
            "data_seed": job["seed"],
            "mixed_precision_dtype": "NONE",  # float32 weights and compute
            "enable_gradient_checkpointing": False,
            "eval_strategy": "no",
            "logging_steps": job["logging_steps"],
            "save_steps": 0,  # no checkpoint during training: only the final model
            "save_final_model": True,
            "enable_wandb": False,
            "enable_mlflow": False,
            "enable_tensorboard": False,
            "dataloader_num_workers": 0,
        },
    }
    (work / "config.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    return ["oumi", "train", "-c", str(work / "config.yaml")]


def saved_model(work: Path, job: dict) -> Path:
    return work / "out"


def train_seconds(work: Path, job: dict) -> float:
    history = json.loads((work / "out" / "trainer_state.json").read_text())["log_history"]
    return next(entry["train_runtime"] for entry in reversed(history) if "train_runtime" in entry)
