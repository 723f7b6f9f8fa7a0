"""The storage contract the archiving use case and the derived datasets are typed against.

``archive_platform.store.ArchiveStore`` (Parquet files, see docs/storage.md) implements it; a
test double or another backend only has to provide these methods. Pure: no Dagster, no I/O.
A dataset is given by name, ``ArchiveType`` or its ``Dataset`` declaration.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa


@runtime_checkable
class Storage(Protocol):
    """Read a day, read a range of days, write a day, append a batch, compact a day."""

    kind: str  # "live" or "sim": which archive this is
    root: Path

    def read_day(self, dataset: Any, day: date, columns: list[str] | None = None) -> pa.Table:
        """One partition's rows, deduplicated (last write wins), in the dataset's sort order."""

    def read_range(self, dataset: Any, start: date, end: date,
                   columns: list[str] | None = None) -> pa.Table:
        """The stored partitions with ``start <= day <= end``, concatenated in day order."""

    def write_day(self, dataset: Any, day: date, table: Any) -> Any:
        """Replace the partition with ``table`` (validated first; nothing changes on refusal)."""

    def append_snapshot(self, dataset: Any, day: date, table: Any) -> Any:
        """Add an intraday batch; rows whose key is already stored are replaced."""

    def compact_day(self, dataset: Any, day: date) -> Any:
        """Fold the intraday parts into the daily file."""

    def partition_files(self, dataset: Any, day: date) -> list[Path]: ...

    def days(self, dataset: Any) -> list[date]: ...
