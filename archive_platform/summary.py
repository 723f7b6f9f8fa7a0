"""What a user wants to know about a stored partition, as plain values (for UI metadata and CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa

from archive_platform.schemas import ArchiveType, spec_for

PREVIEW_ROWS = 5


@dataclass(frozen=True)
class PartitionSummary:
    archive_type: str
    day: date
    rows: int
    bytes_on_disk: int
    bytes_in_memory: int
    symbols: tuple[str, ...]
    snapshots: int | None
    first_event: str | None
    last_event: str | None
    path: str
    files: int
    preview_columns: tuple[str, ...]
    preview_rows: tuple[dict, ...]  # first rows, values as str/int/float/bool/None

    @property
    def compression_ratio(self) -> float | None:
        """In-memory Arrow size over bytes on disk (higher is better)."""
        return round(self.bytes_in_memory / self.bytes_on_disk, 2) if self.bytes_on_disk else None


def _plain(v):
    """A preview cell as a value the UI's table renders (instants and dates as ISO text)."""
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def preview(table: pa.Table, rows: int = PREVIEW_ROWS, max_cols: int = 10):
    """Column names and the first rows (plain values) of a partition, for the UI's table view."""
    cols = [c for c in table.column_names if c not in ("et_offset", "source")][:max_cols]
    records = table.select(cols).slice(0, rows).to_pylist()
    return tuple(cols), tuple({k: _plain(v) for k, v in r.items()} for r in records)


def summarize_partition(
    store, archive_type: ArchiveType | str, day: date, table: pa.Table | None = None
) -> PartitionSummary:
    """Rows, sizes, coverage and a preview of one stored partition (``table``: already read)."""
    spec = spec_for(archive_type)
    if table is None:
        table = store.read_day(spec, day)
    files = store.partition_files(spec, day)
    ts = table["timestamp"]
    symbols: tuple[str, ...] = ()
    if "symbol" in table.column_names and table.num_rows:
        symbols = tuple(sorted(pl.from_arrow(table["symbol"]).unique().to_list()))
    snaps = None
    if spec.snapshot:
        snaps = int(pl.from_arrow(table["snapshot_time"]).n_unique()) if table.num_rows else 0
    first = last = None
    if table.num_rows:
        s = pl.from_arrow(ts)
        first, last = s.min().isoformat(), s.max().isoformat()
    cols, records = preview(table)
    path = Path(store.daily_path(spec, day)).parent  # the day's folder in the plain layout
    return PartitionSummary(
        archive_type=spec.name,
        day=day,
        rows=table.num_rows,
        bytes_on_disk=sum(f.stat().st_size for f in files),
        bytes_in_memory=table.nbytes,
        symbols=symbols,
        snapshots=snaps,
        first_event=first,
        last_event=last,
        path=str(path),
        files=len(files),
        preview_columns=cols,
        preview_rows=records,
    )
