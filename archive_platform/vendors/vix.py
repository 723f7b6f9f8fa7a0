"""The ``vix`` dataset from vendors: VIX levels sampled to the snapshot grid.

Pure part: ``bar_levels`` and ``price_levels`` turn vendor minute data into *observations*
(the instant a value was known, the value), ``sample_to_grid`` picks one per grid instant and
``vix_table`` builds the canonical table. One sampling rule for every vendor:

    the level at grid instant g is the latest observation made at or before g, if it is at
    most ``max_age`` (default 5 minutes) older than g; otherwise g gets no row (the
    ``complete`` check then reports the missing snapshot).

Observations: for one-minute bars (Polygon ``I:VIX`` aggregates, IB ``Index('VIX', 'CBOE')``
TRADES bars) each session bar gives its close at its end (start + 1 minute: the last value
published before then), and the bar starting exactly at the open also gives its open at the
open, so the opening instant has a value. No bar's close is used before the bar has ended (no
look-ahead). ThetaData's index price history at a 1-minute interval (v2 ``hist/index/price``,
v3 ``index/history/price``) is "the price at the exact time of each timestamp" (vendor's API
documentation, both versions), so each row is an observation at its own timestamp.
``timestamp`` of a stored row is the observation's instant; ``snapshot_time`` is g.

The mixins give ``PolygonSource``, ``ThetaDataSource`` and ``IBSource`` their ``fetch_vix``; they
use those sources' own transport (pagination, retries, pacing, error meanings). No Dagster here.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pyarrow as pa

from archive_platform import calendar as cal
from archive_platform.sources.base import EmptySession
from archive_platform.vendors.errors import PayloadError
from archive_platform.vendors.payload import Dec, EpochMs, PayloadReader, Row, table_from_rows, validate_table

log = logging.getLogger(__name__)
SYMBOL = "VIX"
MAX_AGE = timedelta(minutes=5)
MINUTE = timedelta(minutes=1)
#: Polygon's index tickers carry the ``I:`` prefix; the ``:`` is sent as is, as Polygon's own
#: examples write it (``/v2/aggs/ticker/I:NDX/range/...``), not percent-encoded
POLYGON_TICKER = "I:VIX"


@dataclass(frozen=True, order=True)
class Level:
    """One observation of the index: the UTC instant the value was known, and the value."""

    at: datetime
    value: float


def _level(value: object, at: datetime, vendor: str, where: str) -> Level:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise PayloadError(f"{vendor}: {where}: VIX value {value!r} at {at.isoformat()} is not a "
                           "positive finite number", vendor=vendor, endpoint=where)
    return Level(at, v)


def bar_levels(bars: Iterable[tuple[datetime, object, object]], session: cal.Session,
               vendor: str, where: str) -> list[Level]:
    """Observations from one-minute bars ``(start UTC, open, close)`` of ``session``: each
    session bar's close at its end, and the open of the bar starting at the open, at the open.
    Bars outside ``[open, close)`` (Cboe's global trading hours, after 16:00) are ignored."""
    out = []
    for start, open_, close in bars:
        if not session.open_utc <= start < session.close_utc:
            continue
        if start == session.open_utc:
            out.append(_level(open_, start, vendor, where))
        out.append(_level(close, start + MINUTE, vendor, where))
    return sorted(out)


def sample_to_grid(levels: Sequence[Level], instants: Sequence[datetime],
                   max_age: timedelta = MAX_AGE) -> list[tuple[datetime, Level]]:
    """``(g, level)`` per instant g that has an observation at or before it, at most ``max_age``
    old (``levels`` sorted by time; of equal instants the last one wins)."""
    times = [lv.at for lv in levels]
    out = []
    for g in sorted(set(instants)):
        i = bisect.bisect_right(times, g)
        if i and g - times[i - 1] <= max_age:
            out.append((g, levels[i - 1]))
    return out


def vix_table(samples: Sequence[tuple[datetime, Level]], vendor: str) -> pa.Table:
    rows = [{"timestamp": lv.at, "snapshot_time": g, "symbol": SYMBOL, "level": lv.value,
             "et_offset": cal.et_offset_minutes(lv.at), "source": vendor} for g, lv in samples]
    return validate_table(table_from_rows(rows, "vix"), "vix", vendor)


def grid_levels(vendor: str, day: date, symbols: Sequence[str], instants: Sequence[datetime],
                levels: Callable[[cal.Session], list[Level]], max_age: timedelta = MAX_AGE) -> pa.Table:
    """The vix table of ``instants`` of ``day`` from the observations ``levels(session)``.

    ``EmptySession`` when the vendor has no observation in the session, or none recent enough
    for any requested instant; instants without a recent observation are left out (warning).
    """
    if any(s.strip().upper() != SYMBOL for s in symbols):
        raise ValueError(f"{vendor}: the vix dataset is the VIX index only, not {list(symbols)}")
    session = cal.session(day)
    for g in instants:
        if not session.open_utc <= g <= session.close_utc:
            raise ValueError(f"{vendor}: snapshot time {g.isoformat()} is outside the {day} "
                             f"session ({session.open_utc.isoformat()}..{session.close_utc.isoformat()})")
    if not instants:
        return vix_table([], vendor)
    obs = levels(session)
    if not obs:
        raise EmptySession(f"{vendor}: no VIX value in the {day} session")
    samples = sample_to_grid(obs, instants, max_age)
    if not samples:
        raise EmptySession(
            f"{vendor}: no VIX value at most {max_age} before any of the {len(instants)} requested "
            f"instant(s) of {day} (first {min(instants).isoformat()}); the vendor's values run "
            f"{obs[0].at.isoformat()}..{obs[-1].at.isoformat()} (a delayed-data plan lags by 15 min)")
    if len(samples) < len(set(instants)):
        have = {g for g, _ in samples}
        missing = sorted(g for g in set(instants) if g not in have)
        log.warning("%s: no VIX value within %s before %d of %d instant(s) of %s (first %s); "
                    "those snapshots are left out", vendor, max_age, len(missing),
                    len(set(instants)), day, missing[0].isoformat())
    return vix_table(samples, vendor)


# -- vendors -----------------------------------------------------------------------------


class IndexBar(Row):
    """One Polygon index aggregate: ``t`` bar start (epoch ms); index bars carry no volume."""

    t: EpochMs
    o: Dec
    c: Dec


class PolygonVix:
    """``fetch_vix`` of ``PolygonSource``: ``I:VIX`` one-minute aggregates (needs an indices plan)."""

    vix_max_age = MAX_AGE

    def fetch_vix(self, day: date, symbols: Sequence[str], instants: Sequence[datetime]) -> pa.Table:
        def levels(session: cal.Session) -> list[Level]:
            d = day.isoformat()
            path = f"/v2/aggs/ticker/{POLYGON_TICKER}/range/1/minute/{d}/{d}"
            params = {"sort": "asc", "limit": 50000}
            results = self.fetch_pages(path, params)
            endpoint = self.http.endpoint(path, params)
            bars = PayloadReader(self.name, endpoint, self.http.redact).models(results, IndexBar)
            return bar_levels(((b.t, b.o, b.c) for b in bars), session, self.name, endpoint)

        return grid_levels(self.name, day, symbols, instants, levels, self.vix_max_age)


class ThetaDataVix:
    """``fetch_vix`` of ``ThetaDataSource``: the index price history at a 1-minute interval,
    v3 ``/v3/index/history/price`` (CSV ``timestamp,price``) or v2 ``hist/index/price``."""

    vix_max_age = MAX_AGE

    def fetch_vix(self, day: date, symbols: Sequence[str], instants: Sequence[datetime]) -> pa.Table:
        def levels(session: cal.Session) -> list[Level]:
            out = []
            for at, price, endpoint in self._vix_prices(day):
                # a zero price is a minute before the first report (the terminal fills 0)
                if price != 0 and session.open_utc <= at <= session.close_utc:
                    out.append(_level(price, at, self.name, endpoint))
            return sorted(out)

        return grid_levels(self.name, day, symbols, instants, levels, self.vix_max_age)

    def _vix_prices(self, day: date) -> list[tuple[datetime, object, str]]:
        """``(UTC instant, price, endpoint)`` per minute of ``day``, from this source's API."""
        from archive_platform.vendors import thetadata_v3 as v3
        from archive_platform.vendors.thetadata_decode import et_ms_to_utc, iter_rows

        d = int(f"{day:%Y%m%d}")
        out = []
        if self.api == "v3":
            rows, endpoint = self._csv(v3.INDEX_PRICE, {"symbol": SYMBOL, "date": d, "interval": "1m"})
            for line, row in enumerate(rows, start=2):
                try:
                    at = v3.parse_timestamp(row["timestamp"], f"row {line}")
                    price = v3.number(row["price"], f"row {line}", "price")
                except ValueError as exc:
                    raise PayloadError(f"{self.name}: GET {endpoint}: {exc}", vendor=self.name,
                                       endpoint=endpoint) from None
                if price is not None:  # an empty cell: no report in that minute yet
                    out.append((at, price, endpoint))
            return out
        params = {"root": SYMBOL, "start_date": d, "end_date": d, "ivl": 60_000}
        for fmt, response, endpoint in self._pages("/v2/hist/index/price", params):
            missing = {"ms_of_day", "price", "date"} - set(fmt)
            if missing:
                raise PayloadError(f"{self.name}: GET {endpoint}: header.format {fmt} lacks "
                                   f"{sorted(missing)}", vendor=self.name, endpoint=endpoint)
            for row in iter_rows(fmt, response, endpoint):
                try:
                    at = et_ms_to_utc(row["date"], row["ms_of_day"], endpoint)
                except ValueError as exc:
                    raise PayloadError(f"{self.name}: GET {endpoint}: {exc}", vendor=self.name,
                                       endpoint=endpoint) from None
                out.append((at, row["price"], endpoint))
        return out


def ib_history_end(session: cal.Session, instants: Sequence[datetime], now: datetime) -> datetime:
    """``endDateTime`` of the IB one-minute history that has a value for every instant.

    IB sends the bars of the ``durationStr`` going back from ``endDateTime``, each stamped with
    its start ("the amount of time to go back from the request's given end date and time":
    https://interactivebrokers.github.io/tws-api/historical_bars.html), so a bar starting at
    the end is not sent. The latest instant g needs the bar ending at g (its close) and, when g
    is the open, the bar starting at the open (its open): the history ends at the latest instant
    but never before open + 1 minute, and never after the close (useRTH: nothing later) nor now
    (a live snapshot at the open: the bar in progress gives its open).
    """
    end = min(session.close_utc, max(max(instants), session.open_utc + MINUTE))
    return min(end, now) if now > session.open_utc else end


class IBVix:
    """``fetch_vix`` of ``IBSource``: ``Index('VIX', 'CBOE')`` one-minute TRADES bars."""

    vix_max_age = MAX_AGE

    def fetch_vix(self, day: date, symbols: Sequence[str], instants: Sequence[datetime]) -> pa.Table:
        def levels(session: cal.Session) -> list[Level]:
            contract = self._underlying(SYMBOL, index=True)
            end = ib_history_end(session, instants, self._clock())
            bars = self._historical_day(contract, SYMBOL, end)
            label = f"reqHistoricalData {SYMBOL} {day}"
            for b in bars:
                if not isinstance(b.date, datetime) or b.date.tzinfo is None:
                    raise PayloadError(f"{self.name}: {label}: bar date {b.date!r} is not a UTC "
                                       "datetime (formatDate=2)", vendor=self.name, endpoint=label)
            return bar_levels(((b.date.astimezone(cal.UTC), b.open, b.close) for b in bars),
                              session, self.name, label)

        return grid_levels(self.name, day, symbols, instants, levels, self.vix_max_age)
