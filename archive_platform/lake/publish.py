"""Compacted day files and the seed's plain layout.

The catalog registers each compacted day under a unique name in the data path
(``<data>/main/<table>/date=D/<stem>_YYYYMMDD-<uuid>.parquet``) so that earlier versions stay
readable for time travel until expiry. The plain layout ``<root>/<dir>/date=D/<stem>_YYYYMMDD.parquet``
is a hard link to the current version, swapped in with a rename: a plain glob sees the old or
the new file, never both, and never a partial one. Temp files live in ``<root>/_lake/tmp``
because DuckDB's glob also matches hidden files beside the data.

On S3 (``LakeLocation.s3``) the same names are object keys under ``s3://bucket/prefix``: a file is
written to the local temp folder, uploaded, and registered only after the upload returned and
the object's size matched; the plain-layout object is a server-side copy (S3 has no hard links;
a PUT or COPY replaces an object atomically, so a reader gets the old or the new object whole).
"""

from __future__ import annotations

import base64
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
from archive_platform.lake.remote import RemoteFile, filesystem
from archive_platform.lake.tables import TableDef

COMPRESSION = "zstd"  # day files, kept
PART_COMPRESSION = "lz4"  # appended parts, folded by end-of-day compaction
ROW_GROUP_ROWS = 131_072


def new_file(loc: LakeLocation, td: TableDef, day: date, *, compacted: bool) -> Path | RemoteFile:
    """A fresh name in the day's folder of the data path: ``<stem>_YYYYMMDD-<hex>.parquet`` for
    a whole (compacted) day, ``part-<hex>.parquet`` for an appended batch."""
    token = uuid.uuid4().hex[:16]
    name = f"{td.file_stem}_{day:%Y%m%d}-{token}.parquet" if compacted else f"part-{token}.parquet"
    if loc.s3 is not None:
        return RemoteFile(f"{loc.data_path}main/{td.name}/date={day.isoformat()}/{name}", loc.s3)
    folder = Path(loc.data_path) / "main" / td.name / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def plain_days(loc: LakeLocation, td: TableDef) -> list[date]:
    """Days whose plain-layout object exists in the bucket (one listing of the dataset's prefix)."""
    from pyarrow import fs

    assert loc.s3 is not None
    base = loc.s3.key(f"{loc.s3.url}/{td.directory}")
    pattern = re.compile(rf"/date=(\d{{4}}-\d{{2}}-\d{{2}})/{re.escape(td.file_stem)}_\d{{8}}\.parquet$")
    infos = filesystem(loc.s3).get_file_info(fs.FileSelector(base, allow_not_found=True, recursive=True))
    return sorted(date.fromisoformat(m.group(1)) for i in infos
                  if i.type == fs.FileType.File and (m := pattern.search(i.path)))


def as_file(loc: LakeLocation, path: str) -> Path | RemoteFile:
    """A catalog file name as a ``Path`` (local data path) or ``RemoteFile`` (S3)."""
    return RemoteFile(path, loc.s3) if loc.s3 is not None else Path(path)


def plain_file(loc: LakeLocation, td: TableDef, day: date) -> Path | RemoteFile:
    """The plain-layout file of a day: under the root, or under the S3 prefix."""
    if loc.s3 is not None:
        return RemoteFile(f"{loc.s3.url}/{td.directory}/date={day.isoformat()}/"
                          f"{td.file_stem}_{day:%Y%m%d}.parquet", loc.s3)
    return td.plain_path(loc.root, day)


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


def is_compacted(td: TableDef, day: date, files: list[tuple[str, str | None, int]],
                 loc: LakeLocation | None = None) -> bool:
    """One file of ours, no deletes against it (inlined deletes included: counts match)."""
    if len(files) != 1:
        return False
    path, deletes, visible = files[0]
    if not _is_ours(td, day, path) or deletes is not None:
        return False
    if loc is not None and loc.s3 is not None:
        rows = pq.ParquetFile(loc.s3.key(path), filesystem=filesystem(loc.s3)).metadata.num_rows
    else:
        rows = pq.ParquetFile(path).metadata.num_rows
    return rows == visible


def read_day_files(loc: LakeLocation, td: TableDef, files: list[tuple[str, str | None, int]]):
    """``(frame, rows per file)``: the rows of a day's live files read straight from them
    as one polars frame (files in catalog order, the order they were added), or None when
    only the catalog can say which rows are live: a delete file against any of them, a data
    path on S3, or row counts that do not add up to what the catalog shows. Measured in
    bench/lake.py: 27 snapshot files (3.02 M rows) in about 0.3 s, against 1.1-1.2 s through
    DuckDB's DuckLake scan into Arrow. The caller holds the day's writer lock, so the list
    is current."""
    import polars as pl

    if not files or loc.s3 is not None or any(x is not None for _, x, _ in files):
        return None
    paths = [f for f, _, _ in files]
    try:
        sizes = [pq.ParquetFile(f).metadata.num_rows for f in paths]
        if sum(sizes) != files[0][2]:
            return None
        # files from before a column was added lack it (null), every file has ``date`` (ignored)
        frame = pl.scan_parquet(paths, schema=_polars_schema(td), missing_columns="insert",
                                extra_columns="ignore", hive_partitioning=False).collect()
    except (OSError, pl.exceptions.PolarsError):
        return None
    return frame, sizes


