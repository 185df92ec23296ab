"""`python -m ftlab ...` and the `ftlab` command: the run script (ftlab/run.py), with config errors on one line."""

import os
import sys


def cli() -> None:
    """Hydra prints a config error (a wrong type, an unknown key or option) over several lines: ftlab makes it one
    `error:` line naming the key. HYDRA_FULL_ERROR=1 still shows Hydra's own report with the stack trace."""
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing, so the error can be reworded
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ftlab.core.distributed import join

    sys.argv += join()  # under torchrun/accelerate: one start time (so one run directory) for every rank
    from ftlab.run import main

    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        if full:
            raise
        sys.exit(f"error: {one_line(err)}")


def one_line(err: BaseException) -> str:
    """Hydra's message and its cause's, the lines that say what and where, joined; a list of options (tab-indented
    lines) comma-separated after its heading; Hydra's config search path left out."""
    parts = []
    for exc in (err, err.__cause__):
        text = str(exc or "").split("\nConfig search path:")[0]
        for line in text.splitlines():
            if line.startswith("\t") and parts:
                parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
            elif line.strip().startswith("full_key:") and parts:
                parts[-1] += f" ({line.strip()})"
            elif line.strip() and not line.strip().startswith(("reference_type=", "object_type=")):
                parts.append(line.strip().rstrip("."))
    return "; ".join(dict.fromkeys(parts))


if __name__ == "__main__":
    cli()
