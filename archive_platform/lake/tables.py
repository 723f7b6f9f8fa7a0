"""What the engine needs to know about a dataset, and what a write reports."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa

#: crash injection for tests: ``ARCHIVE_LAKE_CRASH_AT=<step>`` SIGKILLs the process right after
#: that step of a write (see ``STEPS``); never set in production.
CRASH_ENV = "ARCHIVE_LAKE_CRASH_AT"
STEPS = (
    "write_day:file",  # compacted file written and renamed into the data path, not registered
    "write_day:insert",  # old rows deleted and the file registered; not committed
    "write_day:commit",  # catalog transaction committed, plain-layout file not yet published
    "write_day:publish",  # published
    "append:file",  # the batch written as a file in the data path, not registered
    "append:insert",  # deleted what it replaces and registered the file; not committed
    "append:commit",
    "compact:file",
    "compact:insert",
    "compact:commit",
    "compact:publish",
)


def crash_point(step: str) -> None:
    from archive_platform.settings import environment

    if environment().get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class TableDef:
    """A dataset as the lake sees it. ``snapshot``: rows carry ``snapshot_time`` and an append
    replaces every snapshot it carries; otherwise an append replaces rows by ``dedup_key``."""

    name: str
    schema: pa.Schema
    directory: str  # folder of the plain layout under the root (stocks_1m -> "stocks")
    file_stem: str  # <file_stem>_YYYYMMDD.parquet
    dedup_key: tuple[str, ...]
    sort_key: tuple[str, ...] = ()
    snapshot: bool = False
    #: extra pyarrow.parquet.write_table options (the dataset's ``parquet_options``)
    parquet_options: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @classmethod
    def from_spec(cls, spec: Any) -> "TableDef":
        """From an ``archive_platform.schemas.ArchiveSpec`` (or anything with those attributes)."""
        return cls(spec.name, spec.schema, spec.directory, spec.file_stem, tuple(spec.dedup_key),
                   tuple(getattr(spec, "sort_key", ()) or ()), bool(getattr(spec, "snapshot", False)),
                   getattr(spec, "parquet_options", None))

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"table name must be an identifier, got {self.name!r}")
        missing = [k for k in self.dedup_key + self.sort_key if k not in self.schema.names]
        if missing:
            raise ValueError(f"{self.name}: key columns {missing} are not in the schema")
        if "date" in self.schema.names:
            raise ValueError(f"{self.name}: 'date' is the partition column the lake adds")
        if self.snapshot and "snapshot_time" not in self.schema.names:
            raise ValueError(f"{self.name}: a snapshot type needs a snapshot_time column")

    def plain_path(self, root: Path, day: date) -> Path:
        """The seed layout's file of a compacted day."""
        return root / self.directory / f"date={day.isoformat()}" / f"{self.file_stem}_{day:%Y%m%d}.parquet"


@dataclass(frozen=True)
class LakeWrite:
    """What one write did (``Lake.snapshot_id()`` gives the snapshot it committed)."""

    table: str
    day: date
    rows_written: int
    path: Path | None  # the plain-layout file for write_day/compact_day, else None
    bytes_written: int
    skipped: bool = False
