"""LLaMA-Factory as its README runs it: `llamafactory-cli train config.yaml`, an alpaca-format dataset registered in
the dataset folder's dataset_info.json (the system prompt a column of its own), its built-in `chatml` template (the
tiny model's own template is ChatML too). `use_cpu: true` is what its trainer needs on a machine without a GPU."""

import json
from pathlib import Path

NAME = "llamafactory"
VERSION = "0.9.5"
INSTALL = ["llamafactory==0.9.5"]
ENV = {}


def prepare(work: Path, job: dict) -> list[str]:
    data = work / "data"
    data.mkdir()
    rows = [json.loads(line) for line in Path(job["train_file"]).read_text(encoding="utf-8").splitlines()]
    alpaca = [{"instruction": r["prompt"], "output": r["completion"], "system": r["system"]} for r in rows]
    (data / "hr.json").write_text(json.dumps(alpaca, ensure_ascii=False))
    columns = {"prompt": "instruction", "response": "output", "system": "system"}
    (data / "dataset_info.json").write_text(json.dumps({"hr": {"file_name": "hr.json", "columns": columns}}))
    config = {
        "model_name_or_path": job["model"],
        "stage": "sft",
        "do_train": True,
        "finetuning_type": job["finetuning"],
        "dataset": "hr",
        "dataset_dir": str(data),
        "template": job["template"],
        "cutoff_len": job["max_length"],
        "output_dir": str(work / "out"),
        "overwrite_output_dir": True,
        "logging_steps": job["logging_steps"],
        "save_strategy": "no",  # the final model is saved all the same (trainer.save_model at the end)
        "per_device_train_batch_size": job["batch_size"],
        "gradient_accumulation_steps": job["grad_accum"],
        "learning_rate": job["lr"],
        "num_train_epochs": job["epochs"],
        "max_steps": job["max_steps"],
        "lr_scheduler_type": job["scheduler"],
        "warmup_ratio": job["warmup_ratio"],
        "weight_decay": job["weight_decay"],
        "max_grad_norm": job["max_grad_norm"],
        "optim": job["optim"],
        "seed": job["seed"],
        "bf16": False,
        "use_cpu": True,
        "report_to": "none",
    }
    (work / "config.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    return ["llamafactory-cli", "train", str(work / "config.yaml")]


def saved_model(work: Path, job: dict) -> Path:
    return work / "out"


def train_seconds(work: Path, job: dict) -> float:
    return json.loads((work / "out" / "train_results.json").read_text())["train_runtime"]
