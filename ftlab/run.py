"""The ftlab run script: compose, check, load, evaluate the base, train, evaluate again, save, record, summarise."""

import json
import logging
import shutil
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ftlab.config.rules import incompatibility
from ftlab.config.schema import register
from ftlab.core.files import PROJECT_ROOT

log = logging.getLogger("ftlab")
GROUPS = ("model", "strategy", "objective", "data", "quant", "optimizer", "dist")
PAIRED = ("reward", "dpo", "orpo")  # objectives whose held-out data are preference pairs
# The eval numbers a results.json carries, for the fine-tuned model and (base_...) the base.
SCALARS = ("loss", "perplexity", "answer_accuracy", "pairs", "pairwise_accuracy", "mean_margin", "reward")
register()  # the typed schema: Hydra validates every composed config against it, before main() runs


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One run. Returns cfg.metric (what a Hydra sweeper such as Optuna optimises), None when it did not finish."""
    started = time.perf_counter()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(cfg.output_dir or hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # Under accelerate/torchrun every rank runs this script; only rank 0 writes results, weights and W&B logs.
    from ftlab.core.distributed import rank, share

    is_main = rank() == 0
    from ftlab.core.files import write_json
    from ftlab.core.secrets import hide, hide_in_files, redact, secret_values
    from ftlab.runs.checkpoints import Interrupted, claim_run_dir, failure, plain_reason, resume_command

    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    secrets = secret_values(plain_cfg)
    hydra_files = [*Path(hydra_cfg.runtime.output_dir, ".hydra").glob("*.yaml"),
                   *([Path(hydra_cfg.sweep.dir) / "multirun.yaml"] if multirun else [])]
    # The resolved config beside Hydra's own (.hydra/ keeps the unresolved one and the overrides), secrets hidden.
    config_yaml = OmegaConf.to_yaml(redact(plain_cfg))
    results = {
        "status": "running",  # what a crashed run (killed, out of host memory) leaves behind: the report says so
        "run_name": cfg.run_name,
        "choices": {g: hydra_cfg.runtime.choices.get(g) for g in GROUPS},
        "overrides": [hide(o, secrets) for o in hydra_cfg.overrides.task],
        "seed": cfg.seed,
        "resume_command": resume_command(cfg, hydra_cfg, run_dir, multirun, secrets),
        "safety": {"trust_remote_code": cfg.model.trust_remote_code, "allow_pickle": cfg.model.allow_pickle},
    }
    results_path = run_dir / "results.json"
    action, detail = "error", None  # detail: the checkpoint to resume from, or what went wrong
    try:  # rank 0 decides (the other ranks take its decision): two processes never race over one directory
        if is_main:
            hide_in_files(hydra_files, secrets)
            run_dir.mkdir(parents=True, exist_ok=True)
            # A finished run is never replaced unless asked; an unfinished one resumes only with its own settings.
            action, detail = claim_run_dir(run_dir, cfg, config_yaml, multirun)
            if action != "finished":
                (run_dir / "config.yaml").write_text(config_yaml)
                write_json(results_path, {**results, "resumed_from": str(detail)} if detail else results)
    except (ValueError, OSError) as err:  # a finished run, config drift, an output directory that cannot be written
        detail = f"{run_dir}: cannot write ({err.strerror})" if isinstance(err, OSError) and err.strerror else err
    action, detail = share((action, detail))
    if action == "finished":
        log.info("%s finished earlier: kept (overwrite=true replaces it)", run_dir)
        return metric_value(json.loads(results_path.read_text()), cfg.metric)
    if action == "error":
        if multirun:
            log.error("run %s not started: %s", cfg.run_name, detail)
            return None
        raise SystemExit(f"error: {detail}") from None
    checkpoint = detail  # a checkpoint-N folder when resuming, else None
    if checkpoint:
        results["resumed_from"] = str(checkpoint)
        log.info("resuming from %s", checkpoint)
    reason = incompatibility(cfg)
    if reason:
        if is_main:
            write_json(results_path, {**results, "status": "skipped", "reason": reason})
        log.warning("skipped: %s", reason)
        if multirun:
            return None  # the other runs of the sweep go on; the report lists this one with its reason
        raise SystemExit(f"error: {reason}")
    try:
        results.update(train_and_evaluate(cfg, run_dir, is_main, multirun, hydra_cfg, checkpoint, secrets))
    except (Exception, KeyboardInterrupt) as err:
        from ftlab.runs.tracking import close_failed_run

        close_failed_run()
        status, reason = failure(cfg, err, run_dir)
        if is_main:
            try:
                write_json(results_path, {**results, "status": status, "reason": reason,
                                          "wall_s": time.perf_counter() - started})
            except OSError as write_err:  # a full disk: results.json keeps saying "running", never "ok"
                log.error("could not record the failure in %s: %s", results_path, write_err)
        if status == "interrupted":  # Ctrl-C stops a whole sweep, after saving this run's checkpoint
            print(f"{reason}\nresume with: {results['resume_command']}", file=sys.stderr, flush=True)
            raise SystemExit(130) from None
        if multirun:
            # The other runs of the sweep go on. The report lists this one with its reason, and the sweep's report
            # callback (conf/config.yaml: hydra.callbacks) makes the sweep's exit code say that a run failed.
            log.exception("run %s failed", cfg.run_name)
            return None
        # Bad input (data errors are ValueErrors, a missing file an OSError), divergence, out of memory: one line.
        if isinstance(err, (ValueError, OSError, FloatingPointError, Interrupted)) or reason != plain_reason(err):
            raise SystemExit(f"error: {reason}") from None
        raise
    results["status"] = "ok"
    results["wall_s"] = time.perf_counter() - started
    if is_main:
        from ftlab.runs.card import write_model_card

        try:  # README.md, the Hugging Face model card, in place before results.json says ok
            write_model_card(run_dir, results)
        except Exception as err:  # documentation: it never turns a finished run into a failed one
            log.warning("model card not written: %s", err)
        write_json(results_path, results)  # last: a run whose results say ok has everything else in place
        if not cfg.train.keep_checkpoints:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # model/ holds the result
        from ftlab.runs.records import print_summary

        print_summary(results, run_dir)
    return metric_value(results, cfg.metric)


def metric_value(results: dict, dotted: str) -> float | None:
    value = results
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def train_and_evaluate(cfg: DictConfig, run_dir: Path, is_main: bool, multirun: bool, hydra_cfg,
                       checkpoint: Path | None, secrets: set) -> dict:
    # Per-run overhead, phase by phase (results.json's `phases_s`): what a sweep pays for each run besides training.
    phases, clock = {}, [time.perf_counter()]

    def phase(name: str) -> None:
        phases[name], clock[0] = round(time.perf_counter() - clock[0], 3), time.perf_counter()

    # A preset's placeholder (`model.path: <the SFT run directory>`) must be replaced on the command line: said
    # before the heavy imports, in a second.
    for key in ("model.path", "eval.reward_model", "objective.reward_model"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
            raise ValueError(f"{key}: this preset needs {value[1:-1]}: add {key}=DIR to the command")

    # Heavy imports here, not at module level: `python -m ftlab --help` and `--cfg job` stay instant.
    # peft imports torchao, which warns about CUDA kernels it cannot load on a CPU machine: noise, not news.
    for noisy in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers import set_seed

    from ftlab.core.distributed import describe
    from ftlab.core.files import write_json
    from ftlab.data.load import eval_dataset, eval_pairs, eval_questions, prepare
    from ftlab.eval.answers import evaluate, paired_answers, worst_failures
    from ftlab.eval.reward import pairwise_accuracy, score_answers
    from ftlab.model import compress
    from ftlab.model.load import load_base, load_tokenizer
    from ftlab.model.source import model_path
    from ftlab.model.strategy import apply_strategy, count_params, save_trained
    from ftlab.runs.checkpoints import Interrupted
    from ftlab.runs.records import environment
    from ftlab.runs.tracking import log_eval, start_wandb
    from ftlab.train.guards import StopOnSignal
    from ftlab.train.trainer import (
        ONLINE,
        build_trainer,
        loss_history,
        peak_memory_mb,
        performance,
        reference_model,
        reset_peak_memory,
        reward_functions,
        trainer_args,
    )

    phase("imports")

    # Same config and seed on the same machine: the same losses (tests/test_sweeps.py checks it).
    set_seed(cfg.seed)
    system_prompt = cfg.data.system_prompt
    env = environment(list(hydra_cfg.overrides.task), secrets)
    trainer_name = cfg.objective.trainer
    # A reward model is the same network with a one-score head; it is judged on held-out preference pairs.
    reward_model = trainer_name == "reward"

    # 1. Data first: a bad file fails in seconds, not after a model has loaded. model.path may name an earlier
    # run (SFT before DPO): its trained weights are merged into its base once, and that is the starting model.
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(cfg.model, path)
    # Checked record by record, cleaned (duplicates, token lengths), split, and checked for leakage into the
    # held-out questions: data_prep says what happened and goes into results.json.
    train_data, validation, data_prep = prepare(cfg.data, cfg.objective.data_format, system_prompt, tokenizer,
                                                cfg.seed)
    if data_prep["leaked_eval_questions"] and cfg.data.leakage == "warn":
        log.warning("%d held-out questions also occur in training (data.leakage=drop removes them from training)",
                    data_prep["leaked_eval_questions"])
    rows = [] if reward_model else eval_questions(cfg.data, cfg.eval.max_questions)
    pairs = eval_pairs(cfg.data, system_prompt, cfg.eval.max_questions) if trainer_name in PAIRED else None
    if reward_model and pairs is None:
        raise ValueError("data.eval_pairs: objective=reward needs held-out preference pairs to be judged on")
    eval_data = pairs if trainer_name in PAIRED else validation if validation is not None else \
        eval_dataset(rows, cfg.objective.data_format, system_prompt)
    phase("data")

    # 2. The base model, quantized as the run asks, evaluated before anything changes it: the "before" numbers.
    model = load_base(cfg.model, cfg.quant, path, "reward" if reward_model else "causal_lm", cfg.dist.name)
    phase("model_load")
    base = pairwise_accuracy(model, tokenizer, pairs) if reward_model else \
        evaluate(model, tokenizer, rows, system_prompt, cfg.eval)
    phase("base_eval")

    # 2b. torchao works on the plain layers, before a PEFT adapter wraps them: QAT swaps the blocks' linear layers for
    # fake-quantized ones (training then sees the int rounding); sparsity computes fixed masks for them.
    calibration = compress.calibration_texts(train_data, tokenizer, cfg.quant.sparsity.calibration_examples) \
        if cfg.quant.get("sparsity") else []
    compression = compress.prepare(model, cfg.quant, cfg.model.target_modules, tokenizer, calibration) \
        if cfg.quant.get("qat") or cfg.quant.get("sparsity") else None

    # 3. The strategy decides what trains; PEFT methods are wrapped by the trainer. Runs of one sweep share a W&B
    # group (the sweep's directory name) and carry their group choices as tags, so W&B can compare them.
    model, peft_config = apply_strategy(model, cfg.strategy, "SEQ_CLS" if reward_model else "CAUSAL_LM")
    rewards = reward_functions(cfg.objective) if trainer_name in ONLINE else None
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    group = cfg.wandb.group or (Path(hydra_cfg.sweep.dir).name if multirun else None)
    tags = [f"{g}={hydra_cfg.runtime.choices.get(g)}" for g in GROUPS] + list(cfg.wandb.tags)
    wandb_run = start_wandb({**plain_cfg, "environment": env}, cfg.wandb, run_dir, cfg.run_name, group, tags) \
        if is_main else None
    args = trainer_args(cfg, run_dir, "wandb" if wandb_run else "none", has_eval_data=eval_data is not None,
                        model=model)
    trainer, data_record = build_trainer(trainer_name, model, tokenizer, args, train_data, eval_data, peft_config,
                                         cache=cfg.train.cache_tokenized, rewards=rewards)
    params = count_params(trainer.model)
    phase("trainer_setup")

    # A validation split (data.validation_split) is judged by the trainer's own eval loss, before and after.
    base_validation = trainer.evaluate()["eval_loss"] if validation is not None else None

    # 4. Train, from the checkpoint of an interrupted run if there is one: weights, optimizer, scheduler, RNG states
    # and data position come back, so the result is the one an uninterrupted run gives (tests/test_resume.py).
    reset_peak_memory()
    started = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    runtime = time.perf_counter() - started
    stop = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StopOnSignal))
    if stop.received:  # Ctrl-C or SIGTERM: the Trainer saved a checkpoint at this step and stopped
        raise Interrupted(f"{stop.received} at step {trainer.state.global_step}: checkpoint saved in "
                          f"{run_dir / 'checkpoints' / f'checkpoint-{trainer.state.global_step}'}")
    train_peak = peak_memory_mb()
    history = loss_history(trainer.state.log_history)
    phase("train")

    # 4b. What ships: QAT's converted int model, or the sparse model with its masks folded in (and checked).
    final, compressed = compress.finish(trainer.model, cfg.quant, compression, tokenizer, run_dir)

    # 5. The same evaluation on the fine-tuned model: the "after" numbers; a reward model (eval.reward_model, a
    # reward run) also scores the base's and the tuned model's answers to the held-out questions.
    reset_peak_memory()
    if reward_model:
        tuned = pairwise_accuracy(final, tokenizer, pairs)
    else:
        tuned = evaluate(final, tokenizer, rows, system_prompt, cfg.eval)
        if cfg.eval.reward_model and rows:
            tuned["reward"] = score_answers(cfg.eval.reward_model, rows, system_prompt, base["answers"],
                                            tuned["answers"], cfg.eval.batch_size)

    phase("eval")

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
            **({"base_validation_loss": base_validation, "validation_loss": trainer.evaluate()["eval_loss"]}
               if validation is not None else {}),
            "peak_memory_mb": peak_memory_mb(),
        },
        "compression": compressed,
        "performance": performance(args, trainer.model),
        "phases_s": phases,
        "distributed": describe(cfg.dist.name, trainer),
        "history": history,
        "reference": reference_model(cfg, trainer_name),
        "data": {**data_record, "preparation": data_prep},
        "environment": env,
    }
    if compression and compression["kind"] == "qat" and cfg.quant.qat.ptq_baseline:
        # QAT's yardstick, in the same run: the same fine-tuning without fake quantization, quantized afterwards.
        out["eval"].update(compress.ptq_baseline(cfg, path, tokenizer, train_data, eval_data, rows, run_dir, rewards))
    answers = paired_answers(rows, base, tuned) if rows else []
    if answers:
        sample = next((a for a in answers if a["question"] == cfg.eval.sample_question), answers[0])
        out["sample"] = {k: sample[k] for k in ("question", "expected", "base_answer", "tuned_answer")}
    if is_main:
        compress.densify(final)  # CUDA 2:4 kernels hold the weights compressed; safetensors takes them dense
        save_trained(final, tokenizer, cfg.strategy, run_dir / "model")
        out["saved"] = {"path": "model", "bytes": sum(f.stat().st_size for f in (run_dir / "model").rglob("*")
                                                      if f.is_file())}
        phase("save")
        write_json(run_dir / "answers.json", {"answers": answers})
        write_json(run_dir / "failures.json", {"failures": worst_failures(answers, cfg.eval.num_failures)})
        metrics = {f"eval/{k}": v for k, v in out["eval"].items() if isinstance(v, (int, float))}
        metrics |= {f"eval/reward_{k}": v for k, v in tuned.get("reward", {}).items() if isinstance(v, float)}
        metrics |= {f"final/{k}": v for k, v in out["train"].items() if v is not None}
        metrics |= {"params/trainable": params["trainable"], "params/total": params["total"],
                    "saved/bytes": out["saved"]["bytes"]}
        metrics |= {"sparsity/overall": compressed["overall"]} if compressed and "overall" in compressed else {}
        table = [[a["question"], ", ".join(a["expected"]), a["base_answer"], a["tuned_answer"], a["tuned_correct"]]
                 for a in answers]
        log_eval(wandb_run, metrics, table)
        if wandb_run is not None:
            out["wandb"] = {"mode": wandb_run.settings.mode, "dir": str(Path(wandb_run.dir).parent), "group": group,
                            "id": wandb_run.id}
            wandb_run.finish()
    return out
