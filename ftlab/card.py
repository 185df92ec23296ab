"""`python -m ftlab.card RUN_DIR`: (re)writes the model card of a finished run."""

import argparse
import json
from pathlib import Path

from ftlab.runs.card import write_model_card


def main(argv=None) -> None:
    """python -m ftlab.card RUN_DIR: (re)writes the model card of a finished run."""
    from ftlab.model.source import is_run_dir

    parser = argparse.ArgumentParser(prog="python -m ftlab.card", description=main.__doc__.split(": ", 1)[1])
    parser.add_argument("run_dir", type=Path, help="a finished run")
    run_dir = parser.parse_args(argv).run_dir
    if not is_run_dir(run_dir) or not (run_dir / "results.json").is_file():
        raise SystemExit(f"error: {run_dir}: not a finished ftlab run (expected config.yaml, model/ and results.json)")
    try:
        results = json.loads((run_dir / "results.json").read_text())
        print(f"model card: {write_model_card(run_dir, results)}")
    except (ValueError, OSError, KeyError) as err:
        raise SystemExit(f"error: {run_dir}: {err}") from None


if __name__ == "__main__":
    main()
