"""Atomic Parquet files outside the lake: temp file, fsync, rename, fsync the folder.

The datasets live in the DuckLake (``archive_platform.lake``); this module writes the few plain
files that are not dataset partitions (the coverage ledger of each root), so that a reader never
sees half a file. Temp names start with ``.`` and end in ``.tmp``: no ``*.parquet`` glob matches them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from archive_platform.durable import fsync_dir
from archive_platform.store.errors import ArchiveWriteError

COMPRESSION = "zstd"


def temp_path(final: Path) -> Path:
    """A temp name beside ``final`` that no reader glob (``*.parquet``) matches."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _failed(tmp: Path, final: Path, exc: BaseException) -> BaseException:
    """Remove the temp file without letting a cleanup error hide the real one; name the file."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass
    if isinstance(exc, OSError) and not isinstance(exc, ArchiveWriteError) and exc.errno is not None:
        return ArchiveWriteError(exc.errno, f"could not write {final} ({exc.strerror}); nothing was changed")
    return exc


def write_table_atomic(final: Path, table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> int:
    """Write a table as Parquet to ``final`` atomically; returns the bytes written."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = temp_path(final)
    try:
        with open(tmp, "xb") as fh:
            pq.write_table(table, fh, compression=COMPRESSION, write_statistics=True)
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException as exc:
        err = _failed(tmp, final, exc)
        if err is exc:
            raise
        raise err from exc
    return size
