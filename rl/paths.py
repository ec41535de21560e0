"""Output paths of the commands, checked before any work: a folder or file that can be written, or a one-line
ValueError saying why not."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def writable_folder(path: str | os.PathLike, what: str = "out_dir") -> Path:
    """`path` as a folder that exists (created with its parents) and can be written; ValueError in one line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{what} {str(path)!r} cannot be created: {reason(err)}") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(f"{what} {str(path)!r} is not writable: {reason(err)}") from None
    return path


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a file that can be written (its folder is created); ValueError in one line."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder; give a file name")
    writable_folder(path.parent, f"the folder of {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {str(path)!r} is not writable: permission denied")
    return path


def reason(err: BaseException) -> str:
    """An OSError's reason in words ("permission denied"), else the error's text."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return str(err)
