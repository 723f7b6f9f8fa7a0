"""Convert an archive of the file layout (daily files + intraday parts, docs/storage.md) into a
lake, losing nothing, safe to run twice (and to re-run after a crash).

The old layout, per ``<root>/<dir>/date=YYYY-MM-DD/``: ``<stem>_YYYYMMDD.parquet`` (the daily
file; its Parquet metadata ``archive_platform.compacted_through`` names the highest part
sequence number already folded in) and ``<stem>_YYYYMMDD.part-<seq>-<hash8>.parquet`` parts,
read in sequence order after the daily file, last write winning per dedup key. This module
reads that layout itself so it keeps working after the store moves to the lake.

In place (``new_root`` = ``old_root``): the names of the day's parts are noted in the folder
(``.migrated-parts``), the day is written to the lake, which publishes its compacted file over
the old daily file (an atomic rename), then the day's parts, lock, note and temp files are
removed. A crash in between leaves parts whose rows are already in the lake: once the plain
file is the lake's own (a hard link to a live data file of the day), the next run only removes
the noted ones (folding them in again would resurrect parts the old daily file had superseded,
since its ``compacted_through`` is gone with it). A part not noted was written after the
migration (an old-version writer still running): its rows whose key the lake lacks are added
and it is removed only then; nothing is ever deleted unread.

A day the lake already holds is never replaced by the old layout's rows: old rows whose key
the lake lacks are added, the lake's row wins for every key both have (the lake is the newer
write), so re-running after a writer continued in the lake loses nothing.

A file that cannot be read or converted, rows the caller's ``check`` refuses, or a storage
error fail their day only (``MigrationFailed`` after every other day was migrated, naming the
file or the reason); nothing of a failed day is deleted.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from archive_platform.durable import fsync_dir, fsync_file
from archive_platform.lake.catalog import flock
from archive_platform.lake.engine import Lake
from archive_platform.lake.tables import TableDef

_PART = re.compile(r"\.part-(\d{6,})-[0-9a-f]{8}\.parquet$")
_THROUGH = b"archive_platform.compacted_through"


@dataclass(frozen=True)
class Migrated:
    table: str
    day: date
    rows_before: int  # distinct keys in the old layout (what a reader of it saw)
    rows_after: int  # rows in the lake afterwards
    skipped: bool
    duplicates: int = 0  # rows read but superseded by a later row of the same key (dropped)
    missing: int = 0  # keys of the old layout absent from the lake afterwards (must be 0)
    lake_rows: int | None = None  # rows the lake already held for the day (None: none)
    notes: tuple[str, ...] = ()  # what the conversion dropped or changed (extra columns...)


class MigrationFailed(Exception):
    """Some days could not be migrated (each named with its file); the others were."""

    def __init__(self, errors: list[str], done: list[Migrated]) -> None:
        super().__init__("; ".join(errors))
        self.errors, self.done = errors, done


#: ``cast(dataset, column, values, type)``: a column in the schema's type, or ValueError
Cast = Callable[[str, str, pa.ChunkedArray, pa.DataType], pa.ChunkedArray]
#: ``check(table_def, day, rows)``: the day's rows as the store would keep them, or ValueError
Check = Callable[[TableDef, date, pa.Table], pa.Table]


def _safe_cast(dataset: str, name: str, col: pa.ChunkedArray, dst: pa.DataType) -> pa.ChunkedArray:
    return col.cast(dst, safe=True)


def _conform(t: pa.Table, td: TableDef, path: Path, notes: list[str], cast: Cast = _safe_cast) -> pa.Table:
    """An old file's table in the table's schema: missing nullable columns become nulls, extra
    columns are dropped (noted), types are converted by ``cast`` (noted); anything else names
    the file."""
    extra = [c for c in t.column_names if c not in td.schema.names]
    if extra:
        notes.append(f"{path.name}: dropped columns not in the schema: {', '.join(extra)}")
    cols = []
    for f in td.schema:
        if f.name not in t.column_names:
            if not f.nullable:
                raise ValueError(f"{path}: column {f.name!r} is missing and not nullable")
            notes.append(f"{path.name}: column {f.name!r} missing, filled with nulls")
            cols.append(pa.nulls(t.num_rows, f.type))
            continue
        try:
            src = t[f.name]  # KeyError: the file has the column twice
            col = cast(td.name, f.name, src, f.type)
        except (KeyError, ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise ValueError(f"{path}: column {f.name!r} (-> {f.type}): {exc}") from None
        if src.type != f.type and not _same_values(src.type, f.type):
            notes.append(f"{path.name}: column {f.name!r} converted from {src.type} to {f.type}")
        if not f.nullable and col.null_count:
            raise ValueError(f"{path}: column {f.name!r} is not nullable but has {col.null_count} null(s)")
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=td.schema)


def _same_values(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether ``src`` is only another representation of ``dst``'s values (not worth a note)."""
    if pa.types.is_dictionary(src):
        src = src.value_type
    strings = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    return src == dst or (any(f(src) for f in strings) and any(f(dst) for f in strings))


