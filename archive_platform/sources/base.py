"""The source interface: one contract for the simulated market and every vendor client.

A source hands back Arrow tables in the canonical schema of the archive type (see
``archive_platform.schemas``), already normalised (UTC timestamps, ``et_offset``, ``source``) and
validated. The Dagster assets only ever talk to this interface, so switching a type from the
simulated market to a vendor is configuration, not code.

A source implements only the types it can serve; the others raise ``UnsupportedArchiveType``
(checked at definitions load time through ``supports``). A source that can only see the present
(a live snapshot endpoint) says so through ``can_backfill``: asking it for a past snapshot raises
``SnapshotNotReproducible`` instead of storing something else under a past time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import pyarrow as pa

from archive_platform.schemas import ArchiveType


class SourceError(RuntimeError):
    """A source failed in a way that must fail the partition (after retries)."""


class UnsupportedArchiveType(SourceError):
    """The source cannot serve this archive type (a configuration error)."""


class SnapshotNotReproducible(SourceError):
    """A live-only source was asked for a snapshot of the past."""


class EmptySession(SourceError):
    """The source answered, but has no data at all for a session where data was expected.

    Distinct from an error: the vendor was reachable and said "nothing". Assets surface it as a
    failed partition with this message rather than writing an empty file as if complete.
    """


def _name(archive_type) -> str:
    return str(getattr(archive_type, "value", getattr(archive_type, "name", archive_type)))


class MarketSource:
    """Base class of every source. Subclasses set ``name`` and override what they serve."""

    #: value written to the ``source`` column, and the name used in configuration
    name: str = "abstract"
    #: archive types this source can serve
    supported: frozenset[ArchiveType] = frozenset()
    #: archive types whose past snapshots this source can reproduce (history endpoints)
    backfillable: frozenset[ArchiveType] = frozenset()

    def supports(self, archive_type: ArchiveType | str) -> bool:
        return _name(archive_type) in {t.value for t in self.supported}

    def can_backfill(self, archive_type: ArchiveType | str) -> bool:
        return _name(archive_type) in {t.value for t in self.backfillable}

    def _unsupported(self, archive_type: ArchiveType) -> UnsupportedArchiveType:
        return UnsupportedArchiveType(f"source {self.name!r} cannot serve {archive_type.value!r}")

    # -- one method per archive type -------------------------------------------------------
    def fetch_uw_flow(
        self,
        day: date,
        symbols: Sequence[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pa.Table:
        """Flow alerts of ``day`` with ``since < timestamp <= until`` (None: session bounds)."""
        raise self._unsupported(ArchiveType.UW_FLOW)

    def fetch_options(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """Option chains of ``symbols`` at each of ``snapshot_times`` (UTC instants of ``day``)."""
        raise self._unsupported(ArchiveType.OPTIONS)

    def fetch_gex(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """Vendor-computed per-strike gamma exposure (the default derives gex from options)."""
        raise self._unsupported(ArchiveType.GEX)

    def fetch_stocks_1m(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """Regular-session one-minute bars of ``day``."""
        raise self._unsupported(ArchiveType.STOCKS_1M)

    def fetch_iv_rank(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """IV, IV rank and IV percentile per symbol at each snapshot instant."""
        raise self._unsupported(ArchiveType.IV_RANK)

    def fetch_trades(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """The account's executions on ``day`` (``symbols`` filters underlyings; empty = all)."""
        raise self._unsupported(ArchiveType.TRADES)

    def close(self) -> None:
        """Release connections; sources are used as context managers by the resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
