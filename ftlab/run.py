"""The ftlab run script: compose, check, load, evaluate the base, train, evaluate again, save, record, summarise."""

import logging
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ftlab.config import register
from ftlab.paths import PROJECT_ROOT

log = logging.getLogger("ftlab")
GROUPS = ("model", "strategy", "objective", "data", "quant", "optimizer")
PROMPT_METHODS = ("prefix", "prompt", "ia3")
PAIRED = ("reward", "dpo", "orpo")  # objectives whose held-out data are preference pairs
# The eval numbers a results.json carries, for the fine-tuned model and (base_...) the base.
SCALARS = ("loss", "perplexity", "answer_accuracy", "pairs", "pairwise_accuracy", "mean_margin", "reward")
register()  # the typed schema: Hydra validates every composed config against it, before main() runs


def incompatibility(cfg: DictConfig) -> str | None:
    """Why this combination cannot train, found before anything loads (None when it can)."""
    quantized = cfg.quant.bnb is not None
    if quantized and cfg.strategy.kind in ("full", "freeze"):
        return (
            f"strategy={cfg.strategy.name} trains base weights, which a {cfg.quant.name} bitsandbytes base cannot "
            f"do (transformers refuses it): use a PEFT strategy such as strategy=lora with quant={cfg.quant.name}"
        )
    if quantized and cfg.strategy.kind == "adapter":
        return f"strategy=adapter trains on a float base; with quant={cfg.quant.name} use strategy=lora (QLoRA)"
    if cfg.strategy.name == "dora" and cfg.quant.name == "8bit" and not _cuda():
        return "strategy=dora with quant=8bit fails on CPU (bitsandbytes 0.50 loses the int8 scales): use quant=4bit"
    if cfg.strategy.name == "ia3" and quantized and cfg.model.dtype != "float32":
        return (
            f"strategy=ia3 on a {cfg.quant.name} base needs model.dtype=float32 (PEFT's IA3 then gives float32 "
            f"keys and values beside {cfg.model.dtype} queries, which attention refuses)"
        )
    if cfg.objective.trainer == "reward" and (cfg.strategy.kind == "adapter" or cfg.strategy.name in PROMPT_METHODS):
        return f"objective=reward trains a score head with strategy=full, freeze, lora or dora, not {cfg.strategy.name}"
    target = (cfg.strategy.peft or {}).get("_target_", "")
    if target.endswith("PrefixTuningConfig") and cfg.train.gradient_checkpointing:
        return "strategy=prefix cannot run with train.gradient_checkpointing=true (PEFT's prefix cache breaks it)"
    return None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One run. Returns cfg.metric (what a Hydra sweeper such as Optuna optimises), None when it did not finish."""
    started = time.perf_counter()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(cfg.output_dir or hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # Under accelerate/torchrun every rank runs this script; only rank 0 writes results, weights and W&B logs.
    is_main = int(os.environ.get("RANK", "0")) == 0
    results = {
        "status": "running",  # what a crashed run (killed, out of host memory) leaves behind: the report says so
        "run_name": cfg.run_name,
        "choices": {g: hydra_cfg.runtime.choices.get(g) for g in GROUPS},
        "overrides": list(hydra_cfg.overrides.task),
        "seed": cfg.seed,
    }
    from ftlab.tracking import redact, write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    results_path = run_dir / "results.json"
    if is_main:
        # The resolved config beside Hydra's own (.hydra/ keeps the unresolved one and the overrides), secrets hidden.
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(redact(OmegaConf.to_container(cfg, resolve=True))))
        write_json(results_path, results)
    reason = incompatibility(cfg)
    if reason:
        if is_main:
            write_json(results_path, {**results, "status": "skipped", "reason": reason})
        log.warning("skipped: %s", reason)
        if multirun:
            return None  # the other runs of the sweep go on; the report lists this one with its reason
        raise SystemExit(f"error: {reason}")
    try:
        results.update(train_and_evaluate(cfg, run_dir, is_main, multirun, hydra_cfg))
    except Exception as err:
        _close_wandb()
        if is_main:
            write_json(results_path, {**results, "status": "failed", "reason": f"{type(err).__name__}: {err}",
                                      "wall_s": time.perf_counter() - started})
        if multirun:
            # The other runs of the sweep go on. The report lists this one with its reason, and the sweep's report
            # callback (conf/config.yaml: hydra.callbacks) makes the sweep's exit code say that a run failed.
            log.exception("run %s failed", cfg.run_name)
            return None
        # Bad input (data errors are ValueErrors, a missing file an OSError) or divergence: one line, no trace.
        if isinstance(err, (ValueError, OSError, FloatingPointError)):
            raise SystemExit(f"error: {err}") from None
        raise
    results["status"] = "ok"
    results["wall_s"] = time.perf_counter() - started
    if is_main:
        write_json(results_path, results)
        print_summary(results, run_dir)
    return metric_value(results, cfg.metric)


def reference_model(cfg: DictConfig, trainer_name: str) -> str | None:
    """What DPO/KTO/ORPO compare the policy with: recorded, since it decides memory and results."""
    if trainer_name not in ("dpo", "kto"):
        return None
    if cfg.objective.reference == "precompute":
        return "log-probabilities of the starting model, computed once before training"
    if cfg.strategy.kind == "peft":
        return "the policy with its adapter disabled (no second model in memory)"
    return "a frozen copy of the starting model"


def metric_value(results: dict, dotted: str) -> float | None:
    value = results
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _close_wandb() -> None:
    """A run that failed mid-way closes its W&B run as failed, so the next run of a sweep starts a fresh one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=1)


