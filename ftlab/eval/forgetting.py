"""The second half of every fine-tuning verdict: what the model lost while it learned. Two opt-in measures, each taken
on the base before training and on the final model after (the recipe calls this beside its judge):
- the retention set (data.retention, retention.py): a general held-out set's loss, and accuracy where rows carry facts;
- standard benchmarks (eval.harness.tasks, harness.py): lm-eval-harness tasks on the model in memory.
results.json gets "retention" and "harness"; retention.json the per-row and per-question numbers the sweep report
pools over seeds (report/forgetting.py)."""

from ftlab.eval.harness import Harness
from ftlab.eval.retention import Retention


class Forgetting:
    def __init__(self, cfg, tokenizer):
        self.retention = Retention(cfg, tokenizer)
        self.harness = Harness(cfg.eval.harness)
        self.tokenizer = tokenizer

    def __bool__(self) -> bool:
        return bool(self.retention or self.harness)

    def __call__(self, model, phase, prefix: str) -> dict:
        """Both measures on one model, each timed as its own phase (prefix "base_" before training, "" after)."""
        out = {}
        if self.retention:
            with phase(f"{prefix}retention"):
                out["retention"] = self.retention(model)
        if self.harness:
            with phase(f"{prefix}harness"):
                out["harness"] = self.harness(model, self.tokenizer)
        return out

    def record(self, base: dict, tuned: dict) -> dict:
        """results.json's "retention" and "harness" (those that are on)."""
        return {name: part.record(base[name], tuned[name]) for name, part in self.parts() if name in base}

    def items(self, base: dict, tuned: dict) -> dict:
        """retention.json: per row of the retention set, per question of each harness task, both models."""
        return {name: part.items(base[name], tuned[name]) for name, part in self.parts() if name in base}

    def parts(self):
        return (("retention", self.retention), ("harness", self.harness))