def sort_rows(frame, keys: tuple[str, ...], parts: list[int] | None = None):
    """The polars ``frame`` in ``keys`` order (ascending, nulls last), as ``ORDER BY`` gave
    it before, cheaply when the input is already nearly in order:

    - ``parts`` (rows per appended file, in order): each part was written sorted, so the day
      is the parts' runs of the first key (a symbol: a few dozen runs a part) put in order,
      which slices and concatenates without copying a row;
    - else a stable sort on the first key alone;
    - each result is checked, and the full multi-key sort runs when it is not in order.

    Measured on a 3.02 M-row options day of 27 parts (bench/lake.py): runs 0.04 s (the
    writer then gathers the slices as it encodes), stable first-key sort 0.35-0.40 s, full
    polars sort 0.56-1.37 s; the check costs 0.05 s."""
    import polars as pl

    if not keys or frame.height < 2:
        return frame
    if any(frame[k].null_count() for k in keys):
        return frame.sort(list(keys), maintain_order=True, nulls_last=True)
    if parts:
        merged = _merge_runs(frame, keys[0], parts)
        if merged is not None and _in_order(merged, keys):
            return merged
    first = frame.sort(keys[0], maintain_order=True, nulls_last=True)
    if not _in_order(first, keys):
        first = frame.sort(list(keys), maintain_order=True, nulls_last=True)
    return first


