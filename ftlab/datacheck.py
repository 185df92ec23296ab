"""python -m ftlab.datacheck [overrides]: what a run would train on, checked and measured, before any model loads."""

import statistics
import sys
import tempfile
import time
from pathlib import Path

from ftlab.core.files import PROJECT_ROOT, write_atomic, write_json, write_png

GREEN, DIM, RESET = "\033[32m", "\033[2m", "\033[0m"


def main(argv=None) -> None:
    """The same config groups as a run (data, model, objective, train): counts, token lengths and a histogram, what
    max_length truncates, tokens per epoch, one example as TRL tokenizes and masks it, and the training compute."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ftlab.datacheck", description=main.__doc__)
    parser.add_argument("overrides", nargs="*", help="config overrides, as for python -m ftlab (data=custom ...)")
    parser.add_argument(
        "--out", help="folder for datacheck.json/.md, lengths.png, example.txt (default outputs/datacheck/<time>)"
    )
    parser.add_argument(
        "--gpu-tflops",
        type=float,
        default=400.0,
        help="achieved training throughput in TFLOP/s for the time estimate (default 400: an H100 "
        "in bf16 at about 40%% of its dense peak)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out or f"outputs/datacheck/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    try:
        report = check(compose(args.overrides), out, args.gpu_tflops)
    except (ValueError, OSError) as err:  # bad data or config: one line, no half-written report
        raise SystemExit(f"error: {err}") from None
    print(report, flush=True)


def compose(overrides: list):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ftlab.config.schema import register

    register()
    try:
        with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ValueError(str(err).splitlines()[0]) from None


def check(cfg, out: Path, gpu_tflops: float) -> str:
    import logging

    for noisy in ("torchao", "torch.utils._pytree", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import datasets

    from ftlab.data.load import eval_questions, prepare

    datasets.disable_progress_bars()
    from ftlab.model.load import load_tokenizer
    from ftlab.model.source import model_path

    fmt, system_prompt = cfg.objective.data_format, cfg.data.system_prompt
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, path)
    train, validation, record = prepare(cfg.data, fmt, system_prompt, tokenizer, cfg.seed)
    lengths = field_lengths(train, tokenizer)
    total = lengths["total"]
    max_length = cfg.train.max_length
    prepared = tokenized(cfg, train, tokenizer, out)
    trained = (
        [sum(label != -100 for label in row["labels"]) for row in prepared]
        if "labels" in prepared.column_names
        else [len(row["input_ids"]) for row in prepared]
    )
    params = parameter_count(cfg.model, path)
    epoch_tokens = sum(len(row["input_ids"]) for row in prepared)
    flops = 6 * params * epoch_tokens * cfg.train.epochs
    result = {
        "data": record,
        "objective": cfg.objective.name,
        "format": fmt,
        "model": cfg.model.path,
        "eval_questions": len(eval_questions(cfg.data, None)) if cfg.data.eval else 0,
        "tokens": {name: summary(values) for name, values in lengths.items()},
        "max_length": max_length,
        "truncated": sum(n > max_length for n in total),
        "epoch": {
            "examples": len(prepared),
            "tokens": epoch_tokens,
            "trained_tokens": sum(trained),
            "packed": "seq_lengths" in prepared.column_names,
        },
        "compute": {
            "params": params,
            "epochs": cfg.train.epochs,
            "flops": flops,
            "gpu_tflops": gpu_tflops,
            "hours": flops / (gpu_tflops * 1e12) / 3600,
        },
    }
    example, coloured = masked_example(prepared[0], tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    histogram(lengths, max_length, out / "lengths.png")
    write_atomic(out / "example.txt", example + "\n")
    text = render(result, coloured if sys.stdout.isatty() else example, out)
    write_atomic(out / "datacheck.md", render(result, example, out))
    write_json(out / "datacheck.json", result)
    return text


def field_lengths(dataset, tokenizer) -> dict:
    """Tokens per example: of each field (prompt, completion, chosen, ...; a conversation per role) and in total,
    through the chat template as the trainer sees them."""

    def count(turns_or_text, generation_prompt=False):
        if isinstance(turns_or_text, str):
            return len(tokenizer(turns_or_text, add_special_tokens=False)["input_ids"])
        return len(
            tokenizer.apply_chat_template(
                turns_or_text, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
            )["input_ids"]
        )

    lengths = {}
    for row in dataset:
        fields = {}
        if "messages" in row:
            for turn in row["messages"]:
                fields[turn["role"]] = fields.get(turn["role"], 0) + count(turn["content"])
            fields["total"] = count(row["messages"])
        else:
            for key in ("prompt", "completion", "chosen", "rejected", "text"):
                if row.get(key) is not None:
                    fields[key] = count(row[key], generation_prompt=key == "prompt")
            answer = row.get("completion") or row.get("chosen")
            fields["total"] = count(row["prompt"] + answer) if isinstance(answer, list) else sum(fields.values())
        for key, value in fields.items():
            lengths.setdefault(key, []).append(value)
    return lengths


def summary(values: list) -> dict:
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def tokenized(cfg, train, tokenizer, out: Path):
    """The dataset exactly as TRL's SFTTrainer tokenizes, templates, masks (labels -100) and packs it, with this
    run's arguments; the model is a throwaway one-layer stand-in (data preparation never looks at the weights)."""
    from omegaconf import OmegaConf
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftlab.train.trainer import build_trainer, trainer_args

    if cfg.objective.data_format not in ("prompt_completion", "messages", "text"):
        from datasets import Dataset

        # Preference and RL trainers tokenize their own way; shown here as prompt + (chosen) answer, the loss on
        # the answer. Online RL (a prompt only) trains on answers the policy writes during training.
        rows = {"input_ids": [], "labels": []}
        for r in train:
            prompt = tokenizer.apply_chat_template(
                r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
            answer = r.get("chosen") or r.get("completion")
            ids = (
                tokenizer.apply_chat_template(r["prompt"] + answer, tokenize=True, return_dict=True)["input_ids"]
                if answer
                else prompt
            )
            rows["input_ids"].append(ids)
            rows["labels"].append([-100] * len(prompt) + ids[len(prompt) :])
        return Dataset.from_dict(rows)
    stand_in = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    sft_cfg = OmegaConf.merge(cfg, {"objective": {"trainer": "sft"}})
    with tempfile.TemporaryDirectory() as scratch:  # the trainer's output_dir: nothing is written there
        args = trainer_args(sft_cfg, Path(scratch), "none", has_eval_data=False)
        trainer, _ = build_trainer("sft", stand_in, tokenizer, args, train, None, None, cache=cfg.train.cache_tokenized)
    return trainer.train_dataset


def masked_example(row: dict, tokenizer) -> tuple[str, str]:
    """One example as tokens: trained ones (labels not -100) in [[ ]] (and green on a terminal), the rest as is."""
    labels = row.get("labels") or row["input_ids"]
    plain, coloured, inside = [], [], False
    for token, label in zip(row["input_ids"], labels):
        trained, piece = label != -100, tokenizer.decode([token])
        if trained != inside:
            plain.append("[[" if trained else "]]")
            inside = trained
        plain.append(piece)
        coloured.append(f"{GREEN if trained else DIM}{piece}{RESET}")
    return "".join(plain) + ("]]" if inside else ""), "".join(coloured)


def parameter_count(model_cfg, path: str) -> int:
    """Parameters of the model a run would train, from its config alone (built on the meta device: no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(
        path, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=model_cfg.trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def histogram(lengths: dict, max_length: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    top = max(max(max(v) for v in lengths.values()), max_length)
    bins = [top * i / 50 for i in range(51)]  # shared bins: fields compare at a glance
    for name, values in lengths.items():
        ax.hist(
            values,
            bins=bins,
            alpha=0.5 if name != "total" else 0.8,
            label=name,
            histtype="stepfilled" if name != "total" else "step",
            linewidth=2,
        )
    ax.axvline(max_length, color="red", linestyle="--", label=f"train.max_length = {max_length}")
    ax.set(xlabel="tokens per example", ylabel="examples", title="Token lengths of the training examples")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    write_png(path, figure, 110)
    plt.close(figure)


def duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min" if hours >= 1 / 60 else f"{hours * 3600:.2g} s"


def render(result: dict, example: str, out: Path) -> str:
    d, e, c = result["data"], result["epoch"], result["compute"]
    dropped = ", ".join(f"{n} x {reason}" for reason, n in d["invalid_reasons"].items())
    lines = [
        f"== ftlab data check: {d['source']} ({d['format']} data, read as {result['format']} by "
        f"objective={result['objective']}) ==",
        f"records {d['records']}, invalid dropped {d['invalid_dropped']}{f' ({dropped})' if dropped else ''}, "
        f"duplicates removed {d['duplicates_removed']}, too short {d.get('too_short', 0)}, too long "
        f"{d.get('too_long', 0)} -> train {d['train']}, validation {d['validation']}",
        f"held-out questions {result['eval_questions']}, of which also in training: {d['leaked_eval_questions']}",
        "tokens per example (min / median / p95 / max):",
        *(
            f"  {name:<12} {s['min']} / {s['median']:.0f} / {s['p95']} / {s['max']}"
            for name, s in result["tokens"].items()
        ),
        f"train.max_length {result['max_length']} truncates {result['truncated']} of {d['train']} examples",
        f"one epoch: {e['tokens']:,} tokens in {e['examples']} sequences{' (packed)' if e['packed'] else ''}, "
        f"{e['trained_tokens']:,} of them trained (loss)",
        f"compute: 6 x {c['params']:,} params x {e['tokens']:,} tokens x {c['epochs']} epochs = {c['flops']:.2e} "
        f"FLOPs (full fine-tuning; PEFT about 2/3): {duration(c['hours'])} at {c['gpu_tflops']:.0f} TFLOP/s",
        "first example as the trainer sees it ([[trained tokens]]):",
        example,
        f"written: {out / 'datacheck.json'}, {out / 'datacheck.md'}, {out / 'lengths.png'}, {out / 'example.txt'}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
