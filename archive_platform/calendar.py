"""NYSE trading calendar: sessions, market dates, ET offsets, market status, snapshot grids.

A pure module (no Dagster imports) over pandas-market-calendars' NYSE calendar, which knows the
holidays, the 13:00 ET early closes and the unscheduled closures (national days of mourning such
as 2018-12-05 and 2025-01-09). Every function takes and returns plain values; instants are
timezone-aware ``datetime`` objects (naive ones are rejected, never guessed).
"""

from __future__ import annotations

import bisect
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")
UTC = timezone.utc

#: first and last day the cached schedule covers; outside it the calendar raises
CALENDAR_START = date(1995, 1, 1)
CALENDAR_END = date(2036, 12, 31)

PRE_MARKET_OPEN = time(4, 0)
AFTER_HOURS_CLOSE = time(20, 0)

MarketStatus = Literal["pre_market", "open", "after_hours", "closed"]


class NotATradingDay(ValueError):
    """Raised when a day that is not an NYSE session is used where one is required."""


@dataclass(frozen=True)
class Session:
    """One NYSE regular session: its ET date and its open/close instants in UTC."""

    day: date
    open_utc: datetime
    close_utc: datetime

    @property
    def open_et(self) -> datetime:
        return self.open_utc.astimezone(ET)

    @property
    def close_et(self) -> datetime:
        return self.close_utc.astimezone(ET)

    @property
    def is_early_close(self) -> bool:
        return self.close_et.time() < time(16, 0)

    @property
    def minutes(self) -> int:
        """Length of the regular session in minutes (390 on a full day, 210 on a 13:00 close)."""
        return int((self.close_utc - self.open_utc).total_seconds() // 60)


@lru_cache(maxsize=1)
def _schedule() -> tuple[tuple[date, ...], tuple[datetime, ...], tuple[datetime, ...]]:
    # One schedule for the whole supported range, computed once per process (~1.5 s with the
    # import); every lookup after that is a bisect on plain tuples.
    import pandas_market_calendars as mcal

    with warnings.catch_warnings():
        # pandas-market-calendars 5.5 uses Series.dt.weekday, deprecated in pandas 3: library
        # noise that would otherwise land in every process's log once
        warnings.filterwarnings("ignore", message=r"Series\.dt\.weekday is deprecated")
        sched = mcal.get_calendar("NYSE").schedule(
            start_date=CALENDAR_START.isoformat(), end_date=CALENDAR_END.isoformat()
        )
    days = tuple(d.date() for d in sched.index)
    opens = tuple(ts.to_pydatetime().astimezone(UTC) for ts in sched["market_open"])
    closes = tuple(ts.to_pydatetime().astimezone(UTC) for ts in sched["market_close"])
    return days, opens, closes


def _check_range(day: date) -> None:
    _require_date(day)
    if not (CALENDAR_START <= day <= CALENDAR_END):
        raise ValueError(
            f"{day.isoformat()} is outside the calendar's range "
            f"{CALENDAR_START.isoformat()}..{CALENDAR_END.isoformat()}"
        )


def _require_date(day: date) -> None:
    # datetime (and pandas.Timestamp) subclass date but do not compare with it, and an instant is
    # ambiguous as a market day (UTC or ET date?): make the caller say which with market_date().
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(
            f"expected a datetime.date, got {type(day).__name__} {day!r}; "
            "use market_date(ts) to get the ET date of an instant"
        )


def _require_aware(ts: datetime) -> None:
    if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
        raise ValueError(f"naive datetime {ts!r}: pass a timezone-aware instant (e.g. UTC)")


def is_trading_day(day: date) -> bool:
    """True when ``day`` is an NYSE session (not a weekend, holiday or unscheduled closure)."""
    _check_range(day)
    days = _schedule()[0]
    i = bisect.bisect_left(days, day)
    return i < len(days) and days[i] == day


def trading_days(start: date, end: date) -> list[date]:
    """The NYSE sessions with ``start <= day <= end``, in order."""
    if end < start:
        return []
    _check_range(start)
    _check_range(end)
    days = _schedule()[0]
    return list(days[bisect.bisect_left(days, start) : bisect.bisect_right(days, end)])


def session(day: date) -> Session:
    """The session of ``day``; ``NotATradingDay`` when the market does not open that day."""
    _check_range(day)
    days, opens, closes = _schedule()
    i = bisect.bisect_left(days, day)
    if i == len(days) or days[i] != day:
        raise NotATradingDay(f"{day.isoformat()} is not an NYSE trading day")
    return Session(day, opens[i], closes[i])


def require_trading_day(day: date) -> None:
    """Raise ``NotATradingDay`` unless ``day`` is a session."""
    session(day)


def previous_trading_day(day: date) -> date:
    """The last session strictly before ``day``."""
    _check_range(day)
    days = _schedule()[0]
    i = bisect.bisect_left(days, day)
    if i == 0:
        raise ValueError(f"no trading day before {day.isoformat()} in the calendar")
    return days[i - 1]


def next_trading_day(day: date) -> date:
    """The first session strictly after ``day``."""
    _check_range(day)
    days = _schedule()[0]
    i = bisect.bisect_right(days, day)
    if i == len(days):
        raise ValueError(f"no trading day after {day.isoformat()} in the calendar")
    return days[i]


def add_trading_days(day: date, n: int) -> date:
    """The session ``n`` sessions after (n > 0) or before (n < 0) ``day``.

    ``day`` itself need not be a session: from a Saturday, +1 is the next Monday's session and
    -1 the Friday before. ``n == 0`` returns ``day`` when it is a session, else raises.
    """
    if isinstance(n, bool) or not hasattr(n, "__index__"):  # 1.5 sessions is no session
        raise TypeError(f"add_trading_days: n must be a whole number of sessions, got {n!r}")
    n = int(n)
    _check_range(day)
    days = _schedule()[0]
    if n == 0:
        require_trading_day(day)
        return day
    if n > 0:
        i = bisect.bisect_right(days, day) + n - 1
    else:
        i = bisect.bisect_left(days, day) + n
    if not (0 <= i < len(days)):
        raise ValueError(f"{n:+d} trading days from {day.isoformat()} is outside the calendar")
    return days[i]


def last_trading_days(n: int, *, as_of: date) -> list[date]:
    """The last ``n`` sessions on or before ``as_of``, oldest first."""
    if n < 0:
        raise ValueError(f"last_trading_days needs n >= 0, got {n}")
    _check_range(as_of)
    days = _schedule()[0]
    i = bisect.bisect_right(days, as_of)
    return list(days[max(0, i - n) : i])


def market_date(ts: datetime) -> date:
    """The US/Eastern calendar date of an instant (the archive's partition day)."""
    _require_aware(ts)
    return ts.astimezone(ET).date()


def et_offset_minutes(ts: datetime) -> int:
    """The US/Eastern UTC offset at ``ts`` in minutes: -300 (EST) or -240 (EDT)."""
    _require_aware(ts)
    offset = ts.astimezone(ET).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


def market_status(ts: datetime) -> MarketStatus:
    """the original archive design's market status of an instant.

    ``pre_market`` 04:00 ET to the open, ``open`` from the open (inclusive) to the close
    (exclusive), ``after_hours`` from the close (the early close on half days) to 20:00 ET,
    ``closed`` otherwise, and all day on weekends, holidays and closures.
    """
    _require_aware(ts)
    et = ts.astimezone(ET)
    day = et.date()
    if not is_trading_day(day):
        return "closed"
    s = session(day)
    t = ts.astimezone(UTC)
    pre = datetime.combine(day, PRE_MARKET_OPEN, tzinfo=ET)
    post = datetime.combine(day, AFTER_HOURS_CLOSE, tzinfo=ET)
    if s.open_utc <= t < s.close_utc:
        return "open"
    if pre <= et < s.open_et:
        return "pre_market"
    if s.close_utc <= t < post:
        return "after_hours"
    return "closed"


def is_market_open(ts: datetime) -> bool:
    return market_status(ts) == "open"


def snapshot_times(day: date, every: timedelta = timedelta(minutes=15)) -> list[datetime]:
    """The intraday snapshot grid of a session in UTC: open, open+every, ..., close inclusive.

    The grid is anchored at the open, so a full day at 15 minutes has 27 snapshots
    (09:30..16:00) and a 13:00 close has 15. The close is included even when it is not on the
    grid, so every session ends with a closing snapshot.
    """
    if every <= timedelta(0):
        raise ValueError(f"snapshot interval must be positive, got {every}")
    s = session(day)
    out: list[datetime] = []
    t = s.open_utc
    while t <= s.close_utc:
        out.append(t)
        t += every
    if out[-1] != s.close_utc:
        out.append(s.close_utc)
    return out


def snapshot_at_or_before(
    ts: datetime, every: timedelta = timedelta(minutes=15)
) -> datetime | None:
    """The latest grid snapshot instant of ``ts``'s session that is <= ``ts`` (None if none)."""
    day = market_date(ts)
    if not is_trading_day(day):
        return None
    grid = [t for t in snapshot_times(day, every) if t <= ts]
    return grid[-1] if grid else None


def session_minutes(day: date) -> list[datetime]:
    """The start instant (UTC) of every regular-session one-minute bar of ``day``."""
    s = session(day)
    return [s.open_utc + timedelta(minutes=i) for i in range(s.minutes)]


def window_bounds(day: date, window: str) -> tuple[datetime, datetime]:
    """Inclusive UTC bounds of an archive type's event window on ``day`` (see schemas.window).

    ``session``: the regular session, open..close. ``extended``: 04:00..20:00 ET.
    ``day``: the whole ET calendar day.
    """
    if window == "session":
        s = session(day)
        return s.open_utc, s.close_utc
    require_trading_day(day)
    if window == "extended":
        lo = datetime.combine(day, PRE_MARKET_OPEN, tzinfo=ET)
        hi = datetime.combine(day, AFTER_HOURS_CLOSE, tzinfo=ET)
    elif window == "day":
        lo = datetime.combine(day, time(0, 0), tzinfo=ET)
        hi = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=ET) - timedelta(
            microseconds=1
        )
    else:
        raise ValueError(f"unknown event window {window!r}")
    return lo.astimezone(UTC), hi.astimezone(UTC)


def holidays_and_closures(start: date, end: date) -> list[date]:
    """Weekdays in [start, end] on which the NYSE does not trade (holidays and closures)."""
    sessions = set(trading_days(start, end))
    out = []
    d = start
    while d <= end:
        if d.weekday() < 5 and d not in sessions:
            out.append(d)
        d += timedelta(days=1)
    return out
