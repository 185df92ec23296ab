"""The ftlab run script: Hydra composes and checks the config, then one run is the recipe (ftlab/recipe.py: data,
model, base evaluation, training, evaluation, save) inside its run directory's lifecycle (ftlab/runs/lifecycle.py:
claiming, resuming, skipping, failures, results.json's status, the summary).

Run as: python -m ftlab [group=option ...] [key=value ...]"""

import logging

import hydra
from omegaconf import DictConfig

from ftlab.config.schema import register
from ftlab.core.console import configure as configure_console
from ftlab.core.console import quiet_libraries
from ftlab.core.files import PROJECT_ROOT
from ftlab.runs.lifecycle import run_directory

register()  # the typed schema: Hydra validates every composed config against it, before main() runs
# peft imports torchao, which warns about CUDA kernels it cannot load on a CPU machine: noise, not news.
for noisy in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):
    logging.getLogger(noisy).setLevel(logging.ERROR)


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
