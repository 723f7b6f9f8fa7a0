"""fsync helpers shared by every writer (lake, store, views, capture spool): pure, stdlib only."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def fsync_file(path: Path | str, drop_cache: bool = False) -> None:
    """Flush a written file's data to disk; ``drop_cache``: then ``drop_cached`` it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if drop_cache:
            drop_cached(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    """Flush a folder's entries (a rename or a new name in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def drop_cached(file) -> None:
    """Ask the kernel to drop a file's pages from the page cache (``file``: a descriptor or an
    open file whose data is on disk). A hint: a no-op where the OS has no ``posix_fadvise``
    (macOS). The lake drops its appended parts once they are on disk: written once and read
    once more at compaction, they would only crowd the cache, and on the VMs measured in
    docs/performance.md (2026-12-02) writing 10.7 MB into fresh page-cache pages took 26 ms
    against 2.5 ms into pages just freed this way."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(file if isinstance(file, int) else file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def write_back(path: Path | str, stop: threading.Event, every: float = 0.002,
               idle: float = 5.0) -> None:
    """While another thread writes ``path`` (until ``stop`` is set), ask the kernel every
    ``every`` seconds to start writing the file's dirty pages to disk and to drop the ones
    already there, so that the fsync after the last write waits for the tail only.

    For a file that is dropped from the page cache once on disk anyway (the lake's appended
    parts). ``posix_fadvise(DONTNEED)`` on Linux starts writeback of dirty pages without
    waiting for it and drops clean ones; it never drops a dirty page. Measured on the 2-core
    VMs of docs/performance.md (2026-12-03, 112,000-row options parts of 16 MB, 20 each, three
    interleaved runs): the fsync after the write took 1.7-1.8 ms against 7.7-9.9 ms. A no-op
    where the OS has no ``posix_fadvise`` (macOS).

    Also returns once the file has neither appeared nor grown for ``idle`` seconds: it runs on
    a worker that the file's fsync queues behind, so a writer that never set ``stop`` (an
    interrupt landing just before it could) must not hold that worker for ever. Returning
    early only leaves more for the fsync."""
    if not hasattr(os, "posix_fadvise"):
        return
    fd, size, since = None, -1, time.monotonic()
    try:
        while not stop.is_set():
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:  # not created yet, or already renamed
                    pass
            if fd is not None:
                now = os.fstat(fd).st_size
                if now != size:
                    size, since = now, time.monotonic()
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if time.monotonic() - since > idle:
                return
            stop.wait(every)
    finally:
        if fd is not None:
            os.close(fd)