def train_and_evaluate(cfg: DictConfig, run_dir: Path, is_main: bool, multirun: bool, hydra_cfg) -> dict:
    # Heavy imports here, not at module level: `python -m ftlab --help` and `--cfg job` stay instant.
    # peft imports torchao, which warns about CUDA kernels it cannot load on a CPU machine: noise, not news.
    for noisy in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers import set_seed

    from ftlab.data import eval_dataset, eval_pairs, eval_questions, train_dataset
    from ftlab.evaluate import evaluate, paired_answers, worst_failures
    from ftlab.model import apply_strategy, count_params, load_base, load_tokenizer, model_path, save_trained
    from ftlab.reward_eval import pairwise_accuracy, score_answers
    from ftlab.tracking import environment, log_eval, start_wandb, write_json
    from ftlab.train import ONLINE, build_trainer, loss_history, peak_memory_mb, reset_peak_memory, reward_functions
    from ftlab.train import trainer_args

    # A preset's placeholder (`model.path: <the SFT run directory>`) must be replaced on the command line.
    for key in ("model.path", "eval.reward_model", "objective.reward_model"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
            raise ValueError(f"{key}: this preset needs {value[1:-1]}: add {key}=DIR to the command")

    # Same config and seed on the same machine: the same losses (tests/test_sweeps.py checks it).
    set_seed(cfg.seed)
    system_prompt = cfg.data.system_prompt
    env = environment(list(hydra_cfg.overrides.task))
    trainer_name = cfg.objective.trainer
    # A reward model is the same network with a one-score head; it is judged on held-out preference pairs.
    reward_model = trainer_name == "reward"

    # 1. Data first: a bad file fails in seconds, not after a model has loaded. model.path may name an earlier
    # run (SFT before DPO): its trained weights are merged into its base once, and that is the starting model.
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, path)
    train_data = train_dataset(cfg.data, cfg.objective.data_format, system_prompt)
    rows = [] if reward_model else eval_questions(cfg.data, cfg.eval.max_questions)
    pairs = eval_pairs(cfg.data, system_prompt, cfg.eval.max_questions) if trainer_name in PAIRED else None
    if reward_model and pairs is None:
        raise ValueError("data.eval_pairs: objective=reward needs held-out preference pairs to be judged on")
    eval_data = pairs if trainer_name in PAIRED else eval_dataset(rows, cfg.objective.data_format, system_prompt)

    # 2. The base model, quantized as the run asks, evaluated before anything changes it: the "before" numbers.
    model = load_base(cfg.model, cfg.quant, path, "reward" if reward_model else "causal_lm")
    base = pairwise_accuracy(model, tokenizer, pairs) if reward_model else \
        evaluate(model, tokenizer, rows, system_prompt, cfg.eval)

    # 3. The strategy decides what trains; PEFT methods are wrapped by the trainer. Runs of one sweep share a W&B
    # group (the sweep's directory name) and carry their group choices as tags, so W&B can compare them.
    model, peft_config = apply_strategy(model, cfg.strategy, "SEQ_CLS" if reward_model else "CAUSAL_LM")
    rewards = reward_functions(cfg.objective) if trainer_name in ONLINE else None
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    group = cfg.wandb.group or (Path(hydra_cfg.sweep.dir).name if multirun else None)
    tags = [f"{g}={hydra_cfg.runtime.choices.get(g)}" for g in GROUPS] + list(cfg.wandb.tags)
    wandb_run = start_wandb({**plain_cfg, "environment": env}, cfg.wandb, run_dir, cfg.run_name, group, tags) \
        if is_main else None
    args = trainer_args(cfg, run_dir, "wandb" if wandb_run else "none", has_eval_data=eval_data is not None)
    trainer, data_record = build_trainer(trainer_name, model, tokenizer, args, train_data, eval_data, peft_config,
                                         cache=cfg.train.cache_tokenized, rewards=rewards)
    params = count_params(trainer.model)

    # 4. Train.
    reset_peak_memory()
    started = time.perf_counter()
    train_out = trainer.train()
    runtime = time.perf_counter() - started
    train_peak = peak_memory_mb()
    history = loss_history(trainer.state.log_history)

    # 5. The same evaluation on the fine-tuned model: the "after" numbers; a reward model (eval.reward_model, a
    # reward run) also scores the base's and the tuned model's answers to the held-out questions.
    reset_peak_memory()
    if reward_model:
        tuned = pairwise_accuracy(trainer.model, tokenizer, pairs)
    else:
        tuned = evaluate(trainer.model, tokenizer, rows, system_prompt, cfg.eval)
        if cfg.eval.reward_model and rows:
            tuned["reward"] = score_answers(cfg.eval.reward_model, rows, system_prompt, base["answers"],
                                            tuned["answers"], cfg.eval.batch_size)

    # 6. Save what trained and the records; the base model stays where it came from.
    out = {
        "params": params,
        "train": {
            "loss": train_out.training_loss,
            "final_logged_loss": history["train"][-1][1] if history["train"] else None,
            "steps": trainer.state.global_step,
            "runtime_s": runtime,
            "tokens": trainer.state.num_input_tokens_seen,
            "tokens_per_s": trainer.state.num_input_tokens_seen / runtime if runtime else None,
            "peak_memory_mb": train_peak,
            "examples": len(train_data),
        },
        "eval": {
            **({"questions": len(rows)} if rows else {}),
            **{k: tuned[k] for k in SCALARS if k in tuned},
            **{f"base_{k}": base[k] for k in SCALARS if k in base and k != "pairs"},
            "peak_memory_mb": peak_memory_mb(),
        },
        "history": history,
        "reference": reference_model(cfg, trainer_name),
        "data": data_record,
        "environment": env,
    }
    answers = paired_answers(rows, base, tuned) if rows else []
    if answers:
        sample = next((a for a in answers if a["question"] == cfg.eval.sample_question), answers[0])
        out["sample"] = {k: sample[k] for k in ("question", "expected", "base_answer", "tuned_answer")}
    if is_main:
        save_trained(trainer.model, tokenizer, cfg.strategy, run_dir / "model")
        out["saved"] = {"path": "model", "bytes": sum(f.stat().st_size for f in (run_dir / "model").rglob("*")
                                                      if f.is_file())}
        write_json(run_dir / "answers.json", {"answers": answers})
        write_json(run_dir / "failures.json", {"failures": worst_failures(answers, cfg.eval.num_failures)})
        metrics = {f"eval/{k}": v for k, v in out["eval"].items() if isinstance(v, (int, float))}
        metrics |= {f"eval/reward_{k}": v for k, v in tuned.get("reward", {}).items() if isinstance(v, float)}
        metrics |= {f"final/{k}": v for k, v in out["train"].items() if v is not None}
        metrics |= {"params/trainable": params["trainable"], "params/total": params["total"],
                    "saved/bytes": out["saved"]["bytes"]}
        table = [[a["question"], ", ".join(a["expected"]), a["base_answer"], a["tuned_answer"], a["tuned_correct"]]
                 for a in answers]
        log_eval(wandb_run, metrics, table)
        if wandb_run is not None:
            out["wandb"] = {"mode": wandb_run.settings.mode, "dir": str(Path(wandb_run.dir).parent), "group": group,
                            "id": wandb_run.id}
            wandb_run.finish()
    return out


