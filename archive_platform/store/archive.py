"""The archive store: one Parquet partition per dataset and day of the dataset's calendar.

Layout (``store/layout.py``): ``<root>/<directory>/date=YYYY-MM-DD/<file_stem>_YYYYMMDD.parquet``
plus, until compaction, intraday parts beside it. Invariant kept by every write: a dedup key lives in at most
one live file of a partition, so the DuckDB views' plain glob never shows a row twice. See
docs/storage.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from archive_platform.schemas import ArchiveSpec, ArchiveType, spec_for
from archive_platform.store import files as F
from archive_platform.store import layout
from archive_platform.store.errors import ArchiveKindError, ArchiveValidationError, EmptyReplacementRefused
from archive_platform.store.marker import KINDS, ensure_marker, read_marker_kind
from archive_platform.store.validate import dedup_and_sort, validate_batch

Kind = Literal["live", "sim"]
DEFAULT_ROOTS: dict[str, str] = {"live": "data/archive", "sim": "data/sim/archive"}
_READ_ATTEMPTS = 8


@dataclass(frozen=True)
class WriteResult:
    """What one write did. ``rows_written``: rows of this batch/day after dedup."""

    archive_type: ArchiveType
    day: date
    path: Path
    rows_written: int
    rows_in_partition: int | None
    bytes_written: int
    skipped: bool = False


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
    value = env.get(ROOT_ENV[kind])
    return Path(value) if value else Path(DEFAULT_ROOTS[kind])


class ArchiveStore:
    """Reads and writes day partitions of the six archive types under one root."""

    def __init__(self, root: str | Path | None = None, *, kind: Kind = "live") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be 'live' or 'sim', got {kind!r}")
        self.kind: Kind = kind
        self.root: Path = Path(root if root is not None else default_root(kind)).absolute()
        found = read_marker_kind(self.root)
        if found is not None and found != kind:
            raise ArchiveKindError(f"{self.root} is a {found} archive; refusing to open it as {kind}")

    def __repr__(self) -> str:
        return f"ArchiveStore({str(self.root)!r}, kind={self.kind!r})"

    # -- paths -----------------------------------------------------------------------------
    def partition_dir(self, archive_type: str | ArchiveType, day: date) -> Path:
        return layout.partition_dir(self.root, spec_for(archive_type).directory, day)

    def daily_path(self, archive_type: str | ArchiveType, day: date) -> Path:
        """Where the compacted daily file of a partition lives (whether or not it exists)."""
        spec = spec_for(archive_type)
        return self.partition_dir(spec, day) / F.daily_name(spec.file_stem, day)

    def partition_files(self, archive_type: str | ArchiveType, day: date) -> list[Path]:
        """The live files of a partition, oldest first: the daily file, then parts in write order."""
        return self._listing(spec_for(archive_type), day).paths

    def partition_bytes(self, archive_type: str | ArchiveType, day: date) -> int:
        """Total size on disk of the partition's live files."""
        total = 0
        for p in self.partition_files(archive_type, day):
            try:
                total += p.stat().st_size
            except FileNotFoundError:  # compacted away meanwhile
                pass
        return total

    def days(self, archive_type: str | ArchiveType) -> list[date]:
        """Days with at least one stored file, ascending."""
        spec = spec_for(archive_type)
        base = layout.dataset_dir(self.root, spec.directory)
        if not base.is_dir():
            return []
        out = []
        for e in os.scandir(base):
            d = layout.partition_day(e.name) if e.is_dir() else None
            if d is not None and any(layout.is_data_file(n) for n in os.listdir(e.path)):
                out.append(d)
        return sorted(out)

    # -- reads -----------------------------------------------------------------------------
    def read_day(
        self, archive_type: str | ArchiveType, day: date, columns: list[str] | None = None
    ) -> pa.Table:
        """One day's rows (grain: the type's, e.g. one row per contract per snapshot), parts
        included, deduplicated (last write wins), in sort order, with the canonical schema."""
        spec = spec_for(archive_type)
        unknown = [c for c in (columns or []) if c not in spec.schema.names]
        if unknown:
            raise ArchiveValidationError(f"{spec.name}: unknown columns {unknown}")
        wanted = list(columns) if columns is not None else spec.schema.names
        need = [c for c in spec.schema.names if c in set(wanted) | set(spec.dedup_key) | set(spec.sort_key)]
        schema = pa.schema([pa.field(f.name, f.type) for f in spec.schema if f.name in need])
        tables = self._read_listed(spec, day, need, schema)
        if not tables:
            out = schema.empty_table()
        else:
            merged = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            out = dedup_and_sort(spec, merged)
        canon = pa.schema([spec.schema.field(c) for c in wanted], metadata=spec.schema.metadata)
        return out.select(wanted).cast(canon)

    @retry(retry=retry_if_exception_type(FileNotFoundError), stop=stop_after_attempt(_READ_ATTEMPTS),
           reraise=True)
    def _read_listed(self, spec, day: date, need: list[str], schema: pa.Schema) -> list[pa.Table]:
        # listed, then read: a writer may replace a file in between, so list and read again
        return [F.read_parquet(p, need).cast(schema) for p in self._listing(spec, day).paths]

    def read_range(self, archive_type, start: date, end: date, columns: list[str] | None = None) -> pa.Table:
        """Every stored partition with ``start <= day <= end``, concatenated in day order."""
        spec = spec_for(archive_type)
        days = [d for d in self.days(spec) if start <= d <= end] or [start]
        return pa.concat_tables([self.read_day(spec, d, columns) for d in days])

    # -- writes ----------------------------------------------------------------------------
    def write_day(self, archive_type: str | ArchiveType, day: date, table: Any, *,
                  replace_empty: bool = False) -> WriteResult:
        """Replace the day's partition with ``table`` (one daily file; parts are removed).

        An empty ``table`` over stored rows is refused (``EmptyReplacementRefused``, nothing
        changes) unless the dataset declares the day may be empty and ``replace_empty`` is set."""
        spec = spec_for(archive_type)
        batch = validate_batch(spec, day, table, self.kind)
        folder = self.partition_dir(spec, day)
        ensure_marker(self.root, self.kind)
        with F.partition_lock(folder):
            listing = self._prepare(spec, day, folder)
            if batch.num_rows == 0:
                _refuse_empty(spec, day, self._count_rows(listing.paths), replace_empty)
            path = folder / F.daily_name(spec.file_stem, day)
            meta = {F.COMPACTED_THROUGH: str(listing.last_seq).encode()}
            size = F.write_table_atomic(path, batch, meta)
            F.unlink_durable([p for _, p in listing.parts])
        return WriteResult(spec.type, day, path, batch.num_rows, batch.num_rows, size)

    def append_snapshot(self, archive_type: str | ArchiveType, day: date, table: Any) -> WriteResult:
        """Add an intraday batch as a new part; rows whose key is already stored are replaced.

        Costs what the batch costs: older files are only opened when their footer statistics
        say they may hold the batch's keys, and only those holding some are rewritten.
        """
        spec = spec_for(archive_type)
        batch = validate_batch(spec, day, table, self.kind)
        folder = self.partition_dir(spec, day)
        if batch.num_rows == 0:
            return WriteResult(spec.type, day, folder, 0, None, 0, skipped=True)
        data = F.encode_parquet(batch)
        digest = F.content_digest(data)
        ensure_marker(self.root, self.kind)
        with F.partition_lock(folder):
            listing = self._prepare(spec, day, folder)
            same = [(s, p) for s, p in listing.parts if F.part_digest(p.name) == digest]
            # Keys live in one file only, so an intact identical part is the batch's current
            # state, unless a crash left a newer file holding some of its keys: check footers.
            if same and not any(_may_hold(p, _key_ranges(spec, batch)) for s, p in listing.parts
                                if s > same[0][0]):
                return WriteResult(spec.type, day, same[0][1], batch.num_rows,
                                   self._count_rows(listing.paths), 0, skipped=True)
            path = folder / F.part_name(spec.file_stem, day, listing.last_seq + 1, digest)
            # New part first: a crash before the older files are trimmed leaves duplicates that
            # read_day resolves (last write wins); the other order could lose the rows.
            written = F.write_bytes_atomic(path, data)
            written += self._drop_keys(spec, day, listing, batch)
            rows = self._count_rows(self._listing(spec, day).paths)
        return WriteResult(spec.type, day, path, batch.num_rows, rows, written)

    def compact_day(self, archive_type: str | ArchiveType, day: date) -> WriteResult:
        """Fold the parts into the single daily file (dedup, last write wins); no-op without parts."""
        spec = spec_for(archive_type)
        folder = self.partition_dir(spec, day)
        path = folder / F.daily_name(spec.file_stem, day)
        if not folder.is_dir():
            return WriteResult(spec.type, day, path, 0, 0, 0, skipped=True)
        with F.partition_lock(folder):
            listing = self._prepare(spec, day, folder)
            if not listing.parts:
                rows = self._count_rows(listing.paths)
                return WriteResult(spec.type, day, path, rows, rows, 0, skipped=True)
            merged = pa.concat_tables([F.read_parquet(p).cast(spec.schema) for p in listing.paths])
            table = dedup_and_sort(spec, merged)
            meta = {F.COMPACTED_THROUGH: str(listing.last_seq).encode()}
            size = F.write_table_atomic(path, table, meta)
            F.unlink_durable([p for _, p in listing.parts])
        return WriteResult(spec.type, day, path, table.num_rows, table.num_rows, size)

    # -- internals -------------------------------------------------------------------------
    @retry(retry=retry_if_exception_type(FileNotFoundError), stop=stop_after_attempt(_READ_ATTEMPTS),
           reraise=True)
    def _listing(self, spec: ArchiveSpec, day: date) -> F.PartitionFiles:
        # the daily file may be replaced while its footer is read: list again
        return F.list_partition(self.partition_dir(spec, day), spec.file_stem, day)

    def _prepare(self, spec: ArchiveSpec, day: date, folder: Path) -> F.PartitionFiles:
        """Under the lock: clear what dead writers left behind, return the live files."""
        F.remove_stale_temps(folder)
        listing = self._listing(spec, day)
        stale = F.superseded_parts(folder, spec.file_stem, day, listing.compacted_through)
        if stale:
            F.unlink_durable(stale)
        return listing

    @staticmethod
    def _count_rows(paths: list[Path]) -> int:
        return sum(F.num_rows(p) for p in paths)

    def _drop_keys(self, spec: ArchiveSpec, day: date, listing: F.PartitionFiles, batch: pa.Table) -> int:
        """Remove the batch's keys from older files; returns the bytes rewritten."""
        keys = list(spec.dedup_key)
        batch_keys = batch.select(keys)
        ranges = _key_ranges(spec, batch)
        written = 0
        for path in listing.paths:
            if not _may_hold(path, ranges):
                continue  # footer proves the file holds none of the batch's keys
            first = F.read_parquet(path, [keys[0]])[keys[0]]
            if not pc.any(pc.is_in(first, value_set=batch_keys[keys[0]].combine_chunks())).as_py():
                continue
            old = F.read_parquet(path).cast(spec.schema)
            hit = _rows_matching(old.select(keys), batch_keys)
            if not hit.size:
                continue
            mask = np.ones(old.num_rows, dtype=bool)
            mask[hit] = False
            kept = old.filter(pa.array(mask))
            written += self._rewrite(spec, day, listing, path, kept)
        return written

    def _rewrite(self, spec: ArchiveSpec, day: date, listing: F.PartitionFiles, path: Path,
                 kept: pa.Table) -> int:
        if path == listing.daily:
            meta = {F.COMPACTED_THROUGH: str(listing.compacted_through).encode()}
            return F.write_table_atomic(path, kept, meta)
        seq = F.part_seq(path.name)
        assert seq is not None
        written = 0
        if kept.num_rows:  # same sequence number, new content hash
            data = F.encode_parquet(kept)
            new = path.with_name(F.part_name(spec.file_stem, day, seq, F.content_digest(data)))
            written = F.write_bytes_atomic(new, data)
        F.unlink_durable([path])
        return written


