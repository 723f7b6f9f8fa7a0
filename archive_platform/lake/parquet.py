"""Parquet files of the lake: how a table becomes a data file, and how a day's parts are
read back and put in sort order for compaction. Pure (pyarrow, polars, numpy); the engine
decides when, ``publish`` where."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from archive_platform.durable import drop_cached, fsync_file
from archive_platform.lake.catalog import LakeLocation
from archive_platform.lake.tables import TableDef

COMPRESSION = "zstd"  # day files, kept
# zstd level 1 for the day files polars writes (whole days, compacted days). Measured
# 2026-12-03 (bench day of 3.02 M option rows, 2 cores, six interleaved pairs): a whole day
# written at a median 3.16 M rows/s against 2.79 with polars' default level 3, compaction
# 2.13 s against 2.28 s, encoding 1.45 s of CPU against 1.66 s; the file is 102 MB against
# 85 MB (0.64x ArcticDB's bytes against 0.53x; bench/lake.py's target is <= 0.8x). Level 2 was no
# faster than 3. Order books keep their own measured options (zstd 9, crypto/schemas.py).
COMPRESSION_LEVEL = 1
# Appended parts live until end-of-day compaction. On a local disk they are written by pyarrow,
# uncompressed and without dictionaries (plain values: the cheapest encoding there is). Measured
# 2026-12-02 (bench/lake.py, interleaved runs, 2 cores): an options snapshot append at
# 0.84-0.98x ArcticDB's update() this way, 0.98-1.15x with polars' writer (which dictionary-
# encodes every non-float column: 10.7 MB files against 16.3 MB, 17 ms against 12 ms to encode).
# Uploaded to S3 they take polars and lz4: there the bytes cost more time on the network than
# lz4 costs on the CPU.
PART_OPTIONS = {"compression": "none", "use_dictionary": False}
REMOTE_PART_COMPRESSION = "lz4"
ROW_GROUP_ROWS = 131_072


def encode(td: TableDef, table, day: date, path: Path, *, compacted: bool,
           remote: bool = False, sync: bool = True) -> None:
    """Encode ``table`` (pyarrow table or polars frame) with the ``date`` column as Parquet
    at ``path``, and fsync it if ``sync``.

    A dataset with measured ``parquet_options`` (order books) gets pyarrow with them, and so
    does a local appended part (``PART_OPTIONS``). Every other file (whole days, parts bound
    for S3) gets polars' writer, which encodes columns and row groups on all cores where
    pyarrow's encodes one column after another on one thread. Measured in ``bench/lake.py``
    (docs/performance.md, 2026-12-01, 2 cores): a 3.02 M-row options day in 1.3-1.6 s with
    pyarrow against about 1.0 s with polars; a 112,000-row snapshot in 46-84 ms against
    30-36 ms (both lz4, pyarrow with its default dictionaries).
    The price: polars does not dictionary-encode floats and day files take zstd level 1
    (``COMPRESSION_LEVEL``), so the bench's day file is about 1.4x pyarrow's bytes (0.64x
    ArcticDB's)."""
    import polars as pl

    names = list(td.schema.names)
    if td.parquet_options or not (compacted or remote):
        options = td.parquet_options or PART_OPTIONS
        arrow = table.to_arrow() if isinstance(table, pl.DataFrame) else table
        arrow = arrow.select(names).cast(td.schema)
        days = np.full(arrow.num_rows, (day - date(1970, 1, 1)).days, dtype=np.int32)
        arrow = arrow.append_column(pa.field("date", pa.date32()), pa.array(days, pa.date32()))
        # Arrow's own file rather than a Python file object, whose every write takes the GIL
        # and goes through io's buffer: 23.5-25 ms against 25-27 ms for an options snapshot
        # part (interleaved, 2026-12-03, this machine kind)
        with pa.OSFile(str(path), "wb") as sink:
            pq.write_table(arrow, sink, **{"compression": COMPRESSION, "row_group_size": ROW_GROUP_ROWS,
                                           **options})
        if sync:
            fsync_file(path)
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
            path, compression=COMPRESSION if compacted else REMOTE_PART_COMPRESSION,
            compression_level=COMPRESSION_LEVEL if compacted else None,
            row_group_size=ROW_GROUP_ROWS, statistics=True, metadata=_arrow_schema_key(td))
    except pl.exceptions.PolarsError as exc:
        raise _os_error(exc, path) from exc
    if sync:
        fsync_file(path)


