"""ftlab's trainer against a plain TRL script in one process (same model, data, steps): tokens/s, peak memory, time."""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from benchmarks.measure import environment, ratio, release_memory, run_case, table  # noqa: E402
from ftlab.config.schema import register  # noqa: E402

LLAMA_1B = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,  # TinyLlama 1.1B
    num_attention_heads=32,
    num_key_value_heads=4,
    max_position_embeddings=2048,
)
LORA = dict(
    r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    task_type="CAUSAL_LM",  # as conf/strategy/lora.yaml
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
)


def compose_cfg(overrides):
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def variable_length_data(folder: Path, max_answers: int) -> str:
    """The shipped HR questions, each answered by 1..max_answers consecutive shipped answers (deterministic): from
    one answer (~55 tokens with the chat template) to max_answers of them (~22 tokens each)."""
    rows = [json.loads(line) for line in (ROOT / "data/hr/qa.jsonl").read_text().splitlines() if line.strip()]
    path = folder / f"variable_length_{max_answers}.jsonl"
    with path.open("w") as out:
        for i, row in enumerate(rows):
            k = 1 + (i * 7) % max_answers
            answer = " ".join(rows[(i + j) % len(rows)]["completion"] for j in range(k))
            out.write(json.dumps({"prompt": row["prompt"], "completion": answer}) + "\n")
    return str(path)


def ftlab_trainer(overrides, out_dir: Path):
    """ftlab's trainer, built exactly as ftlab/recipe.py builds it."""
    from transformers import set_seed

    from ftlab.data.load import prepare
    from ftlab.model.load import load_base, load_tokenizer
    from ftlab.model.source import model_path
    from ftlab.model.strategy import apply_strategy
    from ftlab.train.trainer import build_trainer, performance, trainer_args

    cfg = compose_cfg(overrides)
    set_seed(cfg.seed)
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, path)
    train_data, _, _ = prepare(cfg.data, cfg.objective.data_format, cfg.data.system_prompt, tokenizer, cfg.seed)
    model = load_base(cfg.model, cfg.quant, path, dist_name=cfg.dist.name)
    model, peft_config = apply_strategy(model, cfg.strategy)
    args = trainer_args(cfg, out_dir, "none", has_eval_data=False, model=model)
    trainer, _ = build_trainer(
        cfg.objective.trainer, model, tokenizer, args, train_data, None, peft_config, cache=False
    )
    return trainer, performance(args, trainer.model)


def trl_trainer(
    model_dir: str,
    train_data,
    steps: int,
    batch: int,
    lr: float,
    max_length: int,
    seed: int,
    out_dir: Path,
    lora: bool = False,
    **extra,
):
    """The plain script a user writes from TRL's SFT docs: a model folder, prompt/completion rows, TRL's defaults
    (gradient checkpointing on, fp32 weights from a path, fused AdamW) except what a CPU needs (bf16=False), bf16
    weights on a GPU, and no checkpoints. include_num_input_tokens_seen only counts tokens as ftlab's trainer does."""
    from trl import SFTConfig, SFTTrainer

    from ftlab.train.speedups import labelled_logits_only, lm_head_positions

    labelled_logits_only(False)  # TRL's own LM-head path (ftlab's CPU switch is process-wide, set by ftlab's side)
    cuda = torch.cuda.is_available()
    config = SFTConfig(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=lr,
        max_length=max_length,
        seed=seed,
        report_to="none",
        save_strategy="no",
        include_num_input_tokens_seen="non_padding",
        **({"model_init_kwargs": {"dtype": "bfloat16"}} if cuda else {"bf16": False}),
        **extra,
    )
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(**LORA)
    trainer = SFTTrainer(model=model_dir, args=config, train_dataset=train_data, peft_config=peft_config)
    settings = {
        "gradient_checkpointing": config.activation_checkpointing,
        "bf16": config.bf16,
        "dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch."),
        "attention": trainer.model.config._attn_implementation,
        "optimizer": str(getattr(config.optim, "value", config.optim)),
        "packing": config.packing,
        "lm_head_positions": lm_head_positions(next(trainer.model.parameters()).device),
    }
    return trainer, settings


