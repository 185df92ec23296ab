"""The ftlab run script: Hydra composes and checks the config, then one run is the recipe (ftlab/recipe.py: data,
model, base evaluation, training, evaluation, save) inside its run directory's lifecycle (ftlab/runs/lifecycle.py:
claiming, resuming, skipping, failures, results.json's status, the summary).

Run as: python -m ftlab [group=option ...] [key=value ...]"""

import hydra
from omegaconf import DictConfig

from ftlab.config.schema import register
from ftlab.core.console import configure as configure_console
from ftlab.core.console import quiet_libraries, silence_noisy_loggers
from ftlab.core.files import PROJECT_ROOT
from ftlab.runs.lifecycle import run_directory

register()  # the typed schema: Hydra validates every composed config against it, before main() runs
silence_noisy_loggers()


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One run. Returns cfg.metric (what a Hydra sweeper such as Optuna optimises), None when it did not finish."""
    configure_console(cfg.log.verbose)  # the terminal shows ftlab's lines; ftlab.log everything (core/console.py)
    with run_directory(cfg) as run:
        if run.to_do:  # not a finished run kept, nor a combination skipped
            with run.phase("imports"):  # torch, transformers, TRL: here, so --help and --cfg job stay instant
                from ftlab.recipe import recipe

                quiet_libraries()
            run.done(*recipe(cfg, run))
    return run.metric
