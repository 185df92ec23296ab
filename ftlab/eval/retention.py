"""What fine-tuning made the model forget: a general held-out set (data.retention) that the training data do not
cover, judged for the base and the tuned model alike. The token loss of its texts (or of its answers given their
questions), and, where its rows carry facts, answer accuracy. The change, tuned minus base, is paired row by row:
its interval resamples rows, and the sweep report pools it over seeds (report/forgetting.py).

Rows are read as written (no run system prompt: general ability is what a user gets without the company's prompt):
- {"text"}, or .txt/.md paragraphs: the loss of the whole text;
- {"question", "answer", ["facts"]} or {"prompt", "completion"}: the answer's loss given the question;
- {"messages": [...]}: the last assistant turn's loss given the turns before it."""

from ftlab.core.files import resolve
from ftlab.data.load import DataError, read_records
from ftlab.eval.answers import chat_ids, generate_answers, states_facts, token_loss
from ftlab.eval.uncertainty import accuracy_interval, loss_interval


def retention_rows(source: str) -> list:
    """[{prompt: messages or None, answer, facts or None}] of a retention file; a bad row stops with file:line."""
    rows = []
    for where, record in read_records(source):
        if isinstance(record, str):
            raise DataError(f"{where}: {record}")
        rows.append(_row(where, record))
    if not rows:
        raise DataError(f"data.retention: {source} has no rows")
    return rows


def _row(where: str, r: dict) -> dict:
    def text(key):
        if not isinstance(r.get(key), str) or not r[key].strip():
            raise DataError(f"{where}: '{key}' must be a non-empty string")
        return r[key]

    if "messages" in r:
        turns = r["messages"]
        if not isinstance(turns, list) or not turns or not isinstance(turns[-1], dict):
            raise DataError(f"{where}: 'messages' must be a list of {{role, content}} turns")
        if turns[-1].get("role") != "assistant":
            raise DataError(f"{where}: the last message must be the assistant's (its loss is what is measured)")
        return {"prompt": turns[:-1], "answer": turns[-1].get("content") or "", "facts": r.get("facts")}
    for question, answer in (("question", "answer"), ("prompt", "completion")):
        if question in r:
            prompt = [{"role": "user", "content": text(question)}]
            return {"prompt": prompt, "answer": text(answer), "facts": r.get("facts")}
    if "text" in r:
        return {"prompt": None, "answer": text("text"), "facts": None}
    raise DataError(f"{where}: expected text, question/answer, prompt/completion or messages, got {sorted(r)}")


class Retention:
    """data.retention, judged for one model: loss sums per row (and answers where rows carry facts)."""

    def __init__(self, cfg, tokenizer):
        self.source = cfg.data.retention
        self.rows = retention_rows(cfg.data.retention) if cfg.data.retention else []
        self.tokenizer, self.eval_cfg, self.max_length = tokenizer, cfg.eval, cfg.train.max_length
        if self.rows:
            self.pairs = [self._ids(row) for row in self.rows]

    def _ids(self, row) -> tuple[list, list]:
        if row["prompt"] is None:
            return [], self.tokenizer(row["answer"], add_special_tokens=False)["input_ids"][: self.max_length]
        prompt, full = chat_ids(self.tokenizer, row["prompt"], row["answer"])
        return prompt, full[: max(self.max_length, len(prompt) + 1)]

    def __bool__(self) -> bool:
        return bool(self.rows)

    def __call__(self, model) -> dict:
        loss, sums, tokens = token_loss(model, self.pairs, self.tokenizer.pad_token_id, self.eval_cfg.batch_size)
        out = {"loss": loss, "loss_ci": loss_interval(sums, tokens), "loss_sums": sums, "tokens": tokens}
        checked = [(i, r) for i, r in enumerate(self.rows) if r["facts"]]
        if checked:
            answers = generate_answers(
                model,
                self.tokenizer,
                [r["prompt"] for _, r in checked],
                None,
                self.eval_cfg.max_new_tokens,
                self.eval_cfg.batch_size,
            )
            out["correct"] = [states_facts(a, r["facts"]) for a, (_, r) in zip(answers, checked)]
            out["answer_accuracy"] = sum(out["correct"]) / len(checked)
            out["answer_accuracy_ci"] = accuracy_interval(out["correct"])
        return out

    def record(self, base: dict, tuned: dict) -> dict:
        """results.json's retention: both losses, the change (positive: forgotten) and 95% intervals over rows."""
        change = [t - b for b, t in zip(base["loss_sums"], tuned["loss_sums"])]
        out = {
            "source": str(resolve(self.source)),
            "rows": len(self.rows),
            "base_loss": base["loss"],
            "base_loss_ci": base["loss_ci"],
            "loss": tuned["loss"],
            "loss_ci": tuned["loss_ci"],
            "loss_change": tuned["loss"] - base["loss"],
            "loss_change_ci": loss_interval(change, base["tokens"]),
        }
        if "correct" in base:
            flips = [int(t) - int(b) for b, t in zip(base["correct"], tuned["correct"])]
            out |= {
                "base_answer_accuracy": base["answer_accuracy"],
                "base_answer_accuracy_ci": base["answer_accuracy_ci"],
                "answer_accuracy": tuned["answer_accuracy"],
                "answer_accuracy_ci": tuned["answer_accuracy_ci"],
                "answer_accuracy_change": tuned["answer_accuracy"] - base["answer_accuracy"],
                "answer_accuracy_change_ci": loss_interval(flips, [1] * len(flips)),
            }
        return out

    def items(self, base: dict, tuned: dict) -> list:
        """Per row (retention.json): tokens and both models' summed losses, which the sweep report pools over seeds."""
        return [
            {"tokens": n, "base_loss_sum": b, "tuned_loss_sum": t}
            for n, b, t in zip(base["tokens"], base["loss_sums"], tuned["loss_sums"])
        ]
