"""The capture spool: atomic Parquet batches per dataset and UTC day, and their compaction.

Layout: ``<root>/_spool/<dataset>/date=YYYY-MM-DD/part-<time_ns>-<pid>-<seq>.parquet``. Every
file is complete or absent (temp file, fsync, rename, fsync the folder), so a crash (SIGKILL,
power loss after the rename) never leaves a torn file a reader sees; temp names start with '.'
and end in '.tmp' and no reader lists them. ``compact_spool`` reads a day's files back, keeps the
last row per dataset key (file order, then row order) and sorts by the dataset's sort key; the
daily Dagster asset hands that table to the store. ``spool_listing`` / ``late_spool`` (read-only)
tell what a build read from what reached the spool after it (``recover_utc_days`` rebuilds such days).

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
from dataclasses import dataclass
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
    """Call ``write(fh)`` on a temp file beside ``final``, fsync, rename over ``final``.

    Folders it creates (a new ``date=`` folder at midnight) are fsynced into their parents too:
    otherwise a power loss can drop the new folder's entry, and with it every file renamed into it.
    """
    _mkdirs_durable(final.parent)
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


def _mkdirs_durable(folder: Path) -> None:
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    for made in reversed(missing):  # each new entry, into its parent (which exists now)
        fsync_dir(made.parent)


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
    paths = []
    for day, day_rows in split_by_day(dataset, rows).items():
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


def split_by_day(dataset: str, rows: list[dict[str, Any]]) -> dict[date, list[dict[str, Any]]]:
    """Rows by the UTC day of the dataset's time column (the spool's partition)."""
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    col = TIME_COLUMN[dataset]
    for row in rows:
        by_day[utc_day(row[col])].append(row)
    return dict(sorted(by_day.items()))


def read_spool(root: Path | str, dataset: str, day: date, unreadable: list[str] | None = None) -> pa.Table:
    """Every spooled row of one day, in write order, as the dataset's schema (no dedup).

    A file that cannot be read (torn by a power loss on a file system that does not order data
    before the rename, truncated or emptied by hand or by a disk fault) is skipped rather than
    failing the whole day: its rows are lost either way, and every other file's rows are kept.
    Each skipped file is appended to ``unreadable`` as "<name>: <error>" so the caller reports it.
    """
    schema = SCHEMAS[dataset]

    def read(path: Path) -> pa.Table | str:
        try:
            return pq.read_table(path, use_threads=False).select(schema.names).cast(schema)
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            return f"{path.name}: {type(exc).__name__}: {exc}"[:300]

    # a day is thousands of small files: read them in parallel (pyarrow releases the GIL);
    # map() keeps write order, which last-wins dedup relies on
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(read, spool_files(root, dataset, day)))
    tables = [r for r in results if isinstance(r, pa.Table)]
    if unreadable is not None:
        unreadable.extend(r for r in results if isinstance(r, str))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def dedup_last(table: pa.Table, key: Iterable[str]) -> pa.Table:
    """Keep the last row of each key (nulls compare equal, as the dedup key of books needs)."""
    key = list(key)
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    last = indexed.group_by(key, use_threads=False).aggregate([("__row", "max")])
    return table.take(pa.array(np.sort(last["__row_max"].to_numpy())))


def compact_spool(root: Path | str, dataset: str, day: date, unreadable: list[str] | None = None) -> pa.Table:
    """The day's spooled rows, deduplicated last-wins on the dataset key, sorted by its sort key.

    Dedup, the day filter and the sort work on the key columns only; the wide list columns of
    books are gathered once, by a single ``take`` at the end. Unreadable files are skipped and
    listed in ``unreadable`` (see ``read_spool``).
    """
    table = read_spool(root, dataset, day, unreadable)
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


def last_spooled_events(root: Path | str, wanted: Iterable[tuple[str, str, str]], *, days: int = 2,
                        max_files: int = 20_000) -> dict[tuple[str, str, str], int]:
    """The event time (epoch us) of the last spooled row of each wanted stream
    ``(exchange, stream, symbol)``, from the newest ``days`` day folders of the spool.

    Files are read newest first (three columns each) and the search stops once every stream is
    found, so a running capture costs a file or two per dataset; a stream not found within the
    window (new, or silent for longer) is left out. The capture service opens a gap from here on
    a restart: everything between the last row that reached the spool and the first row of the
    new process (the rows a SIGKILL lost, the time the process was down) is a capture gap.
    """
    from archive_platform.crypto.normalise import STREAMS

    wanted = set(wanted)
    found: dict[tuple[str, str, str], int] = {}
    for dataset in ("orderbook_l2", "crypto_trades"):
        names = {ex: name for (ex, ds), name in STREAMS.items() if ds == dataset}
        todo = {k for k in wanted if names.get(k[0]) == k[1]}
        budget = max_files
        for day in reversed(spool_days(root, dataset)[-days:]):
            for path in reversed(spool_files(root, dataset, day)):
                if not todo or budget <= 0:
                    break
                budget -= 1
                try:
                    t = pq.read_table(path, columns=["exchange", "symbol", TIME_COLUMN[dataset]], use_threads=False)
                except (OSError, pa.ArrowException, ValueError, KeyError):
                    continue  # unreadable: compact_spool reports it
                ev = t[TIME_COLUMN[dataset]].cast(pa.int64()).to_numpy()
                for i, (ex, sym) in enumerate(zip(t["exchange"].to_pylist(), t["symbol"].to_pylist())):
                    key = (ex, names.get(ex, ""), sym)
                    if key in todo:
                        found[key] = max(found.get(key, 0), int(ev[i]))
                todo -= set(found)
    return found


# -- what a build read, and what reached the spool after it (read-only) ---------------------------


def spool_file_ns(path: Path) -> int:
    """When a spool file was written (epoch ns): the ``time_ns`` its name carries
    (``part-<time_ns>-<pid>-<seq>.parquet``), else (a file named by hand) its mtime."""
    parts = path.name.split("-")
    if len(parts) >= 2 and parts[0] == "part" and parts[1].isdigit():
        return int(parts[1])
    try:
        return path.stat().st_mtime_ns
    except OSError:  # deleted meanwhile
        return 0


@dataclass(frozen=True)
class SpoolListing:
    """What a build of one dataset day listed in the spool before compacting it: how many
    files, and the name of the newest (names sort in write order)."""

    files: int
    newest: str | None


def spool_listing(root: Path | str, dataset: str, day: date) -> SpoolListing:
    files = spool_files(root, dataset, day)
    return SpoolListing(len(files), files[-1].name if files else None)


@dataclass(frozen=True)
class SpoolChange:
    """How a day's spool differs from what its last build read (``late_spool``)."""

    late: list[Path]  # files named after the newest one the build read (or written after it ran), oldest first
    out_of_order: int  # more files named no later than that newest than the build read (a clock set back)
    pruned: int  # files the build read that are gone (spool files deleted after the build)
    newest: str | None  # the newest file of the day now
    files: int  # how many files the day has now

    @property
    def changed(self) -> bool:
        return bool(self.late) or self.out_of_order > 0

    def describe(self) -> str:
        parts = []
        if self.late:
            parts.append(f"{len(self.late)} spool files after the build, newest {self.late[-1].name}")
        if self.out_of_order:
            parts.append(f"{self.out_of_order} spool files more than the build read (named before its newest)")
        return "; ".join(parts) or "unchanged"