def old_partition(folder: Path, td: TableDef, day: date, notes: list[str] | None = None,
                  cast: Cast = _safe_cast) -> tuple[pa.Table | None, list[Path], int]:
    """The deduplicated rows of one old-layout partition, every file it consists of, and the
    rows read before deduplication. Raises ``ValueError`` naming the file when one cannot be
    read or converted; ``notes`` collects what the conversion changed."""
    notes = [] if notes is None else notes
    daily = folder / f"{td.file_stem}_{day:%Y%m%d}.parquet"
    through, files, parts = 0, [], []
    if daily.exists():
        try:
            raw = (pq.read_schema(daily).metadata or {}).get(_THROUGH)
            through = int(raw) if raw else 0
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise ValueError(f"{daily}: unreadable Parquet file ({exc})") from None
        files.append(daily)
    own = f"{td.file_stem}_{day:%Y%m%d}.part-"
    for e in os.scandir(folder):
        if e.name.startswith(".") or not e.name.endswith(".parquet") or e.name == daily.name:
            continue
        m = _PART.search(e.name)
        if not (m and e.name.startswith(own)):  # another day's or dataset's file: whose rows?
            raise ValueError(f"{e.path}: not a file of {td.name} {day} (expected {daily.name} or "
                             f"its parts): move it away; nothing of this day was migrated")
        parts.append((int(m.group(1)), Path(e.path)))
    live = [p for s, p in sorted(parts) if s > through]
    every = files + [p for _, p in sorted(parts)]
    return _partition(files + live, td, notes, cast, every)


def _partition(paths: list[Path], td: TableDef, notes: list[str], cast: Cast,
               every: list[Path]) -> tuple[pa.Table | None, list[Path], int]:
    """The rows of ``paths`` read in order, last write winning per key (see ``old_partition``)."""
    tables = []
    for p in paths:
        try:
            raw = pq.ParquetFile(p).read()
        except (OSError, pa.ArrowException) as exc:
            raise ValueError(f"{p}: unreadable Parquet file ({exc})") from None
        tables.append(_conform(raw, td, p, notes, cast))
    if not tables:
        return None, every, 0
    whole = pa.concat_tables(tables)
    return dedup_last_wins(whole, td), every, whole.num_rows


def dedup_last_wins(table: pa.Table, td: TableDef) -> pa.Table:
    """Keep the last row of each dedup key, sorted by the sort key."""
    idx = table.append_column("__i", pa.array(np.arange(table.num_rows)))
    keep = idx.group_by(list(td.dedup_key), use_threads=False).aggregate([("__i", "max")])
    out = table.take(keep["__i_max"])
    return out.sort_by([(k, "ascending") for k in td.sort_key]) if td.sort_key else out


