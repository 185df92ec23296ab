"""The sweep report's plots: quality against trainable parameters and memory, loss curves, quality per config, and
what each configuration learned against what it forgot."""

import math
from pathlib import Path

from ftlab.core.files import write_png
from ftlab.report.forgetting import RETENTION, forgetting_columns

FIGSIZE, DPI = (8, 5), 120


def write_plots(configs: list, metric: str, out_dir: Path, tuning: dict | None = None) -> tuple[list[Path], dict]:
    """The PNGs written into out_dir, and for each plot not drawn, why (no run had its data). tuning: a fair
    ablation's stage 1 (report/fair.py), drawn as each arm's learning-rate sensitivity."""
    plots = {
        "quality_vs_params.png": lambda: quality_scatter(
            configs,
            metric,
            "params",
            "trainable parameters (log scale)",
            f"{nice(metric)} vs trainable parameters",
            log_x=True,
        ),
        "quality_vs_memory.png": lambda: quality_scatter(
            configs, metric, "memory_mb", "peak training memory (MB)", f"{nice(metric)} vs peak training memory"
        ),
        "quality_vs_size.png": lambda: quality_scatter(
            configs, metric, "saved_mb", "saved size on disk (MB)", f"{nice(metric)} vs saved size"
        ),
        "loss_curves.png": lambda: loss_curves(configs),
        "accuracy_by_strategy.png": lambda: quality_bars(configs, metric),
        **({"lr_sensitivity.png": lambda: lr_sensitivity(tuning)} if tuning else {}),
        # Only where some run measured forgetting (data.retention, eval.harness.tasks): a sweep without is unchanged.
        **({"learned_vs_forgotten.png": lambda: learned_vs_forgotten(configs)} if forgetting_columns(configs) else {}),
    }
    written, missing = [], {}
    for name, draw in plots.items():
        figure = draw() if configs or name == "lr_sensitivity.png" else f"no finished run recorded {metric}"
        if isinstance(figure, str):
            missing[name] = figure
            continue
        write_png(out_dir / name, figure, DPI)
        written.append(out_dir / name)
    return written, missing


def nice(metric: str) -> str:
    return metric.rsplit(".", 1)[-1].replace("_", " ")