def print_summary(results: dict, run_dir: Path) -> None:
    e, t, p = results["eval"], results["train"], results["params"]
    r = e.get("reward") or {}
    lines = [
        f"\n== ftlab run {results['run_name']}: {results['status']} ==",
        f"answer accuracy  base {e['base_answer_accuracy']:.2f} -> fine-tuned {e['answer_accuracy']:.2f}"
        if e.get("answer_accuracy") is not None else "",
        f"held-out loss    base {e['base_loss']:.3f} -> fine-tuned {e['loss']:.3f}  (perplexity {e['perplexity']:.1f})"
        if e.get("loss") is not None else "",
        f"pair accuracy    base {e['base_pairwise_accuracy']:.2f} -> trained {e['pairwise_accuracy']:.2f}  "
        f"(chosen scored above rejected, {e['pairs']} held-out pairs)" if "pairwise_accuracy" in e else "",
        f"reward model     base answers {r['base_mean']:.2f} -> fine-tuned {r['tuned_mean']:.2f}, "
        f"win rate {r['win_rate']:.2f}" if r else "",
        f"trainable params {p['trainable']:,} of {p['total']:,} ({100 * p['trainable'] / p['total']:.2f}%)",
        f"training         {t['steps']} steps, {t['runtime_s']:.0f} s, {t['tokens_per_s'] or 0:.0f} tokens/s, "
        f"peak memory {t['peak_memory_mb']:.0f} MB",
    ]
    if "sample" in results:
        s = results["sample"]
        lines += [f"Q: {s['question']}  (expected: {', '.join(s['expected'])})",
                  f"  base:       {s['base_answer']}", f"  fine-tuned: {s['tuned_answer']}"]
    lines.append(f"results: {run_dir / 'results.json'}")
    print("\n".join(line for line in lines if line), flush=True)
