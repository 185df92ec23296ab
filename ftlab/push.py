"""`python -m ftlab.push RUN_DIR REPO_ID [--private] [--merged] [--dry-run]`: a finished run on the Hugging Face Hub,
with its model card, in one command (huggingface_hub, which transformers already installs).

What goes up, at the repository's root so that `from_pretrained(REPO_ID)` loads it: the model card (README.md), what
the run trained (a PEFT adapter, ftlab's adapter layers or the whole model, with the tokenizer and chat template),
results.json and the resolved config.yaml (secrets were hidden when the run wrote it). With --merged, the adapter
merged into its base (python -m ftlab.merge) instead: a standalone model. --dry-run lists every file and where it
would go, and needs neither a token nor the network."""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ftlab.runs.records import finished_results

RUN_FILES = ("README.md", "results.json", "config.yaml")  # beside the model's own files


def staged_files(run_dir: Path, model_dir: Path) -> dict:
    """{path in the repository: local file}: the model folder's files at the root, then the run's record."""
    files = {p.relative_to(model_dir).as_posix(): p for p in sorted(model_dir.rglob("*")) if p.is_file()}
    files |= {name: run_dir / name for name in RUN_FILES if (run_dir / name).is_file()}
    return files


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ftlab.push", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("repo_id", help="user/name or org/name on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--merged", action="store_true", help="push the adapter merged into its base")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; upload nothing")
    args = parser.parse_args(argv)
    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        raise SystemExit(f"error: {args.repo_id}: expected a repository id like user/name")
    results = finished_results(args.run_dir, "pushed")

    with tempfile.TemporaryDirectory(prefix="ftlab-push-") as scratch:
        model_dir = args.run_dir / "model"
        if args.merged:
            from ftlab.model.source import merge_run

            model_dir = Path(scratch) / "merged"
            try:
                merge_run(args.run_dir, model_dir)
            except (ValueError, OSError) as err:
                raise SystemExit(f"error: {err}") from None
        files = staged_files(args.run_dir, model_dir)
        size = sum(f.stat().st_size for f in files.values())
        where = f"https://huggingface.co/{args.repo_id}"
        verb = "would upload" if args.dry_run else "uploading"
        print(f"{verb} {len(files)} files ({size / 2**20:.1f} MB) to {where}")
        for name, path in files.items():
            print(f"  {name:<32} <- {path}")
        if args.dry_run:
            return
        upload(args, files, Path(scratch) / "repo", results)
    print(f"pushed: {where}")


def upload(args, files: dict, staging: Path, results: dict) -> None:
    """One commit of exactly the listed files (a staging folder of links), after the token and the repository."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if not get_token():
        raise SystemExit("error: no Hugging Face token: set HF_TOKEN or run `hf auth login` (nothing was uploaded)")
    for name, path in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            (staging / name).symlink_to(path.resolve())
        except OSError:
            shutil.copy2(path, staging / name)
    api = HfApi()
    try:
        api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        api.upload_folder(
            repo_id=args.repo_id,
            folder_path=staging,
            commit_message=f"ftlab run {results.get('run_name', args.run_dir.name)}",
        )
    except (HfHubHTTPError, OSError) as err:  # no network, no permission: one line
        raise SystemExit(f"error: push to {args.repo_id} failed: {str(err).splitlines()[0]}") from None


if __name__ == "__main__":
    sys.exit(main())
