"""`ftlab lab [DIR]`: a local web page for experiments under DIR (outputs/): the runs table and runs compared side by
side (numbers, loss curves, each held-out question with every run's answer, regressions marked), each sweep's report,
and a launcher (an option per config group, read from conf/; overrides; a run as a subprocess, its log and loss
curve live). Gradio on 127.0.0.1; another host only with --auth user:pass."""

import argparse
import html
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: nothing leaves the machine

from ftlab.core.files import PROJECT_ROOT  # noqa: E402
from ftlab.report.runs import choices_text, matches, number  # noqa: E402
from ftlab.report.runs import runs as find_runs  # noqa: E402
from ftlab.runs.lifecycle import GROUPS as RUN_GROUPS  # noqa: E402

GROUPS = tuple(g for g in RUN_GROUPS if g != "dist")  # the launcher's dropdowns: dist needs a launcher of its own
STEP_LOG = re.compile(r"step (\d+): \{.*'loss': '?([0-9.e+-]+)")  # ftlab.log's trainer lines (train/progress.py)


def group_options(group: str) -> list:
    """A config group's options: the YAML files of conf/<group>/, not a list copied here."""
    return sorted(p.stem for p in (PROJECT_ROOT / "conf" / group).glob("*.yaml"))


def default_option(group: str) -> str:
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf" / "config.yaml").defaults)
    return next(d[group] for d in defaults if isinstance(d, dict) and group in d)  # conf/config.yaml's choice


def loss_points(run_dir: Path) -> list:
    """[(step, training loss)]: a finished run's results.json history, a running one's ftlab.log so far."""
    import json

    results = run_dir / "results.json"
    if results.is_file():
        history = (json.loads(results.read_text()).get("history") or {}).get("train")
        if history:
            return [tuple(point) for point in history]
    log = run_dir / "ftlab.log"
    return [(int(m[1]), float(m[2])) for m in STEP_LOG.finditer(log.read_text())] if log.is_file() else []


def loss_plot(curves: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.2))
    for label, points in curves.items():
        if points:
            axes.plot(*zip(*points), marker=".", label=label)  # a marker: a quick run may log one point
    axes.set(xlabel="step", ylabel="training loss", yscale="log")
    if curves:
        axes.legend(fontsize=7)
    figure.tight_layout()
    plt.close(figure)
    return figure


