"""Compacted day files and the seed's plain layout.

The catalog registers each compacted day under a unique name in the data path
(``<data>/main/<table>/date=D/<stem>_YYYYMMDD-<uuid>.parquet``) so that earlier versions stay
readable for time travel until expiry. The plain layout ``<root>/<dir>/date=D/<stem>_YYYYMMDD.parquet``
is a hard link to the current version, swapped in with a rename: a plain glob sees the old or
the new file, never both, and never a partial one. Temp files live in ``<root>/_lake/tmp``
because DuckDB's glob also matches hidden files beside the data.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from archive_platform.lake.catalog import ALIAS, LakeLocation, ident
from archive_platform.lake.tables import TableDef

COMPRESSION = "zstd"
ROW_GROUP_ROWS = 131_072


def new_file(loc: LakeLocation, td: TableDef, day: date, *, compacted: bool) -> Path:
    """A fresh name in the day's folder of the data path: ``<stem>_YYYYMMDD-<hex>.parquet`` for
    a whole (compacted) day, ``part-<hex>.parquet`` for an appended batch."""
    if not loc.local_data:
        raise NotImplementedError("writing to an object-store data path is not implemented yet")
    folder = Path(loc.data_path) / "main" / td.name / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:16]
    return folder / (f"{td.file_stem}_{day:%Y%m%d}-{token}.parquet" if compacted else f"part-{token}.parquet")


def _is_ours(td: TableDef, day: date, path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return re.fullmatch(rf"{re.escape(td.file_stem)}_{day:%Y%m%d}-[0-9a-f]{{16}}\.parquet", name) is not None


def day_files(con: duckdb.DuckDBPyConnection, td: TableDef, day: date) -> list[tuple[str, str | None, int]]:
    """(data file, delete file, rows of the day visible now) for each live file of the day."""
    part = f"/date={day.isoformat()}/"
    rows = con.execute("SELECT data_file, delete_file FROM ducklake_list_files(?, ?) "
                       "WHERE contains(data_file, ?)", [ALIAS, td.name, part]).fetchall()
    if not rows:
        return []
    visible = con.execute(f"SELECT count(*) FROM {ALIAS}.{ident(td.name)} WHERE date = ?",
                          [day]).fetchone()[0]
    return [(d, x, visible) for d, x in rows]


def is_compacted(td: TableDef, day: date, files: list[tuple[str, str | None, int]]) -> bool:
    """One file of ours, no deletes against it (inlined deletes included: counts match)."""
    if len(files) != 1:
        return False
    path, deletes, visible = files[0]
    return _is_ours(td, day, path) and deletes is None and pq.ParquetFile(path).metadata.num_rows == visible


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(td: TableDef, table: pa.Table, day: date, tmp: Path, final: Path) -> int:
    """Write ``table`` plus its ``date`` column to ``final`` durably (temp file, fsync,
    rename, fsync folder); returns the bytes written."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    table = table.select(td.schema.names).cast(td.schema)
    days = np.full(table.num_rows, (day - date(1970, 1, 1)).days, dtype=np.int32)
    table = table.append_column(pa.field("date", pa.date32()), pa.array(days, pa.date32()))
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression=COMPRESSION, row_group_size=ROW_GROUP_ROWS)
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return size


def publish(loc: LakeLocation, td: TableDef, day: date, versioned: str) -> Path:
    """Make the plain-layout path a hard link to ``versioned`` (idempotent, atomic)."""
    target = td.plain_path(loc.root, day)
    target.parent.mkdir(parents=True, exist_ok=True)
    src = Path(versioned)
    try:
        if os.path.samefile(src, target):
            return target
    except FileNotFoundError:
        pass
    tmp = loc.tmp_dir / f"{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.link"
    loc.tmp_dir.mkdir(parents=True, exist_ok=True)
    os.link(src, tmp)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return target


def unpublish(loc: LakeLocation, td: TableDef, day: date) -> None:
    target = td.plain_path(loc.root, day)
    if target.exists():
        target.unlink()
        fsync_dir(target.parent)


def remove_stale_temps(loc: LakeLocation, older_than: timedelta) -> None:
    cutoff = time.time() - older_than.total_seconds()
    if loc.tmp_dir.is_dir():
        for e in os.scandir(loc.tmp_dir):
            if e.stat(follow_symlinks=False).st_mtime < cutoff:
                Path(e.path).unlink(missing_ok=True)
