"""The capture spool: atomic Parquet batches per dataset and UTC day, and their compaction.

Layout: ``<root>/_spool/<dataset>/date=YYYY-MM-DD/part-<time_ns>-<pid>-<seq>.parquet``. Every
file is complete or absent (temp file, fsync, rename, fsync the folder), so a crash (SIGKILL,
power loss after the rename) never leaves a torn file a reader sees; temp names start with '.'
and end in '.tmp' and no reader lists them. ``compact_spool`` reads a day's files back, keeps the
last row per dataset key (file order, then row order) and sorts by the dataset's sort key; the
daily Dagster asset hands that table to the store.

The writer is local rather than ``archive_platform.store.files``'s because the store layout is
being reworked in parallel; both follow the same temp+fsync+rename protocol.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archive_platform.crypto.schemas import DEDUP_KEYS, SCHEMAS, SORT_KEYS, TIME_COLUMN
from archive_platform.durable import fsync_dir

SPOOL_DIR = "_spool"
HEARTBEAT_FILE = "capture_heartbeat.json"
US_PER_DAY = 86_400_000_000
_SEQ = itertools.count()


def spool_dir(root: Path | str, dataset: str, day: date) -> Path:
    if dataset not in SCHEMAS:
        raise ValueError(f"unknown crypto dataset {dataset!r} (known: {', '.join(SCHEMAS)})")
    return Path(root) / SPOOL_DIR / dataset / f"date={day.isoformat()}"


def heartbeat_path(root: Path | str) -> Path:
    return Path(root) / SPOOL_DIR / HEARTBEAT_FILE


def write_atomic(final: Path, write) -> int:
    """Call ``write(fh)`` on a temp file beside ``final``, fsync, rename over ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def write_json_atomic(final: Path, obj: Any) -> int:
    data = json.dumps(obj, indent=1, sort_keys=True).encode()
    return write_atomic(final, lambda fh: fh.write(data))


def rows_to_table(dataset: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Normaliser rows (times in epoch microseconds) -> a table of the dataset's schema."""
    # column by column: Table.from_pylist imports pandas (seconds on a cold start)
    schema = SCHEMAS[dataset]
    return pa.Table.from_arrays([pa.array([r[f.name] for r in rows], f.type) for f in schema], schema=schema)


def utc_day(us: int) -> date:
    return date(1970, 1, 1) + timedelta(days=us // US_PER_DAY)


def write_spool(root: Path | str, dataset: str, rows: list[dict[str, Any]]) -> list[Path]:
    """Write rows as one atomic Parquet file per UTC day (of the dataset's time column)."""
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    col = TIME_COLUMN[dataset]
    for row in rows:
        by_day[utc_day(row[col])].append(row)
    paths = []
    for day, day_rows in sorted(by_day.items()):
        table = rows_to_table(dataset, day_rows)
        final = spool_dir(root, dataset, day) / f"part-{time.time_ns()}-{os.getpid()}-{next(_SEQ):06d}.parquet"
        write_atomic(final, lambda fh, t=table: pq.write_table(t, fh, compression="zstd"))
        paths.append(final)
    return paths


def spool_files(root: Path | str, dataset: str, day: date) -> list[Path]:
    folder = spool_dir(root, dataset, day)
    if not folder.is_dir():
        return []
    # part-<time_ns>-<pid>-<seq>: name order is write order within a process and across restarts
    return sorted(p for p in folder.glob("part-*.parquet"))


def spool_days(root: Path | str, dataset: str) -> list[date]:
    folder = Path(root) / SPOOL_DIR / dataset
    if not folder.is_dir():
        return []
    return sorted(date.fromisoformat(p.name[5:]) for p in folder.glob("date=*") if p.is_dir())


def read_spool(root: Path | str, dataset: str, day: date) -> pa.Table:
    """Every spooled row of one day, in write order, as the dataset's schema (no dedup)."""
    schema = SCHEMAS[dataset]

    def read(path: Path) -> pa.Table:
        return pq.read_table(path, use_threads=False).select(schema.names).cast(schema)

    # a day is thousands of small files: read them in parallel (pyarrow releases the GIL);
    # map() keeps write order, which last-wins dedup relies on
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        tables = list(pool.map(read, spool_files(root, dataset, day)))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def dedup_last(table: pa.Table, key: Iterable[str]) -> pa.Table:
    """Keep the last row of each key (nulls compare equal, as the dedup key of books needs)."""
    key = list(key)
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    last = indexed.group_by(key, use_threads=False).aggregate([("__row", "max")])
    return table.take(pa.array(np.sort(last["__row_max"].to_numpy())))


def compact_spool(root: Path | str, dataset: str, day: date) -> pa.Table:
    """The day's spooled rows, deduplicated last-wins on the dataset key, sorted by its sort key.

    Dedup, the day filter and the sort work on the key columns only; the wide list columns of
    books are gathered once, by a single ``take`` at the end.
    """
    table = read_spool(root, dataset, day)
    if table.num_rows == 0:
        return table
    schema, col = SCHEMAS[dataset], TIME_COLUMN[dataset]
    names = list(dict.fromkeys([*DEDUP_KEYS[dataset], *SORT_KEYS[dataset], col]))
    keys = table.select(names).append_column("__row", pa.array(np.arange(table.num_rows), pa.int64()))
    last = keys.group_by(list(DEDUP_KEYS[dataset]), use_threads=False).aggregate([("__row", "max")])
    keys = keys.take(pa.array(np.sort(last["__row_max"].to_numpy())))
    day_start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    ts = schema.field(col).type
    keys = keys.filter(pc.and_(pc.greater_equal(keys[col], pa.scalar(day_start, ts)),
                               pc.less(keys[col], pa.scalar(day_start + timedelta(days=1), ts))))
    order = pc.sort_indices(keys, [(k, "ascending") for k in SORT_KEYS[dataset]])
    return table.take(keys["__row"].take(order))
