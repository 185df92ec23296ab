"""`python -m ftlab.merge RUN_DIR OUT_DIR`: a finished run as a standalone Hugging Face model folder."""

import argparse
from pathlib import Path

from ftlab.model.source import is_run_dir, merge_run


def main(argv=None) -> None:
    """python -m ftlab.merge RUN_DIR OUT_DIR: a standalone model that AutoModelForCausalLM.from_pretrained loads."""
    parser = argparse.ArgumentParser(prog="python -m ftlab.merge", description=__doc__.strip("`").split("`: ")[-1])
    parser.add_argument("run_dir", type=Path, help="a finished run")
    parser.add_argument("out_dir", type=Path, help="a new or empty folder")
    args = parser.parse_args(argv)
    run_dir, out_dir = args.run_dir, args.out_dir
    if not is_run_dir(run_dir):
        raise SystemExit(f"error: {run_dir}: not an ftlab run directory (expected config.yaml and model/)")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SystemExit(f"error: {out_dir}: exists and is not empty (choose a new folder; nothing is overwritten)")
    try:
        info = merge_run(run_dir, out_dir)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"merged {info['strategy']} run into {out_dir} ({info['dtype']}) {info['note']}".rstrip())


if __name__ == "__main__":
    main()
