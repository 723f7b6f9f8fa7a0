"""A real tmpfs mounted for a test (root only): a small disk for ENOSPC, or a read-only file
system (root writes through permission bits, so only a real read-only mount shows that failure).
Skips the test, with the reason, where mounting is not allowed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs at ``path`` (created) with ``options`` (e.g. ``size=24m`` or ``ro,size=1m``)."""
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here: {out.stderr.strip() or out.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
