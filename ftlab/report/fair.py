"""sweep=fair_ablation: every arm of an ablation gets the same tuning budget, its setting is chosen on a validation
split carved from the training data, and the arms are compared at their best with paired verdicts.

- Stage 1, tuning (<sweep dir>/tune): each arm runs tune.trials learning rates, log-spaced over its strategy's
  lr_range (the range and why: conf/strategy/*.yaml), all with one seed. Each arm's rate is the one with the lowest
  eval.validation_loss: the training rows that data.validation_split held out. The held-out questions are answered
  too (every run does), but nothing here reads them (tests/test_fair.py shuffles them and the choice stands).
- Stage 2, confirmation (<sweep dir>/confirm): each arm at its chosen rate with seeds 1 .. tune.seeds.
- The report (<sweep dir>/report): stage 2's table and paired verdicts, the budget and the choice of every arm, and
  its learning-rate sensitivity (validation loss against rate, a line per arm).

Each stage is an ordinary Hydra grid. What joins them is this callback, because no Hydra sweeper can express the
second stage: its grid (each arm at its own chosen rate) depends on the first stage's results, and a sweep's points
are fixed before it starts. Optuna's sweeper would not do for the first stage either: one study looks for one best
point across all arms and gives the promising arms more trials, not each arm the same budget."""

import json
import subprocess
import sys
from pathlib import Path

from ftlab.core.files import write_json
from ftlab.report import SweepReport, write_report
from ftlab.report.collect import collect_results, load_run, lookup, number

SELECT = "eval.validation_loss"  # lower is better; the only number the choice reads
STAGE_KEYS = ("tune.trial", "tune.chosen", "seed", "hydra.sweep.dir", "hydra.sweep.subdir")  # set per stage below


def choose(runs: list) -> dict:
    """Each arm's trials (rate, validation loss, status) and the chosen one: the lowest validation loss among the
    trials that finished. Reads nothing but results.json's tune record, status and eval.validation_loss."""
    arms = {}
    for run in runs:
        tune = run["results"].get("tune") or {}
        if "arm" not in tune:
            continue
        value = number(lookup(run["results"], SELECT)) if run["status"] == "ok" else None
        arms.setdefault(tune["arm"], []).append(
            {
                "trial": tune.get("trial"),
                "lr": tune.get("lr"),
                "validation_loss": value,
                "status": run["status"],
                "dir": str(run["dir"]),
            }
        )
    chosen = {}
    for arm, trials in arms.items():
        trials.sort(key=lambda t: (t["trial"] is None, t["trial"]))
        finished = [t for t in trials if t["validation_loss"] is not None]
        if finished:  # ties go to the lower trial (the lower rate): deterministic
            chosen[arm] = min(finished, key=lambda t: t["validation_loss"])["lr"]
        elif all(t["status"] == "skipped" for t in trials):  # cannot train (full on 4bit): stage 2 skips it again,
            chosen[arm] = trials[0]["lr"]  # for the same reason, before the rate matters
        # An arm whose every trial failed has no rate: its stage 2 runs fail, saying so (tuning.py).
    budgets = {len(trials) for trials in arms.values()}
    return {
        "select": f"{SELECT} (lowest)",
        "budget": max(budgets) if budgets else 0,
        "equal_budget": len(budgets) <= 1,
        "arms": arms,
        "chosen": chosen,
    }


def confirm_command(config, tuning: dict, sweep_dir: Path) -> list:
    """Stage 2: the stage 1 command's overrides (the user's grid and settings), each arm at its chosen rate, the
    confirmation seeds, into <sweep dir>/confirm."""
    given = [*config.hydra.overrides.hydra, *config.hydra.overrides.task]  # hydra/launcher=slurm too
    kept = [o for o in given if o.split("=", 1)[0].lstrip("+~") not in STAGE_KEYS]
    chosen = ",".join(f"{arm}:{lr!r}" for arm, lr in tuning["chosen"].items())
    seeds = ",".join(str(s) for s in range(1, config.tune.seeds + 1))
    return [
        sys.executable,
        "-m",
        "ftlab",
        *kept,
        "tune.trial=null",
        f"++tune.chosen={{{chosen}}}",  # ++: the schema's empty mapping takes new keys
        f"seed={seeds}",
        f"hydra.sweep.dir={json.dumps(str(sweep_dir / 'confirm'))}",
        "hydra.sweep.subdir=${hydra.job.num}_${run_name}",
    ]


class FairAblation(SweepReport):
    """Hydra callback of sweep=fair_ablation. At the end of stage 1: choose, run stage 2, write the report. At the
    end of stage 2 (tune.chosen set): the ordinary sweep report of the confirmation runs."""

    def on_multirun_end(self, config, **kwargs) -> None:
        if config.tune.chosen:
            return super().on_multirun_end(config, **kwargs)
        from ftlab.report.tables import count_line

        sweep_dir = Path(config.hydra.sweep.dir)
        # Hydra turns a callback's exception into a warning and exit 0: every failure here is a SystemExit(1).
        try:
            tuning = choose([load_run(path, SELECT) for path in collect_results([sweep_dir / "tune"])])
            write_json(sweep_dir / "tuning.json", tuning)
        except OSError as err:
            fail(str(err))
        if not tuning["chosen"]:
            fail(f"no tuning run of {sweep_dir / 'tune'} finished with {SELECT}: nothing to confirm")
        print(f"fair ablation: chosen on {SELECT}: {tuning['chosen']} ({sweep_dir / 'tuning.json'})", flush=True)
        if config.tune.seeds < 1:  # tuning only: look at the choice (and its cost) before paying for stage 2
            return
        stage2 = subprocess.run(confirm_command(config, tuning, sweep_dir), check=False)
        metric = str(self.metric or config.metric)
        try:
            summary = write_report([sweep_dir / "confirm"], sweep_dir / "report", metric, self.log_wandb, tuning=tuning)
        except OSError as err:
            fail(f"{err} (the confirmation stage exited {stage2.returncode})")
        print(f"{summary['table']}\n\n{count_line(summary)}; report: {summary['report']}", flush=True)
        if stage2.returncode or summary["failing"]:
            fail(f"the confirmation stage did not finish cleanly (see {summary['report']})")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)
