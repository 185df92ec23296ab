"""Standard benchmarks through lm-eval-harness (eval.harness), run as a library on the model in memory: the base
before training, the final model after (merged adapter, QAT's int model, the sparse model), the same tasks, limit and
prompts. Each task's scores and lm-eval's standard errors go into results.json; its per-question scores (both models
answered the same questions) into retention.json, so the change is paired and the sweep report pools it over seeds.

Local task YAMLs (eval.harness.include_path: the shipped hr_general, data/hr/harness/) run offline; hub tasks (mmlu,
arc_easy, hellaswag, ...) download their datasets, so they need the network (HF_HUB_OFFLINE unset)."""

import logging
import math

from ftlab.core.files import resolve

log = logging.getLogger("ftlab")


class Harness:
    def __init__(self, harness_cfg):
        self.cfg = harness_cfg
        self.tasks = list(harness_cfg.tasks or [])
        if self.tasks:
            self.manager = self._task_manager()  # an unknown task or a bad include_path fails before any model loads

    def __bool__(self) -> bool:
        return bool(self.tasks)

    def _task_manager(self):
        try:
            from lm_eval.tasks import TaskManager
        except ImportError:
            raise ValueError(
                "eval.harness.tasks: lm-eval is not installed (pip install -e '.[harness]', or lm-eval==0.4.13)"
            ) from None
        include = self.cfg.include_path
        if include and not resolve(include).is_dir():
            raise ValueError(f"eval.harness.include_path: {include} is not a folder of task YAMLs")
        # Local tasks alone first: indexing lm-eval's thousands of built-in YAMLs takes about 10 s.
        manager = TaskManager(include_path=str(resolve(include)), include_defaults=False) if include else None
        if manager is None or not all(manager.match_tasks([t]) for t in self.tasks):
            manager = TaskManager(include_path=str(resolve(include)) if include else None)
        unknown = [t for t in self.tasks if not manager.match_tasks([t])]
        if unknown:
            raise ValueError(
                f"eval.harness.tasks: unknown task {unknown[0]!r} (not in lm-eval's tasks or eval.harness.include_path)"
            )
        return manager

    def __call__(self, model, tokenizer) -> dict:
        """{"scores": {task: {metric: value, metric_stderr: se}}, "samples": {task: {metric: [per question]}}}."""
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        logging.getLogger("lm_eval").setLevel(logging.ERROR)  # one warning per call about the in-memory model
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=self.cfg.batch_size, device=str(model.device))
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=self.tasks,
            task_manager=self.manager,
            limit=self.cfg.limit,
            num_fewshot=self.cfg.num_fewshot,
            apply_chat_template=self.cfg.chat_template,
            log_samples=True,
            bootstrap_iters=self.cfg.bootstrap_iters,  # lm-eval's stderr of metrics that have no closed form
            random_seed=0,
            numpy_random_seed=0,
            torch_random_seed=0,
            fewshot_random_seed=0,
        )
        model.eval()
        scores, samples = {}, {}
        for task, result in out["results"].items():
            # lm-eval keys are "metric,filter"; "none" is the unfiltered score
            scores[task] = {
                key.split(",")[0]: _number(value)
                for key, value in result.items()
                if "," in key and isinstance(value, (int, float))
            }
        for task, rows in (out.get("samples") or {}).items():
            rows = sorted(rows, key=lambda r: r["doc_id"])
            metrics = list(rows[0]["metrics"]) if rows else []
            samples[task] = {
                m: [float(r[m]) for r in rows] for m in metrics if isinstance(rows[0].get(m), (int, float))
            }
        return {"scores": scores, "samples": samples}

    def record(self, base: dict, tuned: dict) -> dict:
        """results.json's harness: both models' scores and standard errors, and the change per task with a 95%
        interval over its questions (paired)."""
        from ftlab.eval.uncertainty import loss_interval

        change = {}
        for task, metrics in tuned["samples"].items():
            for metric, values in metrics.items():
                before = base["samples"][task][metric]
                diff = [t - b for b, t in zip(before, values)]
                change.setdefault(task, {})[metric] = {
                    "change": sum(diff) / len(diff),
                    "ci": loss_interval(diff, [1] * len(diff)),
                }
        return {
            "tasks": self.tasks,
            "limit": self.cfg.limit,
            "metric": self.cfg.metric,
            "base": base["scores"],
            "tuned": tuned["scores"],
            "change": change,
        }

    @staticmethod
    def items(base: dict, tuned: dict) -> dict:
        """Per question (retention.json): {task: {metric: {"base": [...], "tuned": [...]}}}."""
        return {
            task: {m: {"base": base["samples"][task][m], "tuned": values} for m, values in metrics.items()}
            for task, metrics in tuned["samples"].items()
        }


def _number(value):
    """lm-eval writes "N/A" or nan where a stderr does not exist: None in results.json."""
    value = float(value)
    return None if math.isnan(value) else value