def ftlab_rows(overrides, path: str):
    """ftlab's prepared training rows (checked, cleaned, in chat form): what both sides train on."""
    from ftlab.data.load import prepare
    from ftlab.model.load import load_tokenizer

    cfg = compose_cfg(overrides)
    return prepare(
        cfg.data, cfg.objective.data_format, cfg.data.system_prompt, load_tokenizer(cfg.model, path), cfg.seed
    )[0], cfg


def cpu_cases(steps: int, batch: int, repeats: int, warmup: int, folder: Path) -> dict:
    from ftlab.model.source import model_path

    common = [f"train.batch_size={batch}", "wandb.mode=disabled"]
    path = model_path(compose_cfg(common).model)

    def ftlab_side(extra):
        return lambda n: ftlab_trainer([*common, f"train.max_steps={n or steps}", *extra], folder / "ftlab")

    def trl_side(extra_overrides=(), **extra):
        rows, c = ftlab_rows([*common, *extra_overrides], path)
        return lambda n: trl_trainer(
            path, rows, n or steps, batch, c.optimizer.lr, c.train.max_length, c.seed, folder / "trl", **extra
        )

    case = run_case(
        "cpu",
        {
            "ftlab": ftlab_side([]),
            "ftlab_checkpointing": ftlab_side(["train.gradient_checkpointing=true"]),
            "ftlab_all_positions": ftlab_side(["train.labelled_logits_only=false"]),
            "trl": trl_side(),
        },
        repeats,
        warmup,
        "tiny model, shipped HR data: ftlab defaults (no gradient checkpointing below 1B parameters, "
        "LM head on labelled positions only), with train.gradient_checkpointing=true (TRL's default) "
        "and with train.labelled_logits_only=false (TRL's CPU LM-head path) vs the TRL script",
    )
    case.update(
        ratio=ratio(case, "ftlab", "trl"),
        ratio_checkpointing=ratio(case, "ftlab_checkpointing", "trl"),
        ratio_all_positions=ratio(case, "ftlab_all_positions", "trl"),
    )
    cases = {"cpu": case}

    data = [f"data.train.prompt_completion={variable_length_data(folder, 10)}"]
    case = run_case(
        "cpu_variable_length",
        {
            "ftlab": ftlab_side(data),
            "ftlab_packing": ftlab_side([*data, "train.packing=true"]),
            "trl": trl_side(data),
            "trl_packing": trl_side(data, packing=True),
        },
        repeats,
        warmup,
        "tiny model, variable-length answers (1-10 shipped answers, ~55-260 tokens): ftlab with "
        "train.packing null (off for answers, the default) and true, the TRL script without and with "
        "packing=True (TRL flattens each packed batch into one row)",
    )
    case.update(
        ratio=ratio(case, "ftlab", "trl"),
        packing_speedup=ratio(case, "ftlab_packing", "ftlab"),
        ratio_packing=ratio(case, "ftlab_packing", "trl_packing"),
    )
    cases["cpu_variable_length"] = case
    return cases


def matmul_peak_tflops(n: int = 8192, repeats: int = 20) -> float:
    """Measured bf16 matrix-product throughput of this GPU: the denominator of MFU."""
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        torch.matmul(a, b)
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (start.elapsed_time(end) / 1000) / 1e12


