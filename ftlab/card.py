"""`python -m ftlab.card RUN_DIR`: (re)writes the model card of a finished run."""

import json
import sys
from pathlib import Path

from ftlab.runs.card import write_model_card


def main(argv=None) -> None:
    """python -m ftlab.card RUN_DIR: (re)writes the model card of a finished run."""
    from ftlab.model.source import is_run_dir

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        raise SystemExit("usage: python -m ftlab.card RUN_DIR")
    run_dir = Path(args[0])
    if not is_run_dir(run_dir) or not (run_dir / "results.json").is_file():
        raise SystemExit(f"error: {run_dir}: not a finished ftlab run (expected config.yaml, model/ and results.json)")
    try:
        results = json.loads((run_dir / "results.json").read_text())
        print(f"model card: {write_model_card(run_dir, results)}")
    except (ValueError, OSError, KeyError) as err:
        raise SystemExit(f"error: {run_dir}: {err}") from None


if __name__ == "__main__":
    main()