def new_figure(**kwargs):
    """A Figure on the Agg canvas, without pyplot: no display needed, no global state across calls."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained", **kwargs)
    FigureCanvasAgg(figure)
    return figure


def strategy_colours(configs: list) -> dict:
    from matplotlib import colormaps

    strategies = list(dict.fromkeys(c["strategy"] for c in configs))
    palette = colormaps["tab10" if len(strategies) <= 10 else "tab20"]
    return {s: palette(i % palette.N) for i, s in enumerate(strategies)}


def quality_scatter(configs, metric, cost, x_label, title, log_x=False):
    points = [c for c in configs if c[cost] is not None and (c[cost] > 0 or not log_x)]
    if not points:
        return f"no finished run recorded {x_label.split(' (')[0]}"
    figure = new_figure()
    ax = figure.add_subplot()
    colours = strategy_colours(configs)
    for c in points:
        point(ax, c, colours, c[cost], c["mean"], yerr=c["sd"] or 0)
    if log_x:
        ax.set_xscale("log")
    draw_base_lines(ax, points)
    ax.margins(x=0.18, y=0.15)  # room for the labels of the outermost points
    lowest = min([c["mean"] - (c["sd"] or 0) for c in points] + [c["base"] for c in points if c["base"] is not None])
    if lowest >= 0:  # a score that cannot go negative gets no negative axis
        top = max(ax.get_ylim()[1], 0.05)
        ax.set_ylim(-0.04 * top, top)
    ax.set(xlabel=x_label, ylabel=f"{nice(metric)} (mean ± 1 sd over seeds)", title=title)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    name_points(figure, ax, configs, [(c, c[cost], c["mean"], c["sd"]) for c in points])
    return figure


def name_points(figure, ax, configs: list, points: list) -> None:
    """Each (config, x, y, half height) point named as the table names it; too crowded for names, its row number in
    the table (best first), keyed beside the plot."""
    if not label_points(figure, ax, [(x, y, h, c["label"]) for c, x, y, h in points]):
        rank = {id(c): str(i + 1) for i, c in enumerate(configs)}
        legend_outside(ax, key=[f"{rank[id(c)]}  {c['label']}" for c, *_ in points])
        label_points(figure, ax, [(x, y, h, rank[id(c)]) for c, x, y, h in points], crowded=True)


def learned_vs_forgotten(configs: list):
    """What each configuration learned (answer accuracy gain over the base) against what it forgot: the retention
    loss increase, or without a retention set the first harness task's score drop; each a 95% interval over seeds
    and rows in both directions. Up and to the left is the fine-tuning one wants."""
    column = RETENTION if RETENTION in forgetting_columns(configs) else forgetting_columns(configs)[0]
    sign = 1 if column == RETENTION else -1  # a loss that rises is forgotten; a score that drops is
    points = [(c, c["forgetting"][column], c["gain"]) for c in configs if column in c["forgetting"] and c["gain"]]
    if not points:
        return "no configuration recorded its answer accuracy and its base's beside a forgetting measure"
    figure = new_figure()
    ax = figure.add_subplot()
    colours = strategy_colours(configs)
    placed = []
    for c, forgot, gain in points:
        x, left, right = spread(forgot, sign)
        y, down, up = spread(gain, 1)
        point(ax, c, colours, x, y, xerr=[[left], [right]], yerr=[[down], [up]])
        placed.append((c, x, y, max(down, up)))
    ax.axhline(0, color="0.35", linestyle="--", linewidth=1, zorder=1)  # learned nothing
    ax.axvline(0, color="0.35", linestyle="--", linewidth=1, zorder=1)  # forgot nothing
    ax.margins(x=0.18, y=0.15)
    task, _, metric = column.partition(" Δ")
    forgotten = "retention loss increase, tuned - base" if sign > 0 else f"{task} {metric} drop, base - tuned"
    ax.set(
        xlabel=f"forgotten: {forgotten} (95% CI)",
        ylabel="learned: answer accuracy gain, tuned - base (95% CI)",
        title="What fine-tuning learned vs what it forgot",
    )
    ax.grid(alpha=0.3)
    legend_outside(ax)
    name_points(figure, ax, configs, placed)
    return figure


def point(ax, config, colours, x, y, **bars) -> None:
    """One configuration's marker with its error bars, in its strategy's colour (the legend's entry)."""
    colour = colours[config["strategy"]]
    ax.errorbar(x, y, fmt="o", ms=8, capsize=4, color=colour, label=config["strategy"], zorder=3, **bars)


def spread(change: dict, sign: int) -> tuple:
    """(centre, length below, length above) of a {"change", "ci"} as an error bar, flipped when sign is -1."""
    centre, (low, high) = sign * change["change"], sorted(sign * v for v in change["ci"])
    return centre, max(0.0, centre - low), max(0.0, high - centre)


def draw_base_lines(ax, configs) -> None:
    """The base model's score, dashed: one line per distinct base (a quantized base scores differently)."""
    bases = {}
    for c in configs:
        if c["base"] is not None:
            bases.setdefault(round(c["base"], 6), []).append(c)
    for style, (base, group) in zip(["--", ":", "-.", (0, (5, 1))] * 5, sorted(bases.items())):
        shared = [v for i, v in enumerate(group[0]["columns"]) if all(g["columns"][i] == v for g in group)]
        which = f" ({' · '.join(shared)})" if len(bases) > 1 and shared else ""
        ax.axhline(base, color="0.35", linestyle=style, linewidth=1.2, label=f"base model{which}: {base:.3g}", zorder=1)


def legend_outside(ax, key=()) -> None:
    """Beside the axes, never over the data; one entry per label, the base model last, then any text-only key."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    unique = dict(sorted(zip(labels, handles), key=lambda item: item[0].startswith("base model")))
    unique.update({line: Line2D([], [], linestyle="none") for line in key})
    ax.legend(
        unique.values(),
        unique.keys(),
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8 if key else 9,
        frameon=False,
        ncols=1 if len(unique) <= 26 else 2,
    )


def label_points(figure, ax, points, crowded: bool = False) -> bool:
    """A text label beside each (x, y, sd, label) point, at the first nearby place that covers no other label,
    point or error bar. When one finds no free place: False and no labels; when crowded (short labels), farther
    places with a thin leader line, and at worst the first place."""
    from matplotlib.text import Text

    figure.canvas.draw()  # the constrained layout settles first, so the pixel positions below are final
    renderer = figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []  # the markers and error bars themselves
    for x, y, sd, _ in points:
        (px, low), (_, high) = ax.transData.transform([(x, y - (sd or 0)), (x, y + (sd or 0))])
        taken.append((px - 7, min(low, high) - 7, px + 7, max(low, high) + 7))
    candidates = [
        (8, 3),
        (-8, 3),
        (8, -3),
        (-8, -3),
        (0, 12),
        (0, -12),
        (10, 20),
        (-10, 20),
        (10, -20),
        (-10, -20),
        (0, 30),
        (0, -30),
        (30, 0),
        (-30, 0),
        (24, 36),
        (-24, 36),
        (24, -36),
        (-24, -36),
        (40, 20),
        (-40, 20),
        (40, -20),
        (-40, -20),
        (0, 48),
        (0, -48),
    ]
    placed = []
    for x, y, _, label in points:
        # Names stay next to their point; only short numbers may move away along a leader line, which would
        # otherwise cross other names.
        for dx, dy in candidates if crowded else candidates[:6]:
            text = ax.annotate(
                label,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=8.5,
                zorder=4,
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 1, "shrinkB": 5}
                if max(abs(dx), abs(dy)) >= 20
                else None,
            )
            text.update_positions(renderer)
            b = Text.get_window_extent(text, renderer)  # the words only: Annotation's own extent adds the leader
            box = (b.x0 - 2, b.y0 - 1, b.x1 + 2, b.y1 + 1)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not any(overlaps(box, other) for other in taken):
                break
            text.remove()
        else:
            if not crowded:
                for text in placed:
                    text.remove()
                return False
            text = ax.annotate(label, (x, y), xytext=candidates[0], textcoords="offset points", fontsize=8.5)
            b = text.get_window_extent(renderer)
            box = (b.x0, b.y0, b.x1, b.y1)
        placed.append(text)
        taken.append(box)
    return True


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def loss_curves(configs: list):
    """Training and eval loss against step, one line per run, one colour per configuration (seeds overlay)."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    histories = {
        name: [(c, run, (run["results"].get("history") or {}).get(name) or []) for c in configs for run in c["runs"]]
        for name in ("train", "eval")
    }
    if not any(points for curves in histories.values() for _, _, points in curves):
        return "no run recorded a loss history (history.train / history.eval in results.json)"
    figure = new_figure()
    palette = colormaps["tab10" if len(configs) <= 10 else "tab20"]
    colours = {c["label"]: palette(i % palette.N) for i, c in enumerate(configs)}
    axes = figure.subplots(1, 2)
    for ax, (name, curves) in zip(axes, histories.items()):
        all_losses = []
        for config, _run, points in curves:
            pairs = [
                (p[0], p[1])
                for p in points
                if isinstance(p, (list, tuple)) and len(p) >= 2 and isinstance(p[1], (int, float))
            ]
            if pairs:
                steps, losses = zip(*pairs)
                all_losses += losses
                ax.plot(
                    steps,
                    losses,
                    color=colours[config["label"]],
                    linewidth=1.4,
                    alpha=0.85,
                    marker="o" if len(pairs) < 12 else None,
                    ms=3,
                    label=config["label"],
                )
        ax.set(
            xlabel="optimizer step",
            ylabel=f"{name} loss (cross-entropy per token)",
            title=f"{'training' if name == 'train' else 'held-out eval'} loss",
        )
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        low, high = ax.get_xlim()
        if all_losses and high - low < 2:  # one logged step: a step either side, not 0.96 ... 1.04
            ax.set_xlim((low + high) / 2 - 1, (low + high) / 2 + 1)
        if not all_losses:
            ax.text(0.5, 0.5, f"no run recorded history.{name}", ha="center", va="center", transform=ax.transAxes)
            ax.set(xticks=[], yticks=[])
        elif min(all_losses) > 0 and max(all_losses) / min(all_losses) > 20:
            ax.set_yscale("log")  # losses that fall by orders of magnitude: the end of training stays readable
    unique = {}
    for ax in axes:
        unique.update((label, handle) for handle, label in zip(*ax.get_legend_handles_labels()))
    figure.legend(
        unique.values(),
        unique.keys(),
        loc="outside lower center",
        ncols=min(len(unique), 4),
        fontsize=8.5,
        frameon=False,
        title="configuration (seeds share a colour)",
        title_fontsize=8.5,
    )
    figure.suptitle("Loss curves")
    return figure


