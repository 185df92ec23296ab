"""Where ftlab's own files live, how a path in a config is found, and writing files so none is seen half-written."""

import os
import shutil
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve(path: str) -> Path:
    """A config path as given if it exists (relative to the working directory), else relative to the project."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    shipped = PROJECT_ROOT / given
    return shipped if shipped.exists() else given


def cache_root() -> Path:
    return Path(os.environ.get("FTLAB_CACHE", Path.home() / ".cache" / "ftlab"))


def build_once(target: Path, build) -> str:
    """The model folder target, made by build(folder) on first use: safe under parallel runs, and built under a
    temporary name then renamed, so a half-built folder is never found under the final name."""
    from filelock import FileLock

    if (target / "config.json").exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
            try:
                build(tmp)
                tmp.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def write_atomic(path: Path, text: str) -> None:
    """Written to a temporary name and renamed: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
