"""What one materialization of one archive partition does, without Dagster.

The assets are a thin shell over ``archive_partition``: it takes the store(s), the source, the
day, the mode and the instant "now", fetches from the source through the ``MarketSource``
interface and writes through the store. Modes:

* ``day``       the whole partition (backfills, the recovery sensor, manual runs): a source that
                can reproduce the past fetches every snapshot of the day up to ``now`` and
                replaces the partition; a live-only source compacts what the intraday runs
                collected, and fails clearly when there is nothing (it cannot fetch the past).
* ``snapshot``  one intraday snapshot at ``snapshot_time`` appended (datasets with snapshots).
* ``poll``      events with ``since < timestamp <= until`` appended (cadence ``poll``).
* ``eod``       end of day: intraday parts compacted (datasets filled during the day), the
                others fetched for the closed session (stocks_1m, trades).

Everything a dataset does differently comes from its declaration (``archive_platform.datasets``):
its calendar, cadence, window, source method and derivation; nothing here names a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pyarrow as pa

from archive_platform import calendar
from archive_platform.datasets import Dataset
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.sources.base import (
    MarketSource, SnapshotNotReproducible, SourceError, UnsupportedArchiveType,
)
from archive_platform.storage import Storage

MODES = ("day", "snapshot", "poll", "eod")
#: the registered datasets with intraday snapshots (kept for callers of the old name)
SNAPSHOT_TYPES = tuple(t for t in ArchiveType if spec_for(t).snapshot)


class NotReadyError(SourceError):
    """The partition cannot be archived yet (its session has not closed, or it is in the future)."""


@dataclass(frozen=True)
class Settings:
    symbols: tuple[str, ...]
    snapshot_every: timedelta = timedelta(minutes=15)
    iv_rank_times: tuple[time, ...] = (time(7, 0), time(19, 0))


@dataclass(frozen=True)
class Request:
    """One partition to archive: the day, the mode and the mode's parameters."""

    day: date
    mode: str = "day"
    snapshot_time: datetime | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown archive mode {self.mode!r}; expected one of {MODES}")
        if self.mode == "snapshot" and self.snapshot_time is None:
            raise ValueError("mode 'snapshot' needs a snapshot_time")


def iv_rank_instants(day: date, times_et: Sequence[time]) -> list[datetime]:
    """The IV-rank snapshot instants of a day (ET wall-clock times) in UTC."""
    return [
        datetime.combine(day, t, tzinfo=calendar.ET).astimezone(calendar.UTC) for t in times_et
    ]


def planned_instants(t, day: date, settings: Settings, now: datetime) -> list[datetime]:
    """The snapshot instants of ``day`` for a snapshot dataset that are not in the future."""
    ds = spec_for(t)
    if ds.cadence == "times":
        grid = iv_rank_instants(day, settings.iv_rank_times)
    else:
        grid = ds.calendar.snapshot_grid(day, settings.snapshot_every)
    return [x for x in grid if x <= now]


def _require_started(ds: Dataset, day: date, now: datetime) -> None:
    ds.calendar.require_session(day)
    if ds.calendar.market_date(now) < day:
        raise NotReadyError(f"{day} is in the future (now is {now.isoformat()}); nothing to archive")


def _require_closed(ds: Dataset, day: date, now: datetime) -> None:
    # the end of the dataset's own window: the close for bars, 20:00 ET for executions
    _, end = ds.calendar.event_window(day, ds.window)
    if now < end:
        raise NotReadyError(
            f"{ds.name} for {day} is archived after the session's end ({end.isoformat()}); "
            f"now is {now.isoformat()}. A partial day is never stored as if complete."
        )


