"""``coverage``: the coverage ledger as a table analysts query (one row per dataset per day).

Not an archived dataset (it is not in the registry's ``MODULES``): the ``coverage`` asset
computes it from the store, the declarations' completeness rules and Dagster's partition
statuses (``archive_platform.coverage``) and writes it under each archive root as
``coverage/date=YYYY-MM-DD/coverage_YYYYMMDD.parquet``: the archive's own layout, so the
DuckDB views pick it up like a dataset (view ``coverage``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archive_platform.coverage import LEDGER_SCHEMA, Entry, entries_from_table, ledger_table
from archive_platform.datasets.base import Dataset
from archive_platform.store import layout
from archive_platform.store.files import write_table_atomic

DATASET = Dataset(
    name="coverage",
    schema=LEDGER_SCHEMA,
    dedup_key=("dataset", "day"),
    sort_key=("dataset", "day"),
    grain="one row per dataset per day",
    description="The coverage ledger: per dataset and day, what is really stored and whether "
    "it is complete, degraded (and why), empty by design, missing, failed or in progress.",
    units={
        "dataset": "dataset name", "day": "partition day (NYSE session or UTC day)",
        "state": "complete, degraded, empty-by-design, missing, failed or in-progress",
        "reason": "why the day is not complete (what is missing), null when complete",
        "reconcilable": "fetching the day again can fix it (the recovery sensor asks for it)",
        "rows": "rows stored", "bytes": "bytes on disk", "files": "files stored",
        "last_write": "newest file's modification time (UTC)",
        "dagster_status": "Dagster's partition status: MATERIALIZED, FAILED, IN_PROGRESS, "
        "LOST (in progress but its run is dead) or null",
        "fingerprint": "hash of the files' names, sizes and modification times",
        "checked_at": "when the ledger looked (UTC)",
    },
    group="serving",
    sources=("derived",),
    backfill_sources=frozenset(),
)


def ledger_path(root: Path, day: date) -> Path:
    return layout.partition_dir(Path(root), DATASET.directory, day) / layout.daily_name(DATASET.file_stem, day)


def read_ledger(root: Path, days: Iterable[date] | None = None) -> dict[tuple[str, date], Entry]:
    """The ledger stored under ``root`` (empty when none was written), all of it or ``days``."""
    base = layout.dataset_dir(Path(root), DATASET.directory)
    if not base.is_dir():
        return {}
    paths = (sorted(base.glob("date=*/*.parquet")) if days is None
             else [p for p in (ledger_path(root, d) for d in days) if p.exists()])
    tables = [t for p in paths if layout.is_data_file(p.name) and (t := _read(p)) is not None]
    return entries_from_table(pa.concat_tables(tables)) if tables else {}


def _read(path: Path) -> pa.Table | None:
    """A stored ledger file with ``LEDGER_SCHEMA``, or None when it cannot be read (truncated,
    not Parquet, an older schema): the ledger is recomputed from the store, so such a file only
    costs a re-read of its day and is rewritten by the next ``coverage`` run."""
    try:
        return pq.read_table(path).cast(LEDGER_SCHEMA)
    except (OSError, ValueError, pa.ArrowException):
        return None


def _same(stored: pa.Table, rows: pa.Table) -> bool:
    """The same entries, whenever they were looked at (``checked_at`` aside)."""
    if stored.schema.names != LEDGER_SCHEMA.names:
        return False
    return stored.cast(LEDGER_SCHEMA).drop_columns(["checked_at"]).equals(rows.drop_columns(["checked_at"]))


def write_ledger(root: Path, entries: Iterable[Entry]) -> list[Path]:
    """Write one file per day under ``root``, rewriting only the days whose rows changed."""
    table = ledger_table(entries)
    written = []
    for day in sorted(set(table["day"].to_pylist())):
        rows = table.filter(pc.equal(table["day"], pa.scalar(day, pa.date32())))
        path = ledger_path(root, day)
        if path.exists() and (stored := _read(path)) is not None and _same(stored, rows):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table_atomic(path, rows)
        written.append(path)
    return written