def _rows_matching(rows: pa.Table, keys: pa.Table) -> np.ndarray:
    """Indices of ``rows`` whose full key appears in ``keys`` (keys are unique)."""
    left = rows.append_column("__row", pa.array(np.arange(rows.num_rows, dtype=np.int64)))
    joined = left.join(keys, keys=keys.column_names, join_type="inner", use_threads=False)
    return np.sort(joined["__row"].to_numpy())


def _key_ranges(spec: ArchiveSpec, batch: pa.Table) -> dict[str, tuple[Any, Any]]:
    """(min, max) of every dedup column of a non-empty batch."""
    out = {}
    for k in spec.dedup_key:
        mm = pc.min_max(batch[k])
        out[k] = (mm["min"].as_py(), mm["max"].as_py())
    return out


def _may_hold(path: Path, ranges: dict[str, tuple[Any, Any]]) -> bool:
    """False only when the footer proves no row of ``path`` has a key within ``ranges``."""
    n, stats = F.footer_ranges(path, list(ranges))
    if n == 0:
        return False
    for k, s in stats.items():
        try:
            if s is not None and (s[1] < ranges[k][0] or s[0] > ranges[k][1]):
                return False
        except TypeError:  # statistics of an unexpected type: assume they may overlap
            continue
    return True


def _refuse_empty(spec, day: date, stored: int, replace_empty: bool) -> None:
    """An empty result never silently replaces stored rows (a vendor answering nothing)."""
    if stored and not (replace_empty and spec.empty_ok(day)):
        why = ("the caller did not pass replace_empty=True" if spec.empty_ok(day)
               else f"{spec.name} does not declare an empty {day.isoformat()} valid")
        raise EmptyReplacementRefused(
            f"{spec.name} {day.isoformat()}: refusing to replace {stored} stored rows with an "
            f"empty result ({why}); nothing was changed", stored_rows=stored)
