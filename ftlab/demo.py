"""`python -m ftlab.demo RUN_DIR ...`: a local web page where the base and each run answer a question side by side."""

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Before gradio is imported: no usage reports and no version check leave the machine.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


@dataclass
class Contender:
    """One column of the page: a model, its tokenizer and how it answers (the run's evaluation settings)."""

    label: str
    model: object
    tokenizer: object
    settings: object
    adapter_off: bool = False  # the base, answered by a PEFT run's own model with its adapter switched off
    results: dict = field(default_factory=dict)

    def answer(self, question: str) -> str:
        from ftlab.chat import answer

        if not self.adapter_off:
            return answer(self.model, self.tokenizer, question, self.settings)
        with self.model.disable_adapter():
            return answer(self.model, self.tokenizer, question, self.settings)


def check_runs(run_dirs: list) -> None:
    """Bad input fails before anything heavy is imported."""
    from ftlab.chat import check_chat_dir

    if len(set(map(Path.resolve, run_dirs))) != len(run_dirs):
        raise ValueError("a run directory is named twice")
    for run_dir in run_dirs:
        if check_chat_dir(run_dir) != "run":
            raise ValueError(f"{run_dir}: a merged export names no base to compare with: give its run directory")


def load_contenders(run_dirs: list) -> tuple[list, list]:
    """(bases, runs). Runs trained from the same base with the same quantization share one base column; a PEFT run
    lends its own model with the adapter off (the exact base, without a second copy in memory)."""
    import json

    from peft import PeftModel

    from ftlab.chat import load_chat_model
    from ftlab.model.load import load_base, load_tokenizer
    from ftlab.model.source import model_path

    runs, bases, base_keys = [], [], set()
    records = [json.loads((d / "results.json").read_text()) if (d / "results.json").is_file() else {} for d in run_dirs]
    names = [r.get("run_name") or d.name for d, r in zip(run_dirs, records)]
    # Runs of one config share a run name: their folders tell them apart.
    labels = [f"{n} ({d.parent.name}/{d.name})" if names.count(n) > 1 else n for n, d in zip(names, run_dirs)]
    for run_dir, results, label in zip(run_dirs, records, labels):
        model, tokenizer, settings, cfg = load_chat_model(run_dir)
        runs.append(Contender(label, model, tokenizer, settings, results=results))
        key = (model_path(cfg.model), cfg.quant.name)
        if key in base_keys:
            continue
        base_keys.add(key)
        where = f"base: {cfg.model.name}" + ("" if cfg.quant.name == "none" else f", {cfg.quant.name}")
        if isinstance(model, PeftModel):
            bases.append(Contender(where, model, tokenizer, settings, adapter_off=True))
        else:
            base = load_base(cfg.model, cfg.quant, key[0]).eval()
            bases.append(Contender(where, base, load_tokenizer(cfg.model, key[0]), settings))
    return bases, runs


def numbers_table(runs: list) -> str:
    """Each run's key numbers from its results.json, base -> fine-tuned."""

    def pair(e, key, digits):
        base, tuned = e.get(f"base_{key}"), e.get(key)
        return (
            "-"
            if tuned is None
            else f"{base:.{digits}f} → {tuned:.{digits}f}"
            if base is not None
            else f"{tuned:.{digits}f}"
        )

    rows = ["| run | strategy | quant | objective | answer accuracy | held-out loss | steps |", "|---" * 7 + "|"]
    for run in runs:
        r = run.results
        c, e, steps = r.get("choices") or {}, r.get("eval") or {}, (r.get("train") or {}).get("steps", "-")
        rows.append(
            f"| {run.label} | {c.get('strategy', '?')} | {c.get('quant', '?')} | {c.get('objective', '?')} | "
            f"{pair(e, 'answer_accuracy', 2)} | {pair(e, 'loss', 3)} | {steps} |"
        )
    return "\n".join(rows)