def quality_bars(configs: list, metric: str):
    """One bar per configuration (mean), error bar = sd, each seed a dot, the base model a marker."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure = new_figure()
    ax = figure.add_subplot()
    colours = strategy_colours(configs)
    xs = range(len(configs))
    ax.bar(
        xs,
        [c["mean"] for c in configs],
        yerr=[c["sd"] or 0 for c in configs],
        capsize=4,
        width=0.7,
        color=[colours[c["strategy"]] for c in configs],
        edgecolor="0.2",
        linewidth=0.6,
        alpha=0.85,
        zorder=2,
    )
    for x, c in zip(xs, configs):
        spread = [x + (i - (len(c["values"]) - 1) / 2) * 0.12 for i in range(len(c["values"]))]
        ax.scatter(spread, c["values"], s=16, color="black", zorder=4)
        if c["base"] is not None:
            ax.scatter([x], [c["base"]], marker="_", s=500, linewidths=2.2, color="crimson", zorder=5)
    pad = max(0, (3 - len(configs)) / 2)  # one or two bars keep a bar's width, centred
    ax.set_xlim(-0.6 - pad, len(configs) - 0.4 + pad)
    rotation = 0 if len(configs) <= 3 else 30 if len(configs) <= 8 else 60
    ax.set_xticks(
        list(xs),
        [c["label"] for c in configs],
        rotation=rotation,
        ha="right" if rotation else "center",
        rotation_mode="anchor",
        fontsize=9 if len(configs) <= 12 else 7.5,
    )
    top = max(
        [c["mean"] + (c["sd"] or 0) for c in configs]
        + [v for c in configs for v in c["values"]]
        + [c["base"] or 0 for c in configs]
    )
    ax.set_ylim(min(0, ax.get_ylim()[0]), top * 1.1 if top > 0 else 1)
    ax.set(ylabel=f"{nice(metric)} (mean ± 1 sd over seeds)", title=f"{nice(metric)} per configuration")
    ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=colour, label=s) for s, colour in colours.items()]
    handles += [
        Line2D([], [], marker="o", color="black", linestyle="", ms=4, label="one seed"),
        Line2D([], [], marker="_", color="crimson", linestyle="", ms=14, mew=2.2, label="base model"),
    ]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=9,
        frameon=False,
        title="strategy",
        title_fontsize=9,
    )
    return figure


def lr_sensitivity(tuning: dict):
    """A fair ablation's stage 1: each arm's validation loss against its learning rate (log scale), one line per arm,
    the chosen rate ringed. Flat near the choice: the arm is robust to its rate; a choice at an end of its line: the
    best rate may lie beyond the range."""
    from matplotlib import colormaps

    lines = {
        arm: sorted((t["lr"], t["validation_loss"]) for t in trials if t["validation_loss"] is not None and t["lr"])
        for arm, trials in tuning["arms"].items()
    }
    lines = {arm: points for arm, points in lines.items() if points}
    if not lines:
        return "no tuning run recorded eval.validation_loss"
    figure = new_figure()
    ax = figure.add_subplot()
    palette = colormaps["tab10" if len(lines) <= 10 else "tab20"]
    for i, (arm, points) in enumerate(lines.items()):
        colour = palette(i % palette.N)
        ax.plot(*zip(*points), marker="o", ms=5, color=colour, label=arm)
        chosen = tuning["chosen"].get(arm)
        best = [(lr, loss) for lr, loss in points if chosen is not None and math.isclose(lr, chosen)]
        if best:
            ax.scatter(*zip(*best), s=160, facecolors="none", edgecolors=colour, linewidths=2, zorder=4)
    ax.set_xscale("log")
    losses = [loss for points in lines.values() for _, loss in points]
    log_y = min(losses) > 0 and max(losses) / min(losses) > 10  # a diverged trial would flatten the others
    if log_y:
        ax.set_yscale("log")
    ax.set(
        xlabel="learning rate (log scale)",
        ylabel=f"validation loss{' (log scale)' if log_y else ''}, lower is better",
        title=f"Learning-rate sensitivity: {tuning['budget']} trials per arm, the chosen rate ringed",
    )
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return figure
