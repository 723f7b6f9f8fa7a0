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
    preview_markdown: str

    @property
    def compression_ratio(self) -> float | None:
        """In-memory Arrow size over bytes on disk (higher is better)."""
        return round(self.bytes_in_memory / self.bytes_on_disk, 2) if self.bytes_on_disk else None


def preview_markdown(table: pa.Table, rows: int = PREVIEW_ROWS, max_cols: int = 10) -> str:
    """A small Markdown table of the first rows (the UI renders it)."""
    df = pl.from_arrow(table.slice(0, rows))
    cols = [c for c in df.columns if c not in ("et_offset", "source")][:max_cols]
    df = df.select(cols)
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join(
        "| " + " | ".join("" if v is None else str(v) for v in r) + " |\n" for r in df.iter_rows()
    )
    return head + body


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
        preview_markdown=preview_markdown(table),
    )