def late_spool(root: Path | str, dataset: str, day: date, *, read: SpoolListing | None = None,
               built_ns: int | None = None) -> SpoolChange:
    """The spool files of ``dataset`` on ``day`` that its last build did not read.

    ``read``: the listing the build recorded (``spool_listing``, taken before it compacted):
    files named after its newest are late, and so are surplus files named before it (written
    out of name order, e.g. after the clock was set back); fewer files than it read means
    files were deleted since (``pruned``). Without a record, ``built_ns`` (when the build's
    materialization was recorded, epoch ns): files written after that (``spool_file_ns``) are
    late. Reads file names only (and mtimes of files named by hand)."""
    files = spool_files(root, dataset, day)
    newest = files[-1].name if files else None
    if read is not None and read.newest is not None:
        upto = sum(1 for p in files if p.name <= read.newest)
        late = [p for p in files if p.name > read.newest]
        return SpoolChange(late, max(0, upto - read.files), max(0, read.files - upto), newest, len(files))
    if read is not None:  # the build read an empty spool: everything there now came after it
        return SpoolChange(files, 0, 0, newest, len(files))
    if built_ns is None:
        raise ValueError("late_spool needs what the build read or when it ran")
    return SpoolChange([p for p in files if spool_file_ns(p) > built_ns], 0, 0, newest, len(files))
