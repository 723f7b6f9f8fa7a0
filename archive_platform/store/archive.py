"""The archive store: validated day partitions of every dataset, kept in a DuckLake.

``ArchiveStore`` checks a batch against its dataset declaration (schema, market day, hard value
rules, sim/live), deduplicates and sorts it, then hands it to ``archive_platform.lake``, which
makes each write one catalog transaction (all-or-nothing for every reader) and publishes
compacted days in the seed's plain layout ``<root>/<directory>/date=D/<stem>_YYYYMMDD.parquet``.
See docs/storage.md.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from archive_platform.lake import Lake, LakeWrite, TableDef
from archive_platform.lake import publish
from archive_platform.lake.publish import PublishFailed
from archive_platform.lake.catalog import LakeLocation
from archive_platform.lake.remote import LakeConfig
from archive_platform.schemas import SPECS, ArchiveSpec, ArchiveType, spec_for
from archive_platform.store import layout
from archive_platform.store.errors import (
    ArchivePublishError,
    ArchiveValidationError,
    ArchiveWriteError,
    EmptyReplacementRefused,
)
from archive_platform.store.marker import KINDS, ensure_marker, resolve_kind
from archive_platform.store.validate import validate_batch

Kind = Literal["live", "sim"]
_LAKES: dict[tuple[int, Path, LakeConfig], Lake] = {}
_LAKES_LOCK = threading.Lock()
DEFAULT_ROOTS: dict[str, str] = {"live": "data/archive", "sim": "data/sim/archive"}


@dataclass(frozen=True)
class WriteResult:
    """What one write did. ``rows_written``: rows of this batch/day after dedup;
    ``rows_replaced``: rows the partition held before a ``write_day`` (None otherwise)."""

    archive_type: ArchiveType
    day: date
    path: Path
    rows_written: int
    rows_in_partition: int | None
    bytes_written: int
    skipped: bool = False
    rows_replaced: int | None = None


#: the environment variable that moves each kind's root (simulated and live never share one)
ROOT_ENV: dict[str, str] = {"live": "ARCHIVE_ROOT", "sim": "ARCHIVE_SIM_ROOT"}


def default_root(kind: Kind, env: Mapping[str, str] | None = None) -> Path:
    """``$ARCHIVE_ROOT`` / ``data/archive`` (live), ``$ARCHIVE_SIM_ROOT`` / ``data/sim/archive``
    (sim); ``env`` defaults to the process environment (read by ``archive_platform.settings``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be 'live' or 'sim', got {kind!r}")
    if env is None:
        from archive_platform.settings import environment

        env = environment()
    # stripped and defaulted as ``Settings.from_env`` does, so ``connect()`` and the CLI open
    # the root the Dagster runs write ("/data/archive " from an .env file is "/data/archive")
    value = (env.get(ROOT_ENV[kind]) or "").strip()
    return Path(value) if value else Path(DEFAULT_ROOTS[kind])


def table_def(archive_type: Any) -> TableDef:
    """What the lake needs to know about a dataset (name, schema, folder, keys, snapshots)."""
    return TableDef.from_spec(spec_for(archive_type))


@functools.cache
def _all_table_defs() -> tuple[TableDef, ...]:
    """Every dataset's ``TableDef``, built once (each write hands them to ``ensure_tables``)."""
    return tuple(TableDef.from_spec(s) for s in SPECS.values())


class ArchiveStore:
    """Reads and writes day partitions of the registered datasets under one root.

    One ``Lake`` per root and process, attached on first use (about 0.5 s); thread-safe.
    """

    def __init__(self, root: str | Path | None = None, *, kind: Kind = "live",
                 lake: LakeConfig | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be 'live' or 'sim', got {kind!r}")
        self.kind: Kind = kind
        self.root: Path = Path(root if root is not None else default_root(kind)).absolute()
        resolve_kind(self.root, kind)  # ArchiveKindError for a root of the other kind
        self._lake: Lake | None = None
        self._pg_found = False  # the PostgreSQL catalog was seen to hold the lake (_readable)
        if lake is None:  # the kind's catalog and data path from the environment
            from archive_platform.settings import lake_config

            lake = lake_config(kind)
        self._config: LakeConfig = lake or LakeConfig()
        self._location = LakeLocation.for_root(self.root, config=self._config)

    def __repr__(self) -> str:
        return f"ArchiveStore({str(self.root)!r}, kind={self.kind!r})"

    def _writing_lake(self) -> Lake:
        """The lake, with a table for every dataset: a reader's ``connect()`` makes a view of
        each table it finds and an empty stand-in for each dataset it does not, and a stand-in
        never shows rows written after it was made. Created here, before the first write of
        this process (one catalog query once they exist), each dataset is a table readers
        follow from the archive's first write on."""
        lake = self.lake
        lake.ensure_tables(_all_table_defs())
        return lake

    @property
    def lake(self) -> Lake:
        """The process's one ``Lake`` of this root (shared by every store of the root: one
        attachment, one SQLite handle per process and catalog)."""
        if self._lake is None:
            key = (os.getpid(), self.root, self._config)  # never reuse a connection across a fork
            with _LAKES_LOCK:
                if key not in _LAKES:
                    _LAKES[key] = Lake(self.root, config=self._config)
                self._lake = _LAKES[key]
        return self._lake

    def close(self) -> None:
        """Close the root's lake connection (it reattaches on next use)."""
        if self._lake is not None:
            self._lake.close()

    def _readable(self) -> bool:
        """Whether there is anything to read (reads never create a lake)."""
        if self._lake is not None:
            return True
        if self._location.postgres:
            # attaching would CREATE the catalog: a status or read_day with a database name
            # that holds no lake (a typo in ARCHIVE_LAKE_PG_DB) made one there, which claimed
            # this machine's data path for good
            return self._pg_catalog_exists()
        return Path(self._location.catalog[len("sqlite:"):]).exists()

    def _pg_catalog_exists(self) -> bool:
        """Whether the PostgreSQL catalog database holds this lake's tables (its schema's
        ``ducklake_metadata``); asked without DuckDB, so nothing is created. Cached once true.
        A server that refuses the connection is a ``LakeCatalogError`` naming the setting."""
        if self._pg_found:
            return True
        schema = self._config.pg_schema or "public"
        conn = self._location.pg_connect("lake read", "open the lake catalog")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL",
                            ('"' + schema.replace('"', '""') + '".ducklake_metadata',))
                self._pg_found = bool(cur.fetchone()[0])
        finally:
            conn.close()
        return self._pg_found

    # -- paths -----------------------------------------------------------------------------
    def partition_dir(self, archive_type: str | ArchiveType, day: date) -> Path:
        """The plain-layout folder of a partition."""
        return layout.partition_dir(self.root, spec_for(archive_type).directory, day)

    def daily_path(self, archive_type: str | ArchiveType, day: date) -> Path:
        """The plain-layout file of a compacted day (whether or not it exists yet); on S3 a
        ``RemoteFile`` (its ``s3://`` URL, with ``exists()`` and ``stat()``)."""
        return publish.plain_file(self._location, table_def(archive_type), day)

    def partition_files(self, archive_type: str | ArchiveType, day: date) -> list[Path]:
        """The data files the latest snapshot reads for the day (under ``_lake/data``); for a day
        written whole with no rows (a session without executions, say), its empty published
        plain-layout file, so "archived, empty" differs from "never archived"."""
        if not self._readable():
            return []
        with self._reading():
            files = self.lake.files(table_def(archive_type), day)
            if not files:
                plain = self.daily_path(archive_type, day)
                files = [plain] if plain.exists() else []
        return files

    def partition_bytes(self, archive_type: str | ArchiveType, day: date) -> int:
        """Total size on disk of the partition's live files."""
        total = 0
        for p in self.partition_files(archive_type, day):
            try:
                with self._reading():
                    total += p.stat().st_size
            except FileNotFoundError:  # expired meanwhile
                pass
        return total

    def days(self, archive_type: str | ArchiveType) -> list[date]:
        """Days with at least one stored row, plus days written whole with no rows (their
        empty plain-layout file is published), ascending."""
        if not self._readable():
            return []
        spec = spec_for(archive_type)
        with self._reading():
            found = set(self.lake.days(table_def(spec)))
            if self._location.s3 is not None:  # the plain layout is in the bucket
                return sorted(found.union(publish.plain_days(self._location, table_def(spec))))
        base = layout.dataset_dir(self.root, spec.directory)
        if base.is_dir():
            for entry in os.scandir(base):
                day = layout.partition_day(entry.name)
                if day is not None and day not in found and self.daily_path(spec, day).exists():
                    found.add(day)
        return sorted(found)

    # -- reads -----------------------------------------------------------------------------
    def read_day(self, archive_type: str | ArchiveType, day: date,
                 columns: list[str] | None = None) -> pa.Table:
        """One day's rows (last write wins per dedup key), in sort order, canonical schema."""
        return self.read_range(archive_type, day, day, columns)

    def read_range(self, archive_type, start: date, end: date,
                   columns: list[str] | None = None) -> pa.Table:
        """Every stored row with ``start <= day <= end``, in day order then sort order."""
        spec = spec_for(archive_type)
        wanted = list(columns) if columns is not None else spec.schema.names
        unknown = [c for c in wanted if c not in spec.schema.names]
        if unknown:
            raise ArchiveValidationError(f"{spec.name}: unknown columns {unknown}")
        canon = pa.schema([spec.schema.field(c) for c in wanted], metadata=spec.schema.metadata)
        if not self._readable():
            return canon.empty_table()
        with self._reading():
            out = self.lake.read_range(table_def(spec), start, end, wanted,
                                       order_by=("date", *spec.sort_key))
        return out.cast(canon)

    # -- writes ----------------------------------------------------------------------------
    def write_day(self, archive_type: str | ArchiveType, day: date, table: Any, *,
                  replace_empty: bool = False) -> WriteResult:
        """Replace the day's partition with ``table`` (one compacted file, published in the
        plain layout). An empty ``table`` over a stored non-empty day is refused
        (``EmptyReplacementRefused``, nothing changes) unless the dataset declares an empty
        day valid (``Dataset.empty_ok``) and the caller passes ``replace_empty=True``."""
        spec = spec_for(archive_type)
        batch = validate_batch(spec, day, table, self.kind)
        td = table_def(spec)
        before = None
        if batch.num_rows == 0:
            # (the bucket or catalog failing here is named with the partition, as in the write)
            before = self._guard(spec, day, "write_day", lambda: self._stored_rows(spec, day))
            if before and not (replace_empty and spec.empty_ok(day)):
                why = ("the caller did not pass replace_empty=True" if spec.empty_ok(day) else
                       f"{spec.name} does not declare an empty {day.isoformat()} valid")
                raise EmptyReplacementRefused(
                    f"{spec.name} {day.isoformat()}: refusing to replace {before} stored rows "
                    f"with an empty result ({why}); nothing was changed", stored_rows=before)
        w = self._guard(spec, day, "write_day", lambda: self._marked(lambda: self._writing_lake().write_day(td, day, batch)))
        return WriteResult(spec.type, day, w.path or self.daily_path(spec, day), w.rows_written,
                           w.rows_written, w.bytes_written, rows_replaced=before)

    def append_snapshot(self, archive_type: str | ArchiveType, day: date, table: Any) -> WriteResult:
        """Add an intraday batch, last write wins: a snapshot dataset's batch replaces every
        snapshot (``snapshot_time``) it carries, whole; others replace rows by dedup key.
        Idempotent; costs what the batch costs (one new file)."""
        spec = spec_for(archive_type)
        batch = validate_batch(spec, day, table, self.kind)
        folder = self._data_dir(spec, day)
        if batch.num_rows == 0:
            return WriteResult(spec.type, day, folder, 0, None, 0, skipped=True)
        td = table_def(spec)
        w = self._guard(spec, day, "append", lambda: self._marked(lambda: self._writing_lake().append(td, day, batch)))
        return WriteResult(spec.type, day, folder, w.rows_written, None, w.bytes_written, w.skipped)

    def compact_day(self, archive_type: str | ArchiveType, day: date) -> WriteResult:
        """Fold the day's files into one sorted file and publish it in the plain layout;
        a no-op (``skipped``) when the day already is one compacted file."""
        spec = spec_for(archive_type)
        td = table_def(spec)
        if not self._readable():
            return WriteResult(spec.type, day, self.daily_path(spec, day), 0, 0, 0, skipped=True)
        w = self._guard(spec, day, "compact_day", lambda: self._writing_lake().compact_day(td, day))
        return WriteResult(spec.type, day, w.path or self.daily_path(spec, day), w.rows_written,
                           w.rows_written, w.bytes_written, w.skipped)

    # -- internals -------------------------------------------------------------------------
    def _data_dir(self, spec: ArchiveSpec, day: date) -> Path | str:
        if self._location.s3 is not None:
            return f"{self._location.data_path}main/{spec.name}/date={day.isoformat()}"
        return Path(self._location.data_path) / "main" / spec.name / f"date={day.isoformat()}"

    def _stored_rows(self, spec: ArchiveSpec, day: date) -> int:
        return self.read_day(spec, day, columns=[spec.dedup_key[0]]).num_rows

    @contextlib.contextmanager
    def _reading(self):
        """Around a read of the lake: the catalog's server gone (also mid-run, after the lake was
        attached) or the bucket refusing or failing (credentials, bucket, endpoint, a missing
        object) is one clear error naming the setting to check (``LakeCatalogError``,
        ``LakeStorageError``), never DuckDB's or pyarrow's raw error, never a secret."""
        try:
            yield
        except (duckdb.Error, OSError) as exc:
            from archive_platform.lake.connect import read_error

            clear = read_error(exc, self._location, kind=self.kind)
            if clear is None:
                raise
            raise clear from None  # the driver's text, scrubbed, is in the message

    def _marked(self, write):
        """``write()`` after the root's kind marker is in place (a read-only or full root fails
        here, inside ``_guard``, so the error names the dataset and partition too)."""
        ensure_marker(self.root, self.kind)
        return write()

    def _guard(self, spec: ArchiveSpec, day: date, what: str, write) -> LakeWrite:
        """Run a lake write; an I/O or catalog failure is re-raised naming the dataset, the
        partition and the file or folder concerned (the write itself has had no effect)."""
        try:
            return write()
        except PublishFailed as exc:
            raise ArchivePublishError(
                exc.errno or errno.EIO,
                f"{spec.name} {day.isoformat()}: {what} committed its rows (the lake and every "
                f"DuckDB reader have them) but could not refresh the plain-Parquet copy "
                f"{exc.target}: {self._scrub(exc.strerror or exc)}; that copy is missing or stale "
                f"until the day is published again (compact_day, or the partition's next run)"
            ) from self._cause(exc)
        except OSError as exc:
            where = exc.filename or self._data_dir(spec, day)
            why = str(exc.strerror or exc)
            raise ArchiveWriteError(
                exc.errno or errno.EIO,
                f"{spec.name} {day.isoformat()}: {what} failed at {where}: "
                f"{self._scrub(why)}{self._hint(exc)}; nothing was changed, retry once resolved"
            ) from self._cause(exc)
        except duckdb.Error as exc:
            code = errno.ENOSPC if "No space left" in str(exc) else errno.EIO
            # the location this store was opened with: ``self.lake`` would attach again (and may
            # be the very thing that failed)
            raise ArchiveWriteError(
                code, f"{spec.name} {day.isoformat()}: {what} failed in the lake catalog "
                f"{self._location.catalog} / data folder {self._data_dir(spec, day)}: "
                f"{self._scrub(exc)}{self._hint(exc)}; nothing was changed, retry once resolved"
            ) from self._cause(exc)

    def _hint(self, exc: BaseException) -> str:
        """What to check when a write failed on the bucket (credentials, bucket, endpoint, a
        missing object), naming the settings; empty otherwise (the catalog's own errors already
        name theirs)."""
        text = str(exc)
        if type(exc).__name__ == "LakeCatalogError" or "Postgres" in text:
            return ""
        return self._config.storage_problem(text, kind=self.kind) or ""

    def _cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` as the cause to chain, or None when its text holds a secret (a traceback
        prints the whole chain: Dagster's run log, the CLI)."""
        return exc if self._scrub(exc) == str(exc) else None

    def _scrub(self, error: object) -> str:
        """A driver's or file system's message without any secret of this store's lake (S3
        keys, catalog password) nor a ``password=`` / ``user:password@`` it may quote."""
        return self._config.scrub(str(error))
