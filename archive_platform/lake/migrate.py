"""Convert an archive of the file layout (daily files + intraday parts, docs/storage.md) into a
lake, losing nothing, safe to run twice (and to re-run after a crash).

The old layout, per ``<root>/<dir>/date=YYYY-MM-DD/``: ``<stem>_YYYYMMDD.parquet`` (the daily
file; its Parquet metadata ``archive_platform.compacted_through`` names the highest part
sequence number already folded in) and ``<stem>_YYYYMMDD.part-<seq>-<hash8>.parquet`` parts,
read in sequence order after the daily file, last write winning per dedup key. This module
reads that layout itself so it keeps working after the store moves to the lake.

In place (``new_root`` = ``old_root``): each day is written to the lake, which publishes its
compacted file over the old daily file (an atomic rename), then the day's parts, lock and temp
files are removed. A crash in between leaves parts whose rows are already in the lake; the
next run folds them in again with the same result.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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


def old_partition(folder: Path, td: TableDef, day: date) -> tuple[pa.Table | None, list[Path]]:
    """The deduplicated rows of one old-layout partition, and every file it consists of."""
    daily = folder / f"{td.file_stem}_{day:%Y%m%d}.parquet"
    through, files, parts = 0, [], []
    if daily.exists():
        raw = (pq.read_schema(daily).metadata or {}).get(_THROUGH)
        through = int(raw) if raw else 0
        files.append(daily)
    for e in os.scandir(folder):
        m = _PART.search(e.name)
        if m and not e.name.startswith("."):
            parts.append((int(m.group(1)), Path(e.path)))
    live = [p for s, p in sorted(parts) if s > through]
    tables = [pq.ParquetFile(p).read().select(td.schema.names).cast(td.schema) for p in files + live]
    every = files + [p for _, p in parts]
    if not tables:
        return None, every
    return dedup_last_wins(pa.concat_tables(tables), td), every


def dedup_last_wins(table: pa.Table, td: TableDef) -> pa.Table:
    """Keep the last row of each dedup key, sorted by the sort key."""
    idx = table.append_column("__i", pa.array(np.arange(table.num_rows)))
    keep = idx.group_by(list(td.dedup_key), use_threads=False).aggregate([("__i", "max")])
    out = table.take(keep["__i_max"])
    return out.sort_by([(k, "ascending") for k in td.sort_key]) if td.sort_key else out


def migrate(old_root: str | Path, tables: Iterable[TableDef], new_root: str | Path | None = None,
            **lake_kwargs) -> list[Migrated]:
    """Migrate every ``date=`` partition of ``tables`` from ``old_root`` into the lake at
    ``new_root`` (default: in place). Returns one record per day."""
    old_root = Path(old_root).absolute()
    in_place = new_root is None or Path(new_root).absolute() == old_root
    out: list[Migrated] = []
    with Lake(old_root if in_place else new_root, **lake_kwargs) as lake:
        for td in tables:
            base = old_root / td.directory
            if not base.is_dir():
                continue
            for entry in sorted(os.scandir(base), key=lambda e: e.name):
                if not (entry.is_dir() and entry.name.startswith("date=")):
                    continue
                day = date.fromisoformat(entry.name[5:])
                out.append(_migrate_day(lake, td, day, Path(entry.path), in_place))
    return out


def _migrate_day(lake: Lake, td: TableDef, day: date, folder: Path, in_place: bool) -> Migrated:
    table, files = old_partition(folder, td, day)
    parts = [p for p in files if _PART.search(p.name)]
    before = table.num_rows if table is not None else 0
    current = lake.read_day(td, day, columns=list(td.dedup_key)).num_rows if day in set(lake.days(td)) else None
    plain = td.plain_path(lake.root, day)
    # a day archived with no rows has no data file in the catalog (current None), only its
    # empty published file: that is done too, or every run would count it migrated again
    same = current == before or (current is None and before == 0)
    done = same and plain.exists() and (not in_place or not parts)
    if not done and table is not None:
        lake.write_day(td, day, table)
    if in_place:  # the day is in the lake and published over the daily file: drop the rest
        for p in parts:
            p.unlink(missing_ok=True)
        for e in os.scandir(folder):
            if e.name == ".lock" or (e.name.startswith(".") and e.name.endswith(".tmp")):
                os.unlink(e.path)
    after = lake.read_day(td, day, columns=list(td.dedup_key)).num_rows
    return Migrated(td.name, day, before, after, skipped=done)
