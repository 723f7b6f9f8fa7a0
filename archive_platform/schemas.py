"""Canonical Arrow schemas of the archive types, as declared by the datasets.

Each dataset's schema is declared once, in its module under ``archive_platform.datasets``; this
module is the index the store, checks, sources and views use (``spec_for``, ``ArchiveType``).

Conventions shared by every type (see docs/schemas.md):

* ``timestamp``  the event instant, ``timestamp[us, tz=UTC]``.
* ``et_offset``  (US datasets) the US/Eastern UTC offset at that instant in minutes (-300 in
  winter, -240 in summer), so a reader can recover wall-clock ET without a timezone database.
* ``source``     where the row came from (``sim``, ``unusual_whales``, ``thetadata``, ...).
* ``snapshot_time`` (intraday snapshot types only: options, gex, iv_rank, vix) the scheduled grid
  instant the row belongs to, ``timestamp[us, tz=UTC]``. A vendor's quote time (``timestamp``)
  can differ from one fetch of the same snapshot to the next; the grid instant does not, which
  is why the snapshot dedup keys use it.
"""

from __future__ import annotations

from enum import Enum

import pyarrow as pa

from archive_platform.datasets import BY_NAME, DATASETS, Dataset, UnknownDataset
from archive_platform.datasets.base import TS

#: the declaration is the spec (kept under its old name for the store and the checks)
ArchiveSpec = Dataset


class _Named(str, Enum):
    def __str__(self) -> str:  # f"{t}" gives the plain key
        return self.value


#: the registered datasets; the value is the asset key and the folder name stem
ArchiveType = _Named("ArchiveType", {d.name.upper(): d.name for d in DATASETS})

SPECS: dict = {ArchiveType(d.name): d for d in DATASETS}

UW_FLOW_SCHEMA = BY_NAME["uw_flow"].schema
OPTIONS_SCHEMA = BY_NAME["options"].schema
GEX_SCHEMA = BY_NAME["gex"].schema
STOCKS_1M_SCHEMA = BY_NAME["stocks_1m"].schema
IV_RANK_SCHEMA = BY_NAME["iv_rank"].schema
TRADES_SCHEMA = BY_NAME["trades"].schema

#: raised for an archive type name that is not registered
UnknownArchiveType = UnknownDataset


def spec_for(archive_type) -> Dataset:
    """The declaration of an archive type given by enum, name or ``Dataset``; a clear error otherwise."""
    if isinstance(archive_type, Dataset):
        return archive_type
    value = archive_type.value if isinstance(archive_type, Enum) else archive_type
    try:
        return BY_NAME[value]
    except (KeyError, TypeError):
        raise UnknownArchiveType(
            f"unknown archive type {archive_type!r}; expected one of: {', '.join(BY_NAME)}"
        ) from None


def empty_table(archive_type) -> pa.Table:
    """A zero-row table with the canonical schema of the type."""
    return spec_for(archive_type).schema.empty_table()


__all__ = ["TS", "ArchiveSpec", "ArchiveType", "SPECS", "UnknownArchiveType", "empty_table", "spec_for"]