def fetch(
    t,
    source: MarketSource,
    day: date,
    symbols: Sequence[str],
    *,
    instants: Sequence[datetime] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> pa.Table:
    """The dataset's rows from ``source``: its ``fetch_<name>`` method, called as its cadence
    needs, or the declaration's ``simulate`` for the simulated market."""
    ds = spec_for(t)
    symbols = list(ds.fixed_symbols or symbols)
    method = getattr(source, f"fetch_{ds.name}", None)
    if method is None:
        if ds.simulate is not None and source.name == "sim":
            return ds.simulate(source, day, symbols, instants, since=since, until=until)
        raise UnsupportedArchiveType(f"source {source.name!r} cannot serve {ds.name!r}")
    if ds.cadence == "poll":
        return method(day, symbols, since=since, until=until)
    if ds.snapshot:
        return method(day, symbols, instants)
    return method(day, symbols)


def derive_gex(options_store: Storage, day: date, instants: Sequence[datetime] | None = None) -> pa.Table:
    """Gamma exposure from the options archive of ``day`` (optionally only some snapshots)."""
    from archive_platform.gex import compute_gex

    opts = options_store.read_day(ArchiveType.OPTIONS, day)
    if instants is not None:
        import pyarrow.compute as pc

        wanted = pa.array(list(instants), type=opts.schema.field("snapshot_time").type)
        opts = opts.filter(pc.is_in(opts["snapshot_time"], value_set=wanted))
    if opts.num_rows == 0:
        raise SourceError(
            f"no options stored for {day}"
            + (f" at {[i.isoformat() for i in instants]}" if instants else "")
            + ": gex is derived from the options archive, so materialize options first"
        )
    return compute_gex(opts)


def archive_partition(
    t,
    req: Request,
    *,
    store: Storage,
    source: MarketSource | None,
    settings: Settings,
    now: datetime,
    options_store: Storage | None = None,
):
    """Archive one partition of dataset ``t``; returns the store's ``WriteResult``.

    ``source`` is None for derived datasets; ``options_store`` is where they read their input.
    """
    ds = spec_for(t)
    day = req.day
    _require_started(ds, day, now)
    symbols = list(ds.fixed_symbols or settings.symbols)
    derived = source is None or (ds.derive_under_sim and source.name == "sim")

    def derive(instants):
        if ds.derive is None:
            raise ValueError(f"{ds.name} declares no derivation; choose a source that serves it")
        return ds.derive(options_store, day, symbols, instants)

    if req.mode == "snapshot":
        if not ds.snapshot:
            raise ValueError(f"{ds.name} has no intraday snapshots; use mode 'day' or 'poll'")
        if req.snapshot_time > now:
            raise NotReadyError(f"snapshot {req.snapshot_time.isoformat()} is in the future")
        if derived:
            table = derive([req.snapshot_time])
        else:
            table = fetch(ds, source, day, symbols, instants=[req.snapshot_time])
        return store.append_snapshot(ds, day, table)

    if req.mode == "poll":
        if ds.cadence != "poll":
            raise ValueError(f"mode 'poll' is for polled datasets, not {ds.name}")
        until = min(req.until or now, now)
        table = fetch(ds, source, day, symbols, since=req.since, until=until)
        return store.append_snapshot(ds, day, table)

    if req.mode == "eod" and ds.incremental and store.partition_files(ds, day):
        return store.compact_day(ds, day)

    # mode "day" (or "eod" with nothing collected intraday): the whole partition
    if derived:
        if not ds.incremental:  # a whole-day derivation (daily bars, IV, regime, candles...)
            _require_closed(ds, day, now)
        # derived gex takes every stored options snapshot; other snapshots follow the plan
        instants = None if ds.derive_under_sim else planned_instants(ds, day, settings, now)
        return store.write_day(ds, day, derive(instants))
    if not ds.incremental:
        _require_closed(ds, day, now)
        return store.write_day(ds, day, fetch(ds, source, day, symbols))
    if not source.can_backfill(ds.type):
        if store.partition_files(ds, day):
            return store.compact_day(ds, day)
        raise SnapshotNotReproducible(
            f"{source.name} serves {ds.name} live only and nothing was collected for {day} "
            "while it was live; the past cannot be fetched from this source, so the partition "
            "stays missing rather than filled with something else"
        )
    if ds.cadence == "poll":
        _, close = ds.calendar.event_window(day, ds.window)
        table = fetch(ds, source, day, symbols, since=None, until=min(now, close))
    else:
        instants = planned_instants(ds, day, settings, now)
        if not instants:
            raise NotReadyError(f"no {ds.name} snapshot of {day} is due yet (now {now.isoformat()})")
        table = fetch(ds, source, day, symbols, instants=instants)
    return store.write_day(ds, day, table)