def numbers_table(rows: list) -> str:
    lines = [
        "| run | status | choices | accuracy base → tuned | loss base → tuned | wall |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        choices = choices_text(r["choices"])
        lines.append(
            f"| {r['run']} | {r['status']} | {choices} | {number(r['base_accuracy'])} → {number(r['accuracy'])} | "
            f"{number(r['base_loss'], 3)} → {number(r['loss'], 3)} | "
            f"{number(r['wall_s'], 0)} s |"
        )
    return "\n".join(lines)


def answers_html(rows: list) -> str:
    """Each held-out question once, every run's answer beside it: a miss in red, a regression (the base was right)
    marked as one."""
    import json

    answers = {}
    for r in rows:
        path = Path(r["dir"]) / "answers.json"
        answers[r["label"]] = (
            {a["question"]: a for a in json.loads(path.read_text())["answers"]} if path.is_file() else {}
        )
    questions = list(dict.fromkeys(q for by_question in answers.values() for q in by_question))
    head = "".join(f"<th>{html.escape(label)}</th>" for label in answers)
    body = []
    for question in questions:
        cells = []
        for by_question in answers.values():
            a = by_question.get(question)
            if a is None:
                cells.append("<td>-</td>")
                continue
            regression = a["base_correct"] and not a["tuned_correct"]
            style = "background:#fdd" if not a["tuned_correct"] else "background:#dfd"
            mark = "✓" if a["tuned_correct"] else ("✗ regression" if regression else "✗")
            kind = "regression" if regression else ("right" if a["tuned_correct"] else "wrong")
            cells.append(f'<td class="{kind}" style="{style}">{mark} {html.escape(a["tuned_answer"])}</td>')
        expected = next(
            by_question[question]["expected"] for by_question in answers.values() if question in by_question
        )
        body.append(
            f"<tr><td>{html.escape(question)}<br><i>{html.escape(', '.join(expected))}</i></td>{''.join(cells)}</tr>"
        )
    return f'<table id="answers-table"><tr><th>question (expected)</th>{head}</tr>{"".join(body)}</table>'


class Launcher:
    """Runs started from the page, one process per run directory: a second launch into a directory whose run is
    still going is refused."""

    def __init__(self, root: Path):
        self.root, self.running = root, {}

    def start(self, name: str, choices: list, overrides: str) -> tuple[str, Path | None]:
        name = re.sub(r"[^\w.-]+", "_", name.strip()) or "run"
        run_dir = self.root / "lab" / name
        process = self.running.get(run_dir)
        if process is not None and process.poll() is None:
            return f"refused: {run_dir} is still running (one run per directory)", None
        try:
            extra = shlex.split(overrides or "")
        except ValueError as err:
            return f"refused: overrides: {err}", None
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        sweep = "-m" in extra or "--multirun" in extra or any(arg.startswith("sweep=") for arg in extra)
        place = f"hydra.sweep.dir={run_dir}" if sweep else f"hydra.run.dir={run_dir}"  # a sweep: its runs inside
        command = [sys.executable, "-m", "ftlab", *choices, *extra, place]
        with open(run_dir.parent / f"{name}.console.txt", "w") as console:
            self.running[run_dir] = subprocess.Popen(
                command, stdout=console, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True
            )
        return f"started: {shlex.join(command[2:])}", run_dir

    def watch(self, run_dir: str | None):
        """(status line, console so far, loss curve) of a launched run."""
        if not run_dir:
            return "", "", None
        run_dir = Path(run_dir)
        process = self.running.get(run_dir)
        console = run_dir.parent / f"{run_dir.name}.console.txt"
        text = console.read_text() if console.is_file() else ""
        state = "running" if process is not None and process.poll() is None else f"finished (exit {process.returncode})"
        runs = (
            [run_dir] if (run_dir / "config.yaml").exists() else sorted(p.parent for p in run_dir.glob("*/config.yaml"))
        )
        return f"{run_dir}: {state}", text[-5000:], loss_plot({p.name: loss_points(p) for p in runs})

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()


def build_app(root: Path, launcher: Launcher):
    import gradio as gr

    def table(status, where):
        wanted = (where or "").split()
        bad = [w for w in wanted if "=" not in w]
        rows = [r for r in find_runs([root]) if matches(r, status or None, [w for w in wanted if "=" in w])]
        shown = [
            [
                r["started"],
                r["run"],
                r["status"],
                choices_text(r["choices"]),
                None if r["accuracy"] is None else round(r["accuracy"], 3),
                None if r["loss"] is None else round(r["loss"], 3),
                r["dir"],
            ]
            for r in rows
        ]
        labels = [(f"{r['started']} {r['run']} ({Path(r['dir']).name}) {r['status']}", r["dir"]) for r in rows]
        note = f"where: expected key=value, not {' '.join(bad)}" if bad else f"{len(rows)} runs"
        return shown, gr.CheckboxGroup(choices=labels, value=[]), note

    def compare(dirs):
        rows = [r for r in find_runs([root]) if r["dir"] in (dirs or [])]
        for r in rows:
            r["label"] = f"{r['run']} ({Path(r['dir']).name})"
        curves = {r["label"]: loss_points(Path(r["dir"])) for r in rows}
        return numbers_table(rows), loss_plot(curves), answers_html(rows)

    def sweep_report(sweep):
        if not sweep:
            return "", []
        report = Path(sweep) / "report"
        return (report / "report.md").read_text(), sorted(str(p) for p in report.glob("*.png"))

    sweeps = sorted(str(p.parent.parent) for p in root.glob("**/report/report.md"))
    with gr.Blocks(title="ftlab lab", analytics_enabled=False) as app:
        gr.Markdown(f"# ftlab lab\nRuns and sweeps under `{root}`.")
        with gr.Tab("Runs"):
            with gr.Row():
                status = gr.Dropdown(
                    ["", "ok", "failed", "skipped", "interrupted", "running", "crashed"],
                    value="",
                    label="status",
                    elem_id="status",
                )
                where = gr.Textbox(label="where (key=value ...)", elem_id="where")
                refresh = gr.Button("Refresh", elem_id="refresh")
            count = gr.Markdown(elem_id="count")
            runs_table = gr.Dataframe(
                headers=["started", "run", "status", "choices", "accuracy", "loss", "dir"],
                interactive=False,
                elem_id="runs",
            )
            picked = gr.CheckboxGroup(label="compare", elem_id="pick-runs")
            go = gr.Button("Compare", variant="primary", elem_id="compare")
            numbers = gr.Markdown(elem_id="numbers")
            curves = gr.Plot(elem_id="curves")
            answers = gr.HTML(elem_id="answers")
        with gr.Tab("Sweeps"):
            sweep = gr.Dropdown(sweeps, label="sweep", elem_id="sweep")
            report_md = gr.Markdown(elem_id="report")
            plots = gr.Gallery(label="plots", elem_id="plots")
        with gr.Tab("Launch"):
            with gr.Row():
                choices = [
                    gr.Dropdown(group_options(g), value=default_option(g), label=g, elem_id=f"group-{g}")
                    for g in GROUPS
                ]
            overrides = gr.Textbox(label="overrides", value="train.max_steps=30", elem_id="overrides")
            name = gr.Textbox(label="run directory name (under lab/)", value="run", elem_id="name")
            start = gr.Button("Start", variant="primary", elem_id="start")
            launched = gr.State(None)
            state = gr.Markdown(elem_id="launch-status")
            console = gr.Textbox(label="log", lines=12, elem_id="console")
            live = gr.Plot(elem_id="live-curve")
            timer = gr.Timer(2.0)

        refresh.click(table, [status, where], [runs_table, picked, count])
        app.load(table, [status, where], [runs_table, picked, count])
        go.click(compare, picked, [numbers, curves, answers])
        sweep.change(sweep_report, sweep, [report_md, plots])

        def launch(run_name, extra, *options):
            message, run_dir = launcher.start(run_name, [f"{g}={o}" for g, o in zip(GROUPS, options)], extra)
            return message, str(run_dir) if run_dir else None

        start.click(launch, [name, overrides, *choices], [state, launched])
        timer.tick(launcher.watch, launched, [state, console, live])
    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="ftlab lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("outputs"), help="runs and sweeps (outputs)")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--host", default="127.0.0.1", help="another address only with --auth")
    parser.add_argument("--auth", help="user:pass, required to listen beyond this machine")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost") and not args.auth:
        raise SystemExit(f"error: --host {args.host}: the lab starts runs on this machine; add --auth user:pass")
    if args.auth and ":" not in args.auth:
        raise SystemExit("error: --auth: expected user:pass")
    args.root.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(args.root.resolve())
    app = build_app(args.root.resolve(), launcher)
    try:
        app.launch(
            server_name=args.host,
            server_port=args.port,
            auth=tuple(args.auth.split(":", 1)) if args.auth else None,
            share=False,
            allowed_paths=[str(args.root.resolve())],
        )
    finally:
        launcher.stop_all()


if __name__ == "__main__":
    main()