def batch_tag(table: pa.Table) -> str:
    """A cheap name for an appended batch: 16 hex digits of a hash of its row count, column
    names and first and last rows: 0.2-0.3 ms for a 112,000-row snapshot, where hashing every
    value took 4.5 ms (polars ``hash_rows``) or 6 ms (crc32 of the Arrow buffers), and even
    summing the numeric columns 0.6 ms (2026-12-03, this machine kind). Equal batches get equal
    tags; most unequal ones differ, and a match is only a hint that ``holds`` then confirms
    value by value."""
    ends = table.slice(0, 1).to_pylist() + table.slice(table.num_rows - 1, 1).to_pylist()
    return hashlib.blake2b(repr((table.num_rows, table.column_names, ends)).encode(),
                           digest_size=8).hexdigest()


def holds(path: Path, td: TableDef, table: pa.Table) -> bool:
    """Whether the part at ``path`` holds exactly ``table``'s rows, in order, in the dataset's
    schema (as ``encode`` wrote them). Any doubt (a column added since, a float NaN, which
    never equals itself, an unreadable file) answers False. The part leaves the page cache
    again once read (``durable.drop_cached``).

    Column by column, memory-mapped, the dedup key's columns last: a correction differs in a
    value column and is told apart after reading that column alone. Measured 2026-12-03 (this
    machine kind, a 16 MB options part from disk): a corrected bid told apart in 4-6 ms
    against 35-45 ms reading the part whole; an equal part in 31-38 ms either way."""
    key = set(td.dedup_key)
    names = [n for n in td.schema.names if n not in key] + [n for n in td.schema.names if n in key]
    try:
        want = table.select(names).cast(pa.schema([td.schema.field(n) for n in names]))
        with open(path, "rb") as fh:
            try:
                return _same_columns(path, want)
            finally:
                drop_cached(fh)  # the map is gone by now: mapped pages would not be dropped
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return False


def _same_columns(path: Path, want: pa.Table) -> bool:
    pf = pq.ParquetFile(path, memory_map=True)
    if pf.metadata.num_rows != want.num_rows:
        return False
    for i, name in enumerate(want.column_names):
        got = pf.read(columns=[name], use_threads=False).column(0)
        if not got.cast(want.schema.field(i).type).equals(want.column(i)):
            return False
    return True


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


def read_day_files(loc: LakeLocation, td: TableDef, files: list[tuple[str, str | None, int]]):
    """``(frame, rows per file)``: the rows of a day's live files read straight from them
    as one polars frame (files in catalog order, the order they were added), or None when
    only the catalog can say which rows are live: a delete file against any of them, a data
    path on S3, or row counts that do not add up to what the catalog shows. Measured in
    bench/lake.py: 27 snapshot files (3.02 M rows) in about 0.3 s, against 1.1-1.2 s through
    DuckDB's DuckLake scan into Arrow. The caller holds the day's writer lock, so the list
    is current. Each part is read whole on one of three threads and then dropped from the
    page cache (``durable.drop_cached``): parts were dropped once written, so they come from
    disk, and three reads at a time, each into pages the previous one freed, took 0.2 s for
    275 MB against 0.5 s one after another without dropping (2026-12-02, this machine kind)."""
    import polars as pl

    if not files or loc.s3 is not None or any(x is not None for _, x, _ in files):
        return None
    paths = [f for f, _, _ in files]
    schema = _polars_schema(td)

    def part(path: str):
        with open(path, "rb") as fh:
            data = fh.read()
            drop_cached(fh)
        # files from before a column was added lack it (null), every file has ``date`` (ignored)
        return pl.scan_parquet(data, schema=schema, missing_columns="insert",
                               extra_columns="ignore", hive_partitioning=False).collect()

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            frames = list(pool.map(part, paths))
    except (OSError, pl.exceptions.PolarsError):
        return None
    sizes = [f.height for f in frames]
    if sum(sizes) != files[0][2]:
        return None
    return pl.concat(frames, how="vertical", rechunk=False), sizes


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
