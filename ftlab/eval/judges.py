"""The judge of a run, by what its objective trains (objective.head): a language model on the held-out questions
(answers.py), a reward model on held-out preference pairs (reward.py). The base and the fine-tuned model are judged
the same way, so their numbers compare."""

from ftlab.data.load import eval_dataset, eval_pairs, eval_questions
from ftlab.eval.answers import evaluate, paired_answers
from ftlab.eval.reward import pairwise_accuracy, score_answers


class Questions:
    """head causal_lm: greedy answers to the held-out questions (data.eval), their accuracy, and the reference
    answers' loss and perplexity; with eval.reward_model, a reward model also scores both models' answers."""

    task_type = "CAUSAL_LM"  # PEFT's task type for this head

    def __init__(self, cfg, tokenizer):
        self.rows = eval_questions(cfg.data, cfg.eval.max_questions)
        self.tokenizer, self.system_prompt, self.eval_cfg = tokenizer, cfg.data.system_prompt, cfg.eval

    def __call__(self, model, base: dict | None = None) -> dict:
        """One model's numbers (and answers); given the base's, also the reward model's verdict on both."""
        numbers = evaluate(model, self.tokenizer, self.rows, self.system_prompt, self.eval_cfg)
        if base is not None and self.eval_cfg.reward_model and self.rows:
            numbers["reward"] = score_answers(
                self.eval_cfg.reward_model,
                self.rows,
                self.system_prompt,
                base["answers"],
                numbers["answers"],
                self.eval_cfg.batch_size,
            )
        return numbers

    def record(self, base: dict, tuned: dict) -> dict:
        """results.json's eval numbers: the fine-tuned model's, then the base's as base_*."""
        scalars = ("loss", "loss_ci", "perplexity", "answer_accuracy", "answer_accuracy_ci")
        return {
            **({"questions": len(self.rows)} if self.rows else {}),
            **{k: tuned[k] for k in scalars if k in tuned},
            **({"reward": {k: v for k, v in tuned["reward"].items() if k != "wins"}} if "reward" in tuned else {}),
            **{f"base_{k}": base[k] for k in scalars if k in base},
        }

    def answers(self, base: dict, tuned: dict) -> list:
        """One record per question: expected facts, the base's and the fine-tuned model's answers."""
        return paired_answers(self.rows, base, tuned) if self.rows else []


class Pairs:
    """head reward: the held-out preference pairs (data.eval_pairs): how often the chosen answer scores above the
    rejected one (pairwise accuracy), and by how much on average (mean margin)."""

    task_type = "SEQ_CLS"  # PEFT then trains and saves the score head as well

    def __init__(self, cfg, tokenizer):
        self.pairs = eval_pairs(cfg.data, cfg.data.system_prompt, cfg.eval.max_questions)
        if self.pairs is None:
            raise ValueError(
                f"data.eval_pairs: objective={cfg.objective.name} trains a reward model, which is judged "
                f"on held-out preference pairs: data={cfg.data.name} names none"
            )
        self.tokenizer = tokenizer

    def __call__(self, model, base: dict | None = None) -> dict:
        return pairwise_accuracy(model, self.tokenizer, self.pairs)

    def record(self, base: dict, tuned: dict) -> dict:
        return {**tuned, **{f"base_{k}": base[k] for k in ("pairwise_accuracy", "mean_margin")}}

    def answers(self, base: dict, tuned: dict) -> list:
        return []  # a reward model answers no questions


EVALUATORS = {"causal_lm": Questions, "reward": Pairs}


def evaluator(cfg, tokenizer) -> Questions | Pairs:
    """The judge of this run's model (objective.head), its held-out data read now: a bad file fails before any
    model loads."""
    if cfg.objective.head not in EVALUATORS:
        raise ValueError(f"objective.head: expected {' or '.join(EVALUATORS)}, got {cfg.objective.head!r}")
    return EVALUATORS[cfg.objective.head](cfg, tokenizer)


def trainer_eval_data(cfg, validation):
    """What the trainer's eval loss reads during training: the held-out preference pairs for an objective that
    learns from pairs (objective.eval_pairs), else the validation split (data.validation_split), else the held-out
    questions in the objective's data format (None where that format has no such form)."""
    if cfg.objective.eval_pairs:
        return eval_pairs(cfg.data, cfg.data.system_prompt, cfg.eval.max_questions)
    if validation is not None:
        return validation
    return eval_dataset(
        eval_questions(cfg.data, cfg.eval.max_questions), cfg.objective.data_format, cfg.data.system_prompt
    )
