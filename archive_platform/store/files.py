"""File mechanics of the store: names, atomic Parquet writes, partition locks, footer statistics.

A partition folder holds the daily file ``<stem>_YYYYMMDD.parquet``, intraday parts
``<stem>_YYYYMMDD.part-NNNNNN-<hash8>.parquet`` (sorted by name = sorted by write order, and
after the daily file), a lock file ``.lock`` and, only while a writer is alive, temp files
``.<name>.<pid>.<hex>.tmp``. Readers glob ``*.parquet``, which matches neither of the last two.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# the file-name grammar lives in layout (one module for every writer and reader)
from archive_platform.store.layout import daily_name, part_digest, part_name, part_seq  # noqa: F401

COMPRESSION = "zstd"
#: rows per row group: a snapshot part (~112k option rows) is one or two groups, a full
#: options day (~3M rows) about two dozen, enough for pruning without bloating the footer
ROW_GROUP_ROWS = 131_072
#: key in the daily file's Parquet metadata: parts with a sequence number <= this value were
#: folded into (or superseded by) the daily file and must be ignored if a crash left them behind
COMPACTED_THROUGH = b"archive_platform.compacted_through"
LOCK_NAME = ".lock"


@dataclass(frozen=True)
class PartitionFiles:
    """What a partition folder holds: the daily file (if any) and the live parts in order."""

    daily: Path | None
    compacted_through: int
    parts: list[tuple[int, Path]]  # (sequence number, path), ascending

    @property
    def paths(self) -> list[Path]:
        """Every live file, oldest first (daily file, then parts in write order)."""
        head = [self.daily] if self.daily is not None else []
        return head + [p for _, p in self.parts]

    @property
    def last_seq(self) -> int:
        return max([self.compacted_through] + [s for s, _ in self.parts])


def content_digest(data: bytes) -> str:
    """First 8 hex digits of the SHA-256 of a file's bytes (names a part by its content)."""
    return hashlib.sha256(data).hexdigest()[:8]


def _writer_kwargs() -> dict[str, Any]:
    return {"compression": COMPRESSION, "row_group_size": ROW_GROUP_ROWS, "write_statistics": True}


def encode_parquet(table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> bytes:
    """The Parquet bytes of a table (deterministic for identical tables and settings)."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **_writer_kwargs())
    return sink.getvalue().to_pybytes()


def temp_path(final: Path) -> Path:
    """A temp name beside ``final`` that no reader glob (``*.parquet``) matches."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)
    fsync_dir(final.parent)


class ArchiveWriteError(OSError):
    """A file write failed (disk full, read-only file system...); the message names the file,
    hence the dataset folder and the partition. Nothing was installed."""


def _failed(tmp: Path, final: Path, exc: BaseException) -> BaseException:
    """Remove the temp file without letting a cleanup error hide the real one; name the file."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass
    if isinstance(exc, OSError) and not isinstance(exc, ArchiveWriteError) and exc.errno is not None:
        return ArchiveWriteError(exc.errno, f"could not write {final} ({exc.strerror}); nothing was changed")
    return exc


def write_bytes_atomic(final: Path, data: bytes) -> int:
    """Write ``data`` to ``final`` atomically: temp file, fsync, rename, fsync the folder."""
    tmp = temp_path(final)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _install(tmp, final)
    except BaseException as exc:
        err = _failed(tmp, final, exc)
        if err is exc:
            raise
        raise err from exc
    return len(data)


def write_table_atomic(final: Path, table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> int:
    """Write a table as Parquet to ``final`` atomically; returns the bytes written.

    Streams to the temp file rather than building the bytes in memory (a full options day is
    ~3M rows).
    """
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = temp_path(final)
    try:
        with open(tmp, "xb") as fh:
            pq.write_table(table, fh, **_writer_kwargs())
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        _install(tmp, final)
    except BaseException as exc:
        err = _failed(tmp, final, exc)
        if err is exc:
            raise
        raise err from exc
    return size


def unlink_durable(paths: list[Path]) -> None:
    """Remove files (missing ones are fine) and make the removal durable."""
    folders = set()
    for p in paths:
        p.unlink(missing_ok=True)
        folders.add(p.parent)
    for d in folders:
        fsync_dir(d)


@contextmanager
def partition_lock(folder: Path) -> Iterator[None]:
    """Exclusive per-partition writer lock (``flock`` on ``<folder>/.lock``); readers never lock.

    The kernel releases a flock when its holder dies, so a killed writer never wedges the
    partition.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def remove_stale_temps(folder: Path) -> None:
    """Delete temp files of dead writers; call only while holding the partition lock."""
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            Path(entry.path).unlink(missing_ok=True)


def compacted_through(path: Path) -> int:
    """The sequence number recorded in a daily file's metadata (0 when absent)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(COMPACTED_THROUGH)
    return int(raw) if raw else 0


def list_partition(folder: Path, stem: str, day: date) -> PartitionFiles:
    """The daily file and the parts of a partition; parts the daily file supersedes are left out."""
    daily = folder / daily_name(stem, day)
    parts: list[tuple[int, Path]] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return PartitionFiles(None, 0, [])
    has_daily = False
    for e in entries:
        if e.name == daily.name:
            has_daily = True
        elif not e.name.startswith(".") and e.name.endswith(".parquet"):
            seq = part_seq(e.name)
            if seq is not None:
                parts.append((seq, Path(e.path)))
    through = compacted_through(daily) if has_daily else 0
    live = sorted((s, p) for s, p in parts if s > through)
    return PartitionFiles(daily if has_daily else None, through, live)


def superseded_parts(folder: Path, stem: str, day: date, through: int) -> list[Path]:
    """Parts a crash left behind after the daily file already folded them in."""
    if not folder.is_dir():
        return []
    out = []
    for e in os.scandir(folder):
        seq = part_seq(e.name)
        if seq is not None and seq <= through and not e.name.startswith("."):
            out.append(Path(e.path))
    return out


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one file (never a dataset: a ``date=`` folder must not turn into a column)."""
    return pq.ParquetFile(path).read(columns=columns)


def footer_ranges(path: Path, columns: list[str]) -> tuple[int, dict[str, tuple[Any, Any] | None]]:
    """Row count and per-column (min, max) over all row groups, from the footer only.

    A column without statistics maps to None (the caller must then assume it may match).
    """
    md = pq.ParquetFile(path).metadata
    index = {md.schema.column(i).name: i for i in range(md.num_columns)}
    out: dict[str, tuple[Any, Any] | None] = {}
    for name in columns:
        lo = hi = None
        ok = name in index and md.num_row_groups > 0
        for g in range(md.num_row_groups if ok else 0):
            st = md.row_group(g).column(index[name]).statistics
            if st is None or not st.has_min_max:
                ok = False
                break
            lo = st.min if lo is None or st.min < lo else lo
            hi = st.max if hi is None or st.max > hi else hi
        out[name] = (lo, hi) if ok else None
    return md.num_rows, out


def num_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows
