"""What one materialization of one archive partition does, without Dagster.

The assets are a thin shell over ``archive_partition``: it takes the store(s), the source, the
day, the mode and the instant "now", fetches from the source through the ``MarketSource``
interface and writes through the store. Modes:

* ``day``       the whole partition (backfills, the recovery sensor, manual runs): a source that
                can reproduce the past fetches every snapshot of the day up to ``now`` and
                replaces the partition; a live-only source compacts what the intraday runs
                collected, and fails clearly when there is nothing (it cannot fetch the past).
* ``snapshot``  one intraday snapshot at ``snapshot_time`` appended (options, gex, iv_rank).
* ``poll``      flow alerts with ``since < timestamp <= until`` appended (uw_flow).
* ``eod``       end of day: intraday parts compacted (options, gex, uw_flow, iv_rank), bars and
                executions fetched for the closed session (stocks_1m, trades).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pyarrow as pa

from archive_platform import calendar
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.sources.base import MarketSource, SnapshotNotReproducible, SourceError

MODES = ("day", "snapshot", "poll", "eod")
SNAPSHOT_TYPES = (ArchiveType.OPTIONS, ArchiveType.GEX, ArchiveType.IV_RANK)


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


def planned_instants(t: ArchiveType, day: date, settings: Settings, now: datetime) -> list[datetime]:
    """The snapshot instants of ``day`` for a snapshot type that are not in the future."""
    if t is ArchiveType.IV_RANK:
        grid = iv_rank_instants(day, settings.iv_rank_times)
    else:
        grid = calendar.snapshot_times(day, settings.snapshot_every)
    return [x for x in grid if x <= now]


def _require_started(day: date, now: datetime) -> None:
    calendar.require_trading_day(day)
    if calendar.market_date(now) < day:
        raise NotReadyError(f"{day} is in the future (now is {now.isoformat()}); nothing to archive")


def _require_closed(t: ArchiveType, day: date, now: datetime) -> None:
    # the end of the type's own window: the close for bars, 20:00 ET for executions
    _, end = calendar.window_bounds(day, spec_for(t).window)
    if now < end:
        raise NotReadyError(
            f"{t.value} for {day} is archived after the session's end ({end.isoformat()}); "
            f"now is {now.isoformat()}. A partial day is never stored as if complete."
        )


def fetch(
    t: ArchiveType,
    source: MarketSource,
    day: date,
    symbols: Sequence[str],
    *,
    instants: Sequence[datetime] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> pa.Table:
    """Call the source method of type ``t`` (one switch, so nothing else knows the method names)."""
    if t is ArchiveType.UW_FLOW:
        return source.fetch_uw_flow(day, symbols, since=since, until=until)
    if t is ArchiveType.OPTIONS:
        return source.fetch_options(day, symbols, instants)
    if t is ArchiveType.GEX:
        return source.fetch_gex(day, symbols, instants)
    if t is ArchiveType.STOCKS_1M:
        return source.fetch_stocks_1m(day, symbols)
    if t is ArchiveType.IV_RANK:
        return source.fetch_iv_rank(day, symbols, instants)
    return source.fetch_trades(day, symbols)


def derive_gex(options_store, day: date, instants: Sequence[datetime] | None = None) -> pa.Table:
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
    t: ArchiveType,
    req: Request,
    *,
    store,
    source: MarketSource | None,
    settings: Settings,
    now: datetime,
    options_store=None,
):
    """Archive one partition of type ``t``; returns the store's ``WriteResult``.

    ``source`` is None for derived gex; ``options_store`` is where derived types read options.
    """
    day = req.day
    _require_started(day, now)
    symbols = list(settings.symbols)
    # gex from the simulated market is derived from the stored chains too, so it always matches
    # the options partition it sits beside
    derived = source is None or (t is ArchiveType.GEX and source.name == "sim")

    def derive(instants):
        if t is ArchiveType.GEX:
            return derive_gex(options_store, day, instants)
        from archive_platform.derived import derive_iv_rank

        return derive_iv_rank(options_store, day, symbols, instants)

    if req.mode == "snapshot":
        if t not in SNAPSHOT_TYPES:
            raise ValueError(f"{t.value} has no intraday snapshots; use mode 'day' or 'poll'")
        if req.snapshot_time > now:
            raise NotReadyError(f"snapshot {req.snapshot_time.isoformat()} is in the future")
        if derived:
            table = derive([req.snapshot_time])
        else:
            table = fetch(t, source, day, symbols, instants=[req.snapshot_time])
        return store.append_snapshot(t, day, table)

    if req.mode == "poll":
        if t is not ArchiveType.UW_FLOW:
            raise ValueError(f"mode 'poll' is for uw_flow, not {t.value}")
        until = min(req.until or now, now)
        table = fetch(t, source, day, symbols, since=req.since, until=until)
        return store.append_snapshot(t, day, table)

    incremental = t in SNAPSHOT_TYPES or t is ArchiveType.UW_FLOW
    if req.mode == "eod" and incremental and store.partition_files(t, day):
        return store.compact_day(t, day)

    # mode "day" (or "eod" with nothing collected intraday): the whole partition
    if derived:
        instants = None if t is ArchiveType.GEX else planned_instants(t, day, settings, now)
        return store.write_day(t, day, derive(instants))
    if not incremental:
        _require_closed(t, day, now)
        return store.write_day(t, day, fetch(t, source, day, symbols))
    if not source.can_backfill(t):
        if store.partition_files(t, day):
            return store.compact_day(t, day)
        raise SnapshotNotReproducible(
            f"{source.name} serves {t.value} live only and nothing was collected for {day} "
            "while it was live; the past cannot be fetched from this source, so the partition "
            "stays missing rather than filled with something else"
        )
    if t is ArchiveType.UW_FLOW:
        s = calendar.session(day)
        table = fetch(t, source, day, symbols, since=None, until=min(now, s.close_utc))
    else:
        instants = planned_instants(t, day, settings, now)
        if not instants:
            raise NotReadyError(f"no {t.value} snapshot of {day} is due yet (now {now.isoformat()})")
        table = fetch(t, source, day, symbols, instants=instants)
    return store.write_day(t, day, table)