def migrate(old_root: str | Path, tables: Iterable[TableDef], new_root: str | Path | None = None,
            progress: Callable[[Migrated], None] | None = None, *, cast: Cast = _safe_cast,
            check: Check | None = None, **lake_kwargs) -> list[Migrated]:
    """Migrate every ``date=`` partition of ``tables`` from ``old_root`` into the lake at
    ``new_root`` (default: in place). Returns one record per day (``progress`` gets each as it
    is done). Raises ``MigrationFailed`` at the end if some days failed (the others migrated).

    ``cast`` converts an old file's column to the schema's type (default: any cast Arrow makes
    without loss); ``check`` holds each day's old rows to the rules a write of the store
    would (the CLI passes the store's validation). A day that either refuses (ValueError)
    fails alone, with nothing of it deleted."""
    old_root = Path(old_root).absolute()
    # the same folder under another name (a symlink) is in place too: never treat it as new
    in_place = new_root is None or (Path(new_root).exists() and os.path.samefile(new_root, old_root))
    out: list[Migrated] = []
    errors: list[str] = []
    with Lake(old_root if in_place else new_root, **lake_kwargs) as lake, _alone(lake):
        for td in tables:
            base = old_root / td.directory
            if not base.is_dir():
                continue
            for entry in sorted(os.scandir(base), key=lambda e: e.name):
                if not (entry.is_dir() and entry.name.startswith("date=")):
                    continue
                try:
                    day = date.fromisoformat(entry.name[5:])
                except ValueError:
                    if any(os.scandir(entry.path)):  # an empty stray folder holds nothing
                        errors.append(f"{entry.path}: not a date folder, not migrated")
                    continue
                try:
                    m = _migrate_day(lake, td, day, Path(entry.path), in_place, cast, check)
                except ValueError as exc:
                    errors.append(f"{td.name} {day}: {exc}")
                    continue
                except OSError as exc:  # a folder not writable, another file system, a full disk
                    errors.append(f"{td.name} {day}: {exc} (in {entry.path})")
                    continue
                if m is None:  # an empty folder: nothing to migrate
                    continue
                out.append(m)
                if progress is not None:
                    progress(m)
    if errors:
        raise MigrationFailed(errors, out)
    return out


class MigrationBusy(BlockingIOError):
    """Another ``migrate`` into the same lake is running (nothing was done by this one)."""


@contextmanager
def _alone(lake: Lake) -> Iterator[None]:
    """One migration per lake at a time: two at once deleted each other's parts mid-read and
    reported them as unreadable (their day "untouched" while its files were gone), or died on
    the catalog being created twice. An exclusive ``flock``, released when the process dies."""
    with ExitStack() as held:
        try:
            held.enter_context(flock(lake.location.lake_dir / "locks" / "migrate.lock", wait=False))
        except BlockingIOError:
            raise MigrationBusy(errno.EWOULDBLOCK, "another migrate into this lake is running; "
                                "let it finish, then run it again if it reports errors",
                                str(lake.location.root)) from None
        yield


def _keys(t: pa.Table, td: TableDef) -> pa.Table:
    return t.select(list(td.dedup_key))


def _absent(old: pa.Table, lake_keys: pa.Table, td: TableDef) -> int:
    """How many keys of ``old`` are not in ``lake_keys``."""
    if old.num_rows == 0:
        return 0
    if lake_keys.num_rows == 0:
        return old.num_rows
    # grouped, not joined: a join never matches a null key part (orderbook_l2's update_id)
    flag = lambda t, v: t.select(list(td.dedup_key)).append_column(  # noqa: E731
        "__f", pa.array(np.full(t.num_rows, v, dtype=np.int8)))
    both = pa.concat_tables([flag(old, 0), flag(lake_keys, 1)])
    seen = both.group_by(list(td.dedup_key), use_threads=False).aggregate([("__f", "max")])
    return int(np.count_nonzero(seen["__f_max"].to_numpy() == 0))


def _is_published(lake: Lake, td: TableDef, day: date, plain: Path) -> bool:
    """Whether the plain-layout file is the lake's own (a hard link to a live data file)."""
    if not plain.exists():
        return False
    for f in lake.files(td, day):
        try:
            if isinstance(f, Path) and os.path.samefile(plain, f):
                return True
        except OSError:
            continue
    return False