def build_app(bases: list, runs: list, eval_rows: list):
    import gradio as gr

    from ftlab.eval.answers import states_facts

    contenders = bases + runs
    by_question = {row["question"].strip(): row for row in eval_rows}
    lock = threading.Lock()  # one generation at a time: a PEFT model also answers for the base, adapter off

    def ask(question: str):
        question = (question or "").strip()
        row = by_question.get(question)
        expected = row["facts"] if row else None
        heading = (
            f"**Expected:** {', '.join(expected)}  \n**Reference answer:** {row['answer']}"
            if row
            else "*A question of your own: no expected facts to check against.*"
            if question
            else ""
        )
        answers, verdicts = [""] * len(contenders), [""] * len(contenders)
        yield heading, *answers, *verdicts  # the last question's answers go at once
        if not question:
            return
        for i, contender in enumerate(contenders):  # each column fills in as soon as its answer is ready
            started = time.perf_counter()
            with lock:
                answers[i] = contender.answer(question)
            took = f"{time.perf_counter() - started:.1f} s"
            verdicts[i] = (
                (
                    (
                        "**right**: states the expected facts"
                        if states_facts(answers[i], expected)
                        else "**wrong**: misses the expected facts"
                    )
                    + f" ({took})"
                )
                if expected
                else took
            )
            yield heading, *answers, *verdicts

    with gr.Blocks(title="ftlab: base vs fine-tuned", analytics_enabled=False) as app:
        gr.Markdown(
            "# Base vs fine-tuned\nPick a held-out question (never trained on) or type your own; each model "
            "answers as the run was evaluated (greedy, the run's system prompt and answer length)."
        )
        gr.Markdown(numbers_table(runs), elem_id="numbers")
        with gr.Row():
            pick = gr.Dropdown(
                [r["question"] for r in eval_rows], value=None, label="held-out question", elem_id="pick", scale=2
            )
            box = gr.Textbox(
                label="question",
                placeholder="What is the notice period for a Senior Consultant?",
                elem_id="question",
                scale=3,
            )
        go = gr.Button("Ask", variant="primary", elem_id="ask")
        expected_md = gr.Markdown(elem_id="expected")
        outputs, verdict_outputs = [], []
        with gr.Row(equal_height=True):
            for i, contender in enumerate(contenders):
                kind = "base" if i < len(bases) else "tuned"
                with gr.Column(min_width=240):
                    outputs.append(
                        gr.Textbox(
                            label=contender.label,
                            lines=5,
                            interactive=False,
                            elem_id=f"answer-{kind}-{i if kind == 'base' else i - len(bases)}",
                        )
                    )
                    verdict_outputs.append(gr.Markdown(elem_id=f"verdict-{i}"))
        every = [expected_md, *outputs, *verdict_outputs]
        pick.input(lambda q: q, pick, box).then(ask, box, every)  # picking a question asks it at once
        go.click(ask, box, every)
        box.submit(ask, box, every)
    return app


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m ftlab.demo", description=__doc__.split(": ", 1)[1])
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="finished run directories")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, help="default: 7860, or the next free port")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    try:
        check_runs(args.run_dirs)
        if args.port is not None and not 0 < args.port < 65536:
            raise ValueError(f"--port: expected 1..65535, got {args.port}")
        from ftlab.chat import quiet_libraries
        from ftlab.data.load import eval_questions
        from ftlab.model.source import run_config

        quiet_libraries()
        eval_rows = eval_questions(run_config(args.run_dirs[0]).data, None)  # the first run's held-out set
        bases, runs = load_contenders(args.run_dirs)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    app = build_app(bases, runs, eval_rows)
    print(
        f"loaded {len(bases)} base and {len(runs)} fine-tuned model(s) in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}: other machines on the network can use this demo", flush=True)
    try:
        # Never a public share link; no server-side rendering (it needs Node), no MCP server, no monitoring page.
        app.queue(default_concurrency_limit=1).launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            ssr_mode=False,
            mcp_server=False,
            pwa=False,
            enable_monitoring=False,
            show_error=True,
            footer_links=[],
        )
    except OSError as err:  # the port is taken, say
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
