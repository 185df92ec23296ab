"""Where ftlab's own files live, how a path in a config is found, and writing files (and folders) so none is ever
seen half-written."""

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve(path: str) -> Path:
    """A config path as given if it exists (relative to the working directory), else relative to the project."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    shipped = PROJECT_ROOT / given
    return shipped if shipped.exists() else given


def is_run_dir(path: Path) -> bool:
    """An ftlab run directory: its resolved config and what it trained."""
    return (path / "config.yaml").is_file() and (path / "model").is_dir()


def run_config(run_dir: Path):
    """The run's resolved config as ftlab saved it (Hydra's .hydra/ holds the latest command in that directory,
    which may be a refused one)."""
    from omegaconf import OmegaConf

    return OmegaConf.load(run_dir / "config.yaml")


def cache_root() -> Path:
    return Path(os.environ.get("FTLAB_CACHE", Path.home() / ".cache" / "ftlab"))


@contextmanager
def atomic_dir(target: Path, replace: bool = False):
    """Yields a temporary folder beside target; when the block ends without an error it becomes target (an existing
    target is replaced only with replace=True), else it is removed. A reader never finds half a folder under the
    final name, whatever kills the writer."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if replace and target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(old / target.name)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_once(target: Path, build) -> str:
    """The model folder target, made by build(folder) on first use: safe under parallel runs, and never found
    half-built under its final name."""
    from filelock import FileLock

    if (target / "config.json").exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            with atomic_dir(target) as tmp:
                build(tmp)
    return str(target)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Every file ftlab writes goes through here: written to a temporary name and renamed, so a reader never sees
    half a file, and with the run's secret values hidden (core/secrets.py)."""
    from ftlab.core.secrets import hide_secrets

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(hide_secrets(text), encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_png(path: Path, figure, dpi: int) -> None:
    """A matplotlib figure as a PNG file, written like every other file."""
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=dpi)
    write_atomic(path, image.getvalue())
