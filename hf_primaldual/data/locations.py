"""Telling a local path from a Hub name, for the loaders that take either (`load_image_dataset`,
`load_timeseries`)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id


def looks_local(name_or_path: str | os.PathLike) -> bool:
    """Whether a name can only mean a local path: a Path, a string starting with `.`, `~` or `/` or holding a
    backslash, one that is no valid Hub id (`name` or `owner/name`), or one whose parent folder exists here."""
    if isinstance(name_or_path, os.PathLike):
        return True
    text = str(name_or_path)
    if text.startswith((".", "~", "/")) or "\\" in text:
        return True
    try:
        validate_repo_id(text)
    except HFValidationError:
        return True
    parent = Path(text).parent
    return parent != Path(".") and parent.is_dir()


def no_such_path(name_or_path: str | os.PathLike, path: Path) -> str:
    """The message for a local-looking `name_or_path` that does not exist, with the nearest entries of the nearest
    existing folder as likely meant names."""
    absolute = Path(os.path.abspath(path))  # abspath, unlike Path.absolute, folds `..` away
    existing = next((folder for folder in absolute.parents if folder.is_dir()), None)
    missing = absolute.relative_to(existing).parts[0] if existing else path.name
    close = difflib.get_close_matches(missing, [entry.name for entry in existing.iterdir()] if existing else [], n=3)
    hint = f" (did you mean {', '.join(str(existing / name) for name in close)}?)" if close else ""
    return (
        f"{name_or_path}: no such file or directory. It can only be a local path, so it was not looked up on the "
        f"Hub. Check the path{hint}; a Hub dataset is named `name` or `owner/name`."
    )
