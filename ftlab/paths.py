"""Where ftlab's own files live, and how a path in a config is found."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve(path: str) -> Path:
    """A config path as given if it exists (relative to the working directory), else relative to the project."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    shipped = PROJECT_ROOT / given
    return shipped if shipped.exists() else given
