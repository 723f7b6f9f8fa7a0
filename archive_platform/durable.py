"""fsync helpers shared by every writer (lake, store, views, capture spool): pure, stdlib only."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path | str) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    """Flush a folder's entries (a rename or a new name in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
