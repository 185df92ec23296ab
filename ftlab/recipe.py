"""The recipe of one run, top to bottom in the order its parts depend on each other: data -> model -> evaluate the
base (and, opt-in, what it knows) -> compression -> strategy -> trainer -> train -> evaluate -> save. Around it, the
run directory's lifecycle (ftlab/runs/lifecycle.py) claims, resumes, records the status and handles failures;
ftlab/runs/records.py turns what the recipe measured into results.json.

Run as: python -m ftlab [group=option ...] [key=value ...]   (ftlab/run.py calls recipe() inside the lifecycle)"""

import logging

from omegaconf import DictConfig
from transformers import set_seed

from ftlab.core.files import write_json
from ftlab.data.load import prepare
from ftlab.eval.forgetting import Forgetting
from ftlab.eval.judges import evaluator, trainer_eval_data
from ftlab.model import compress
from ftlab.model.load import load_base, load_tokenizer
from ftlab.model.source import model_path
from ftlab.model.strategy import apply_strategy, count_params, save_trained
from ftlab.runs.records import run_record
from ftlab.train.trainer import ONLINE, build_trainer, peak_memory_mb, reset_peak_memory, reward_functions, trainer_args

log = logging.getLogger("ftlab")


def recipe(cfg: DictConfig, run) -> tuple[dict, list]:
    """One run in its directory (run: lifecycle.Run). Returns what results.json records and the answers to the
    held-out questions. Raises on bad input (ValueError), a missing file (OSError), divergence (FloatingPointError)
    or Ctrl-C (Interrupted, after a checkpoint): the lifecycle records each."""
    phase = run.phase  # seconds per phase (results.json's phases_s)
    set_seed(cfg.seed)  # same config and seed on the same machine: the same losses (tests/test_sweeps.py checks it)

    # 1. Data first: a bad file fails in seconds, not after a model has loaded. The tokenizer comes with it (the data
    # are filtered by token length); model.path may name an earlier run (SFT before DPO): its trained weights are
    # merged into its base once, and that is the starting model.
    with phase("data"):
        path = model_path(cfg.model)
        tokenizer = load_tokenizer(cfg.model, path)
        # Checked record by record, cleaned (duplicates, token lengths), split, and checked for leakage into the
        # held-out questions: data_prep says what happened and goes into results.json.
        train_data, validation, data_prep = prepare(
            cfg.data, cfg.objective.data_format, cfg.data.system_prompt, tokenizer, cfg.seed
        )
        if data_prep["leaked_eval_questions"] and cfg.data.leakage == "warn":
            log.warning(
                "%d held-out questions also occur in training (data.leakage=drop removes them from training)",
                data_prep["leaked_eval_questions"],
            )
        # The judge of what the objective trains (objective.head): held-out questions for a language model,
        # preference pairs for a reward model; the trainer's eval loss reads pairs or questions (objective.eval_pairs).
        judge = evaluator(cfg, tokenizer)
        eval_data = trainer_eval_data(cfg, validation)
        # What fine-tuning may make the model forget (opt-in): a general retention set (data.retention) and
        # lm-eval-harness tasks (eval.harness.tasks), read and checked now, judged before and after like the rest.
        forgetting = Forgetting(cfg, tokenizer)

    # 2. The base model, quantized as the run asks, with the objective's head; judged before anything changes it:
    # the "before" numbers.
    with phase("model_load"):
        model = load_base(cfg.model, cfg.quant, path, cfg.objective.head, cfg.dist.name)
    with phase("base_eval"):
        base = judge(model)
    base_kept = forgetting(model, phase, "base_")

    with phase("trainer_setup"):
        # 3. Compression works on the plain layers, so it comes before a PEFT adapter wraps them: QAT swaps the blocks'
        # linear layers for fake-quantized ones (training then sees the int rounding), sparsity fixes masks on them.
        compress_state = compress.prepare(model, cfg.quant, cfg.model.target_modules, tokenizer, train_data)
        # 4. The strategy decides what trains; PEFT methods are handed to the trainer, which wraps the model.
        model, peft_config = apply_strategy(model, cfg.strategy, judge.task_type)
        # 5. The objective's TRL trainer, guarded (divergence, Ctrl-C), logging its curves to the run's tracker (W&B on
        # rank 0, as wandb.mode says).
        tracker = run.start_tracker()
        args = trainer_args(cfg, run.dir, tracker.report_to, has_eval_data=eval_data is not None, model=model)
        rewards = reward_functions(cfg.objective) if cfg.objective.trainer in ONLINE else None
        trainer, data_record = build_trainer(
            cfg.objective.trainer,
            model,
            tokenizer,
            args,
            train_data,
            eval_data,
            peft_config,
            cache=cfg.train.cache_tokenized,
            rewards=rewards,
        )
        params = count_params(trainer.model)  # before compression's finish merges an adapter away
        # A validation split (data.validation_split) is judged by the trainer's own eval loss, before and after.
        base_validation = trainer.evaluate()["eval_loss"] if validation is not None else None

    # 6. Train, from the checkpoint of an interrupted run if there is one: weights, optimizer, scheduler, RNG states
    # and data position come back, so the result is the one an uninterrupted run gives (tests/test_resume.py). Ctrl-C
    # or SIGTERM: a checkpoint at that step, then Interrupted (train/guards.py StopOnSignal).
    reset_peak_memory()
    with phase("train"):
        trained = trainer.train(resume_from_checkpoint=run.checkpoint)
    train_memory = peak_memory_mb()

    # 7. What ships: QAT's converted int model, PTQ's quantized one, the sparse model with its masks folded in (and
    # checked), or the trained model as it is; `compressed` records what was done.
    final, compressed = compress.finish(trainer.model, cfg.quant, compress_state, tokenizer, run.dir)

    # 8. The same judge on the fine-tuned model: the "after" numbers (given the base's, a reward model named by
    # eval.reward_model also scores both models' answers); then what it kept of the base's general ability.
    reset_peak_memory()
    with phase("eval"):
        tuned = judge(final, base)
        validation_loss = trainer.evaluate()["eval_loss"] if validation is not None else None
    eval_memory = peak_memory_mb()
    kept = forgetting(final, phase, "")

    # 9. Save what trained (rank 0 writes); the base model stays where it came from.
    if run.is_main:
        with phase("save"):
            save_trained(final, tokenizer, cfg.strategy, run.dir / "model")
            if forgetting:  # per row and per question, both models: what the sweep report pools over seeds
                write_json(run.dir / "retention.json", forgetting.items(base_kept, kept))
    answers = judge.answers(base, tuned)
    return run_record(
        cfg,
        run,
        trainer,
        args,
        trained,
        judge,
        base=base,
        tuned=tuned,
        validation_losses=(base_validation, validation_loss),
        peak_memory_mb=(train_memory, eval_memory),
        params=params,
        compression=compressed,
        data={**data_record, "preparation": data_prep},
        examples=len(train_data),
        answers=answers,
        forgetting=forgetting.record(base_kept, kept),
    ), answers