def build_llama(folder: Path, tokenizer_dir: str, dims: dict) -> tuple[str, int]:
    """A random-initialised Llama (bf16, safetensors) with the tiny model's tokenizer (its 2048 ids all lie inside
    the model's vocabulary). Returns (folder, parameters in matrix products: all but the input embedding)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        **dims,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        use_cache=False,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    matmul_params = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    release_memory()
    return str(folder), matmul_params


def gpu_cases(steps: int, batch: int, repeats: int, warmup: int, folder: Path) -> dict:
    if not torch.cuda.is_available():
        print("gpu case skipped: CUDA is not available on this machine", flush=True)
        return {"gpu": {"skipped": "CUDA is not available"}}
    return llama_cases(steps, batch, repeats, warmup, folder, matmul_peak_tflops(), LLAMA_1B)


def llama_cases(
    steps: int,
    batch: int,
    repeats: int,
    warmup: int,
    folder: Path,
    peak_tflops: float,
    dims: dict,
    max_length: int = 1024,
) -> dict:
    """LoRA and full fine-tuning of a random-initialised Llama, ftlab's defaults (bf16 weights, flash attention
    when installed, fused AdamW, Liger when installed) vs the TRL script, with model FLOPs utilisation."""
    from ftlab.model.source import model_path

    path, n_matmul = build_llama(folder / "llama", model_path(compose_cfg([]).model), dims)
    data = variable_length_data(folder, 40)  # ~55-900 tokens: rows long enough to keep a 1B model busy
    cases = {}
    for strategy, lr in (("lora", 2e-4), ("full", 2e-5)):  # the configs' advice for real models
        common = [
            "model=local",
            f"model.path={path}",
            f"strategy={strategy}",
            f"optimizer.lr={lr}",
            f"train.batch_size={batch}",
            f"train.max_length={max_length}",
            f"data.train.prompt_completion={data}",
            "wandb.mode=disabled",
        ]
        rows, c = ftlab_rows(common, path)
        case = run_case(
            f"gpu_{strategy}",
            {
                "ftlab": lambda n, o=common: ftlab_trainer([*o, f"train.max_steps={n or steps}"], folder / "ftlab"),
                "trl": lambda n, s=strategy, r=rows, lr=lr, seed=c.seed: trl_trainer(
                    path, r, n or steps, batch, lr, max_length, seed, folder / "trl", lora=s == "lora"
                ),
            },
            repeats,
            warmup,
            f"random-init Llama ({n_matmul / 1e9:.2f}B parameters in matrix products), {strategy}",
        )
        # Model FLOPs per token (no attention-score term, no recomputation by gradient checkpointing): full fine-
        # tuning 6N (forward 2N, backward 4N: input and weight gradients); LoRA about 4N (forward 2N, backward 2N for
        # the input gradients through the frozen weights, no weight gradients) plus 6 per adapter parameter.
        for variant in case["variants"].values():
            if "error" in variant:
                continue
            adapter = variant["settings"]["trainable_params"] if strategy == "lora" else 0
            flops = (6 if strategy == "full" else 4) * n_matmul + 6 * adapter
            variant["mfu"] = flops * variant["tokens_per_s"] / (peak_tflops * 1e12)
        case.update(ratio=ratio(case, "ftlab", "trl"), matmul_peak_tflops=peak_tflops, matmul_params=n_matmul)
        cases[f"gpu_{strategy}"] = case
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--case",
        choices=["cpu", "gpu", "all"],
        default="all",
        help="all: the CPU cases, and the GPU cases when CUDA is available",
    )
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=None, help="per device (default: 16 on CPU, 8 on GPU)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per variant (order alternates)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps per variant first (0: none)")
    parser.add_argument("--out", default="benchmarks/results.json", help="JSON file for all the figures")
    a = parser.parse_args(argv)
    cases = {}
    with tempfile.TemporaryDirectory(prefix="ftlab-bench-") as tmp:
        if a.case in ("cpu", "all"):
            cases.update(cpu_cases(a.steps, a.batch_size or 16, a.repeats, a.warmup_steps, Path(tmp)))
        if a.case in ("gpu", "all"):
            cases.update(gpu_cases(a.steps, a.batch_size or 8, a.repeats, a.warmup_steps, Path(tmp)))
    result = {
        **environment(),
        "command": " ".join(sys.argv),
        "steps": a.steps,
        "repeats": a.repeats,
        "warmup_steps": a.warmup_steps,
        "reported": "per variant the repeat with the best tokens/s (other "
        "load only slows a run down; median_tokens_per_s too); peak memory: the highest of the repeats",
        "cases": cases,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print("\n" + table(cases) + f"\n\nfigures: {out}")


if __name__ == "__main__":
    main()