def _migrate_day(lake: Lake, td: TableDef, day: date, folder: Path, in_place: bool,
                 cast: Cast = _safe_cast, check: Check | None = None) -> Migrated | None:
    plain = td.plain_path(lake.root, day)
    in_lake = day in set(lake.days(td))
    keys = list(td.dedup_key)
    notes: list[str] = []
    if in_place and in_lake and _is_published(lake, td, day, plain):
        # the lake's write committed and published over the old daily file. Parts left in the
        # folder: those the migration listed before writing (``_SEEN``: a crash stopped the
        # clean-up) are in the lake or were superseded, and go. Any other part appeared since
        # (an old-version writer still running): its rows whose key the lake lacks are added
        # (the lake's row wins for the others, as for any day it holds), never deleted unread
        own = f"{td.file_stem}_{day:%Y%m%d}.part-"
        parts = sorted((int(m.group(1)), Path(e.path)) for e in os.scandir(folder)
                       if e.name.startswith(own) and (m := _PART.search(e.name)))
        seen = _seen_parts(folder)  # parts the migration read (or found superseded): in the lake
        paths = [p for _, p in parts]
        new = [p for p in paths if p.name not in seen]
        table, _, read = _partition(new, td, notes, cast, paths)
        if table is not None and check is not None:
            table = check(td, day, table)
        held = lake.read_day(td, day, columns=keys)
        if table is None or _absent(table, held, td) == 0:
            _clean(folder, paths)
            return Migrated(td.name, day, held.num_rows, held.num_rows, skipped=True, lake_rows=held.num_rows)
        notes.append(f"{len(new)} part file(s) written after the day was migrated: "
                     "their rows of keys the lake lacked were added")
        files = paths
    else:
        table, files, read = old_partition(folder, td, day, notes, cast)
        if table is None and not files:
            return None
        if table is not None and check is not None:
            table = check(td, day, table)
    parts = [p for p in files if _PART.search(p.name)]
    if in_place and parts:
        _note_seen(folder, parts)
    before = table.num_rows if table is not None else 0
    held = lake.read_day(td, day) if in_lake else None
    if held is None:
        # a day archived with no rows has no data file in the catalog, only its empty
        # published file: that is done too, or every run would count it migrated again
        done = before == 0 and plain.exists()
        if not done and table is not None:
            lake.write_day(td, day, table)
    else:
        # the lake holds the day: its rows are newer than the old layout's and win per key;
        # old rows whose key it lacks are added, so nothing of either side is lost
        done = table is None or _absent(table, _keys(held, td), td) == 0
        if not done:
            lake.write_day(td, day, dedup_last_wins(pa.concat_tables([table, held]), td))
        elif not _is_published(lake, td, day, plain):
            lake.compact_day(td, day)  # a crash before publishing: publish the lake's file
    if in_place:  # the day is in the lake and published over the daily file: drop the rest
        _clean(folder, parts)
    after = lake.read_day(td, day, columns=keys)
    missing = _absent(table, after, td) if table is not None else 0
    return Migrated(td.name, day, before, after.num_rows, skipped=done, duplicates=read - before,
                    missing=missing, lake_rows=None if held is None else held.num_rows,
                    notes=tuple(notes))


#: in a day folder being migrated in place: the names of the old layout's parts the migration
#: read or found superseded, written before the lake's write publishes over the daily file
_SEEN = ".migrated-parts"


def _note_seen(folder: Path, parts: list[Path]) -> None:
    tmp = folder / f"{_SEEN}.tmp"
    tmp.write_text("".join(f"{p.name}\n" for p in parts))
    fsync_file(tmp)
    os.replace(tmp, folder / _SEEN)
    fsync_dir(folder)


def _seen_parts(folder: Path) -> set[str]:
    try:
        return set((folder / _SEEN).read_text().split())
    except FileNotFoundError:
        return set()


def _clean(folder: Path, parts: list[Path]) -> None:
    for p in parts:
        p.unlink(missing_ok=True)
    for e in os.scandir(folder):
        if e.name in (".lock", _SEEN) or (e.name.startswith(".") and e.name.endswith(".tmp")):
            os.unlink(e.path)
