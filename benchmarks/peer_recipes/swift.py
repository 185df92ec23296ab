"""ms-swift as its docs run it: `swift sft --model ... --dataset ... --tuner_type full ...` with command-line flags (its
examples are shell scripts of flags), the dataset in its standard `messages` JSONL (system, user, assistant turns; loss
on the assistant turn, its default), its built-in `chatml` template (the tiny model's own template is ChatML too).

Flags beyond the job's hyperparameters, each because this model, the job or an offline CPU machine needs it:
- `--model_type llama --template chatml`: a local LlamaForCausalLM folder matches several swift model types (llama, yi,
  openbuddy_llama, codefuse_codellama) and swift refuses to guess; its `llama` type has no template of its own.
- `--fp16 false --bf16 false`: for float32 weights swift turns on fp16 mixed precision unless told not to; the job is
  plain float32.
- `--adam_beta2 0.999`: swift's default is 0.95; the job's adamw_torch means torch's betas, as the other peers run.
- `--truncation_strategy right`: swift's default drops rows longer than max_length; the job truncates them.
- `--save_strategy steps --save_steps <steps>`: swift saves a checkpoint at the last step when saving is on, so this
  writes the final one only (`save_strategy no` would save no model at all); `--save_only_model` skips optimizer state.
- `--check_model false`: the check asks the ModelScope hub whether the local model is the latest; runs are offline.
- `--add_version false`: output/checkpoint-N without swift's `vN-timestamp` level in between.
swift 4 renamed 3.x's `--train_type` to `--tuner_type`."""

import json
from pathlib import Path

from benchmarks.peer_recipes import write_messages

NAME = "swift"
VERSION = "4.6.0"
INSTALL = ["ms-swift==4.6.0"]
ENV = {"USE_HF": "1"}  # any hub name would go to the Hugging Face hub (offline), never ModelScope


def prepare(work: Path, job: dict) -> list[str]:
    write_messages(job, work / "train.jsonl")
    flags = {
        "model": job["model"],
        "model_type": "llama",
        "template": job["template"],
        "use_hf": True,
        "check_model": False,
        "dataset": str(work / "train.jsonl"),
        "split_dataset_ratio": 0,
        "tuner_type": job["finetuning"],
        "torch_dtype": "float32",
        "fp16": False,
        "bf16": False,
        "max_length": job["max_length"],
        "truncation_strategy": "right",
        "packing": False,
        "num_train_epochs": job["epochs"],
        "max_steps": job["max_steps"],
        "per_device_train_batch_size": job["batch_size"],
        "gradient_accumulation_steps": job["grad_accum"],
        "learning_rate": job["lr"],
        "lr_scheduler_type": job["scheduler"],
        "warmup_ratio": job["warmup_ratio"],
        "weight_decay": job["weight_decay"],
        "max_grad_norm": job["max_grad_norm"],
        "optim": job["optim"],
        "adam_beta2": 0.999,
        "seed": job["seed"],
        "gradient_checkpointing": False,
        "eval_strategy": "no",
        "logging_steps": job["logging_steps"],
        "save_strategy": "steps",
        "save_steps": int(job["steps"]),
        "save_only_model": True,
        "output_dir": str(work / "output"),
        "add_version": False,
        "report_to": "none",
    }
    return ["swift", "sft", *[str(part) for key, value in flags.items() for part in (f"--{key}", value)]]


def _summary(work: Path) -> dict:
    """The last record of output/logging.jsonl: swift's summary of the run (last checkpoint, log history)."""
    return json.loads((work / "output" / "logging.jsonl").read_text(encoding="utf-8").splitlines()[-1])


def saved_model(work: Path, job: dict) -> Path:
    return Path(_summary(work)["last_model_checkpoint"])  # output/checkpoint-<last step>


def train_seconds(work: Path, job: dict) -> float:
    return next(log["train_runtime"] for log in reversed(_summary(work)["log_history"]) if "train_runtime" in log)