def _merge_runs(frame, key: str, parts: list[int]):
    """The runs of equal ``key`` values of each part, ordered by value (ties: part order,
    then position), as one frame of zero-copy slices; None when there are too many runs
    for this to pay (parts not grouped by ``key``)."""
    import polars as pl

    runs, start = [], 0
    limit = max(10_000, frame.height // 16)
    for i, size in enumerate(parts):
        pos = start
        encoded = frame.slice(start, size).select(pl.col(key).rle()).unnest(key)
        for j, (length, value) in enumerate(encoded.iter_rows()):
            runs.append((value, i, j, pos, length))
            pos += length
        start += size
        if len(runs) > limit:
            return None
    try:
        runs.sort(key=lambda r: r[:3])
    except TypeError:  # values Python cannot order
        return None
    return pl.concat([frame.slice(pos, length) for *_, pos, length in runs], rechunk=False)


def _in_order(frame, keys: tuple[str, ...]) -> bool:
    """Whether consecutive rows are non-decreasing in ``keys`` (False if a key has nulls)."""
    import polars as pl

    if any(frame[k].null_count() for k in keys):
        return False
    cond = None
    for k in reversed(keys):
        here, after = pl.col(k), pl.col(k).shift(-1)
        cond = here <= after if cond is None else (here < after) | ((here == after) & cond)
    return bool(frame.select(cond.head(frame.height - 1).all()).item())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(td: TableDef, table, day: date, tmp: Path, final: Path | RemoteFile,
               *, compacted: bool = True) -> int:
    """Write ``table`` (a pyarrow table or a polars frame) plus its ``date`` column to
    ``final`` durably (temp file, fsync, rename, fsync folder; or upload for a
    ``RemoteFile``); returns the bytes written. ``compacted``: a whole day's file (kept),
    else an appended part (folded at day end)."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        encode(td, table, day, tmp, compacted=compacted)
        size = tmp.stat().st_size
        if isinstance(final, RemoteFile):
            upload(tmp, final, size)
            tmp.unlink()
            return size
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return size


def encode(td: TableDef, table, day: date, path: Path, *, compacted: bool) -> None:
    """Encode ``table`` (pyarrow table or polars frame) with the ``date`` column as Parquet
    at ``path`` and fsync it.

    A dataset with measured ``parquet_options`` (order books) gets pyarrow with them. Every
    other dataset gets polars' writer, which encodes columns and row groups on all cores where
    pyarrow's encodes one column after another on one thread. Measured in ``bench/lake.py``
    (docs/performance.md, 2026-12-01, 2 cores): a 3.02 M-row options day in 1.3-1.6 s with
    pyarrow against about 1.0 s with polars, and a 112,000-row snapshot 1.6-2.3x faster.
    The price: polars does not dictionary-encode floats, so the bench's day file is about
    1.2x pyarrow's bytes (still about half of ArcticDB's). Appended parts live only until the
    day is compacted, so they take lz4 (faster again, about 1.3x the bytes of zstd)."""
    import polars as pl

    names = list(td.schema.names)
    if td.parquet_options:
        arrow = table.to_arrow() if isinstance(table, pl.DataFrame) else table
        arrow = arrow.select(names).cast(td.schema)
        days = np.full(arrow.num_rows, (day - date(1970, 1, 1)).days, dtype=np.int32)
        arrow = arrow.append_column(pa.field("date", pa.date32()), pa.array(days, pa.date32()))
        with open(path, "wb") as fh:
            pq.write_table(arrow, fh, **{"compression": COMPRESSION, "row_group_size": ROW_GROUP_ROWS,
                                         **td.parquet_options})
            fh.flush()
            os.fsync(fh.fileno())
        return
    if isinstance(table, pl.DataFrame):
        frame = table.select(names)
        want = _polars_schema(td)
        if frame.schema != want:
            frame = frame.cast(dict(want))
    else:
        frame = pl.from_arrow(table.select(names).cast(td.schema))
    try:
        frame.with_columns(pl.lit(day, dtype=pl.Date).alias("date")).write_parquet(
            path, compression=COMPRESSION if compacted else PART_COMPRESSION,
            row_group_size=ROW_GROUP_ROWS, statistics=True, metadata=_arrow_schema_key(td))
    except pl.exceptions.PolarsError as exc:
        raise _os_error(exc, path) from exc
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(exc: Exception, path: Path) -> Exception:
    """polars reports a failed write (disk full, quota, permissions) as a ComputeError whose
    text ends in "(os error N)"; give callers the OSError with that errno, as pyarrow did."""
    found = re.search(r"os error (\d+)", str(exc))
    if found is None:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def _arrow_schema_key(td: TableDef) -> dict[str, str]:
    """The ``ARROW:schema`` key-value entry (base64 IPC schema, the key Arrow writers use) of
    the dataset's schema plus ``date``, replacing the one polars writes: pyarrow and pandas
    readers of the plain layout then get ``string`` columns (polars declares
    ``large_string``) and the dataset's description, as files written by pyarrow had. Every
    field is declared nullable, as polars writes every column (not-null is enforced by
    validation before a write)."""
    fields = [f.with_nullable(True) for f in td.schema] + [pa.field("date", pa.date32())]
    schema = pa.schema(fields, metadata=td.schema.metadata)
    return {"ARROW:schema": base64.b64encode(schema.serialize().to_pybytes()).decode()}


def _polars_schema(td: TableDef):
    import polars as pl

    return pl.from_arrow(td.schema.empty_table()).schema


def upload(local: Path, remote: RemoteFile, size: int) -> None:
    """Upload a finished local file. Why pyarrow's S3 file system and a local temp file rather
    than DuckDB's ``COPY ... TO 's3://...'``: measured in bench/lake_s3.py (docs/performance.md),
    local write + upload is 1.6x faster than COPY for one snapshot (112k rows) and on par
    (0.8-1.05x) for 4-8 snapshots; it keeps one Parquet writer for local and S3 (the same file
    bytes and schema), a failure while encoding never reaches the bucket, and the size of the
    finished file is known, so the upload can be checked. A failed upload raises
    before anything is registered; the object is then removed (or, if the bucket is
    unreachable, left as an unregistered orphan that ``Lake.expire`` deletes). The size check
    refuses an object the server completed short."""
    from pyarrow import fs

    s3 = remote._s3
    fs.copy_files(str(local), s3.key(remote), source_filesystem=fs.LocalFileSystem(),
                  destination_filesystem=filesystem(s3))
    got = remote.stat().st_size
    if got != size:
        raise OSError(f"upload of {remote} stored {got} bytes, expected {size}")


def delete_file(path: Path | RemoteFile) -> None:
    """Remove a data file (local or in the bucket); missing is fine. (pyarrow then leaves an
    empty ``folder/`` marker object when the folder became empty; no ``*.parquet`` glob matches it.)"""
    if isinstance(path, RemoteFile):
        if path.exists():
            filesystem(path._s3).delete_file(path._s3.key(path))
        return
    path.unlink(missing_ok=True)


def publish(loc: LakeLocation, td: TableDef, day: date, versioned: str) -> Path | RemoteFile:
    """Make the plain-layout path a hard link to ``versioned`` (idempotent, atomic); on S3 a
    server-side copy of it (CopyObject replaces the target whole)."""
    if loc.s3 is not None:
        target = plain_file(loc, td, day)
        filesystem(loc.s3).copy_file(loc.s3.key(versioned), loc.s3.key(target))
        return target
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
    if loc.s3 is not None:
        delete_file(plain_file(loc, td, day))
        return
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
