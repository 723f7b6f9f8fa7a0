"""Tests of archive_platform.calendar against stated NYSE facts and pandas-market-calendars.

Expected values come from published NYSE holiday/early-close facts, the US DST rule (second
Sunday of March to first Sunday of November, switching at 02:00 local), or
pandas_market_calendars queried directly here, never from the module under test.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import pandas_market_calendars as mcal
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_platform import calendar as cal

# the oracle calls pandas-market-calendars directly; its pandas-3 deprecation is not ours
pytestmark = pytest.mark.filterwarnings("ignore:Series.dt.weekday is deprecated")

ET = ZoneInfo("America/New_York")
UTC = timezone.utc
D = date.fromisoformat


@lru_cache(maxsize=1)
def nyse_sessions_2016_2026() -> tuple[date, ...]:
    """The oracle: NYSE valid days straight from pandas_market_calendars."""
    days = mcal.get_calendar("NYSE").valid_days("2016-01-01", "2026-12-31")
    return tuple(d.date() for d in days)


def et(day: str, hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime.combine(D(day), time(hh, mm, ss, us), tzinfo=ET)


def utc(day: str, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(D(day), time(hh, mm, ss), tzinfo=UTC)


# --- holidays, closures, early closes ---------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    ["2025-07-04", "2025-12-25", "2025-04-18", "2024-03-29", "2025-11-27", "2025-01-01"],
)
def test_holidays_are_not_sessions(day: str) -> None:
    assert not cal.is_trading_day(D(day))
    with pytest.raises(cal.NotATradingDay, match=day):
        cal.session(D(day))


@pytest.mark.parametrize("day", ["2025-01-09", "2018-12-05"])
def test_unscheduled_closures_are_not_sessions(day: str) -> None:
    # national days of mourning (Presidents Carter and G. H. W. Bush) fell on weekdays
    assert D(day).weekday() < 5
    assert not cal.is_trading_day(D(day))
    assert D(day) in cal.holidays_and_closures(D(day) - timedelta(days=7), D(day))


@pytest.mark.parametrize("day", ["2025-11-28", "2025-12-24", "2024-07-03"])
def test_early_close_sessions(day: str) -> None:
    s = cal.session(D(day))
    assert s.open_et == et(day, 9, 30)
    assert s.close_et == et(day, 13, 0)
    assert s.is_early_close
    assert s.minutes == 210
    grid = cal.snapshot_times(D(day))
    assert len(grid) == 15  # 09:30, 09:45, ..., 13:00
    assert grid[0] == et(day, 9, 30) and grid[-1] == et(day, 13, 0)
    assert len(cal.session_minutes(D(day))) == 210


def test_full_day_session_shape() -> None:
    s = cal.session(D("2025-11-21"))
    assert (s.open_utc, s.close_utc) == (utc("2025-11-21", 14, 30), utc("2025-11-21", 21, 0))
    assert not s.is_early_close and s.minutes == 390
    grid = cal.snapshot_times(D("2025-11-21"))
    assert len(grid) == 27 and grid[-1] == et("2025-11-21", 16, 0)
    assert all(b - a == timedelta(minutes=15) for a, b in zip(grid, grid[1:]))
    minutes = cal.session_minutes(D("2025-11-21"))
    assert minutes[0] == s.open_utc and minutes[-1] == et("2025-11-21", 15, 59)


def test_snapshot_grid_off_interval_still_ends_at_close() -> None:
    grid = cal.snapshot_times(D("2025-11-28"), timedelta(minutes=7))  # 210 = 30 * 7
    grid60 = cal.snapshot_times(D("2025-11-28"), timedelta(minutes=60))
    assert grid[-1] == et("2025-11-28", 13, 0) and len(grid) == 31
    assert [t.astimezone(ET).strftime("%H:%M") for t in grid60] == [
        "09:30", "10:30", "11:30", "12:30", "13:00"
    ]
    with pytest.raises(ValueError, match="positive"):
        cal.snapshot_times(D("2025-11-28"), timedelta(0))


def test_snapshot_at_or_before() -> None:
    assert cal.snapshot_at_or_before(et("2025-11-21", 9, 29)) is None
    assert cal.snapshot_at_or_before(et("2025-11-21", 9, 44, 59)) == et("2025-11-21", 9, 30)
    assert cal.snapshot_at_or_before(et("2025-11-21", 9, 45)) == et("2025-11-21", 9, 45)
    assert cal.snapshot_at_or_before(et("2025-11-28", 18, 0)) == et("2025-11-28", 13, 0)
    assert cal.snapshot_at_or_before(et("2025-11-22", 12, 0)) is None


# --- DST -------------------------------------------------------------------------------------


def test_first_sessions_after_dst_switches_open_at_0930_et() -> None:
    assert cal.session(D("2025-03-07")).open_utc == utc("2025-03-07", 14, 30)  # EST
    assert cal.session(D("2025-03-10")).open_utc == utc("2025-03-10", 13, 30)  # EDT
    assert cal.session(D("2025-10-31")).open_utc == utc("2025-10-31", 13, 30)  # EDT
    assert cal.session(D("2025-11-03")).open_utc == utc("2025-11-03", 14, 30)  # EST
    assert cal.session(D("2025-11-03")).close_utc == utc("2025-11-03", 21, 0)


@pytest.mark.parametrize(
    ("instant", "offset"),
    [
        (datetime(2025, 3, 9, 6, 59, 59, tzinfo=UTC), -300),
        (datetime(2025, 3, 9, 7, 0, tzinfo=UTC), -240),
        (datetime(2025, 11, 2, 5, 59, 59, tzinfo=UTC), -240),
        (datetime(2025, 11, 2, 6, 0, tzinfo=UTC), -300),
    ],
)
def test_et_offset_at_switch_instants(instant: datetime, offset: int) -> None:
    assert cal.et_offset_minutes(instant) == offset
    assert type(cal.et_offset_minutes(instant)) is int


def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def _us_eastern_offset_by_rule(ts: datetime) -> int:
    # Energy Policy Act 2005 rule: EDT from 2nd Sunday of March 07:00Z (02:00 EST) to
    # 1st Sunday of November 06:00Z (02:00 EDT).
    y = ts.astimezone(UTC).year
    start = datetime.combine(_nth_sunday(y, 3, 2), time(7), tzinfo=UTC)
    end = datetime.combine(_nth_sunday(y, 11, 1), time(6), tzinfo=UTC)
    return -240 if start <= ts < end else -300


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(2008, 1, 1), max_value=datetime(2036, 12, 1)))
def test_et_offset_matches_us_dst_rule(naive: datetime) -> None:
    ts = naive.replace(tzinfo=UTC)
    assert cal.et_offset_minutes(ts) == _us_eastern_offset_by_rule(ts)
    # the market date is the wall-clock date at that offset
    assert cal.market_date(ts) == (naive + timedelta(minutes=_us_eastern_offset_by_rule(ts))).date()


# --- market status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "status"),
    [
        (et("2025-11-21", 3, 59, 59, 999000), "closed"),
        (et("2025-11-21", 4, 0), "pre_market"),
        (et("2025-11-21", 9, 29, 59), "pre_market"),
        (et("2025-11-21", 9, 30), "open"),
        (et("2025-11-21", 15, 59, 59), "open"),
        (et("2025-11-21", 16, 0), "after_hours"),
        (et("2025-11-21", 19, 59, 59), "after_hours"),
        (et("2025-11-21", 20, 0), "closed"),
        (et("2025-11-21", 0, 0), "closed"),
        (et("2025-11-21", 23, 59, 59), "closed"),
        # half day: the early close starts after-hours
        (et("2025-11-28", 12, 59, 59), "open"),
        (et("2025-11-28", 13, 0), "after_hours"),
        (et("2025-11-28", 19, 59, 59), "after_hours"),
        # DST switch weeks, expressed in UTC so the offset matters
        (utc("2025-03-10", 13, 30), "open"),
        (utc("2025-03-10", 13, 29, 59), "pre_market"),
        (utc("2025-11-03", 14, 29, 59), "pre_market"),
        (utc("2025-11-03", 14, 30), "open"),
        (utc("2025-11-03", 21, 0), "after_hours"),
    ],
)
def test_market_status_boundaries(instant: datetime, status: str) -> None:
    assert cal.market_status(instant) == status
    assert cal.is_market_open(instant) == (status == "open")


@pytest.mark.parametrize("day", ["2025-11-22", "2025-11-23", "2025-11-27", "2025-01-09"])
def test_market_status_closed_all_day_on_non_sessions(day: str) -> None:
    for minute in range(0, 24 * 60, 7):
        instant = et(day, 0) + timedelta(minutes=minute)
        assert cal.market_status(instant) == "closed", instant


# --- naive datetimes and wrong types ---------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [cal.market_status, cal.market_date, cal.et_offset_minutes, cal.snapshot_at_or_before,
     cal.is_market_open],
)
def test_naive_datetimes_are_rejected(fn) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        fn(datetime(2025, 11, 21, 10, 0))


@pytest.mark.parametrize(
    "call",
    [
        lambda d: cal.is_trading_day(d),
        lambda d: cal.session(d),
        lambda d: cal.previous_trading_day(d),
        lambda d: cal.next_trading_day(d),
        lambda d: cal.add_trading_days(d, 1),
        lambda d: cal.last_trading_days(2, as_of=d),
    ],
)
def test_datetime_passed_as_day_is_a_clear_type_error(call) -> None:
    # regression: this used to be "can't compare datetime.datetime to datetime.date"
    with pytest.raises(TypeError, match="expected a datetime.date.*market_date"):
        call(datetime(2025, 11, 21, 10, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    "call",
    [
        lambda: cal.previous_trading_day(date(2040, 1, 1)),
        lambda: cal.next_trading_day(date(1990, 1, 1)),
        lambda: cal.add_trading_days(date(2040, 1, 1), -1),
        lambda: cal.add_trading_days(date(1990, 1, 1), 1),
        lambda: cal.last_trading_days(3, as_of=date(2040, 1, 1)),
        lambda: cal.is_trading_day(date(1994, 12, 30)),
        lambda: cal.trading_days(date(2036, 12, 1), date(2037, 1, 31)),
    ],
)
def test_outside_calendar_range_raises(call) -> None:
    # regression: the stepping functions used to clamp to the cached range silently
    with pytest.raises(ValueError, match="outside the calendar"):
        call()


# --- stepping across weekends and holidays -------------------------------------------------


def test_previous_and_next_across_weekend_and_holidays() -> None:
    assert cal.next_trading_day(D("2025-11-21")) == D("2025-11-24")  # Fri -> Mon
    assert cal.next_trading_day(D("2025-11-22")) == D("2025-11-24")  # Sat -> Mon
    assert cal.previous_trading_day(D("2025-11-24")) == D("2025-11-21")
    assert cal.previous_trading_day(D("2025-11-23")) == D("2025-11-21")
    assert cal.next_trading_day(D("2025-11-26")) == D("2025-11-28")  # over Thanksgiving
    assert cal.previous_trading_day(D("2025-11-28")) == D("2025-11-26")
    assert cal.next_trading_day(D("2025-01-08")) == D("2025-01-10")  # over Carter closure
    assert cal.next_trading_day(D("2025-04-17")) == D("2025-04-21")  # Good Friday + weekend
    assert cal.next_trading_day(D("2025-12-24")) == D("2025-12-26")
    assert cal.previous_trading_day(D("2026-01-02")) == D("2025-12-31")


def test_add_trading_days() -> None:
    assert cal.add_trading_days(D("2025-11-21"), 1) == D("2025-11-24")
    assert cal.add_trading_days(D("2025-11-22"), 1) == D("2025-11-24")  # from a Saturday
    assert cal.add_trading_days(D("2025-11-22"), -1) == D("2025-11-21")
    assert cal.add_trading_days(D("2025-11-24"), 3) == D("2025-11-28")  # 25, 26, (27 off), 28
    assert cal.add_trading_days(D("2025-11-28"), -3) == D("2025-11-24")
    assert cal.add_trading_days(D("2025-11-27"), 1) == D("2025-11-28")
    assert cal.add_trading_days(D("2025-11-27"), -1) == D("2025-11-26")
    assert cal.add_trading_days(D("2025-11-21"), 0) == D("2025-11-21")
    with pytest.raises(cal.NotATradingDay, match="2025-11-22"):
        cal.add_trading_days(D("2025-11-22"), 0)
    with pytest.raises(ValueError, match="outside the calendar"):
        cal.add_trading_days(cal.CALENDAR_END, 5)


def test_last_trading_days() -> None:
    assert cal.last_trading_days(3, as_of=D("2025-11-30")) == [
        D("2025-11-25"), D("2025-11-26"), D("2025-11-28")
    ]
    assert cal.last_trading_days(2, as_of=D("2025-11-24")) == [D("2025-11-21"), D("2025-11-24")]
    assert cal.last_trading_days(0, as_of=D("2025-11-24")) == []
    with pytest.raises(ValueError, match="n >= 0"):
        cal.last_trading_days(-1, as_of=D("2025-11-24"))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(nyse_sessions_2016_2026()[300:-300]),
    st.integers(min_value=-250, max_value=250),
)
def test_add_trading_days_matches_oracle_index(day: date, n: int) -> None:
    sessions = nyse_sessions_2016_2026()
    i = sessions.index(day)
    assert cal.add_trading_days(day, n) == sessions[i + n]
    assert cal.add_trading_days(cal.add_trading_days(day, n), -n) == day


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(2016, 2, 1), max_value=date(2026, 11, 30)))
def test_previous_next_bracket_any_day(day: date) -> None:
    sessions = set(nyse_sessions_2016_2026())
    prev, nxt = cal.previous_trading_day(day), cal.next_trading_day(day)
    assert prev < day < nxt and prev in sessions and nxt in sessions
    between = [prev + timedelta(days=k) for k in range(1, (nxt - prev).days)]
    assert [d for d in between if d in sessions] == ([day] if day in sessions else [])
    assert cal.is_trading_day(day) == (day in sessions)


# --- whole-year counts against pandas_market_calendars --------------------------------------


@pytest.mark.parametrize(("year", "count"), [(2024, 252), (2025, 250)])
def test_year_session_counts(year: int, count: int) -> None:
    oracle = [d for d in nyse_sessions_2016_2026() if d.year == year]
    assert len(oracle) == count  # the published counts agree with pandas_market_calendars
    got = cal.trading_days(date(year, 1, 1), date(year, 12, 31))
    assert got == oracle


def test_sessions_and_early_closes_match_oracle_2016_2026() -> None:
    sched = mcal.get_calendar("NYSE").schedule("2016-01-01", "2026-12-31")
    want_days = [ts.date() for ts in sched.index]
    assert cal.trading_days(date(2016, 1, 1), date(2026, 12, 31)) == want_days
    for ts, row in sched.iterrows():
        s = cal.session(ts.date())
        assert s.open_utc == row["market_open"].to_pydatetime()
        assert s.close_utc == row["market_close"].to_pydatetime()
    early = {
        ts.date() for ts, row in sched.iterrows() if row["market_close"].tz_convert(ET).hour == 13
    }
    assert {D("2024-07-03"), D("2025-11-28"), D("2025-12-24")} <= early


def test_holidays_and_closures_2025() -> None:
    want = [
        "2025-01-01", "2025-01-09", "2025-01-20", "2025-02-17", "2025-04-18", "2025-05-26",
        "2025-06-19", "2025-07-04", "2025-09-01", "2025-11-27", "2025-12-25",
    ]
    assert cal.holidays_and_closures(D("2025-01-01"), D("2025-12-31")) == [D(d) for d in want]
    assert cal.holidays_and_closures(D("2025-12-31"), D("2025-01-01")) == []


def test_trading_days_edges() -> None:
    assert cal.trading_days(D("2025-11-22"), D("2025-11-23")) == []
    assert cal.trading_days(D("2025-11-24"), D("2025-11-21")) == []
    assert cal.trading_days(D("2025-11-21"), D("2025-11-24")) == [D("2025-11-21"), D("2025-11-24")]


# --- event windows ---------------------------------------------------------------------------


def test_window_bounds() -> None:
    assert cal.window_bounds(D("2025-11-21"), "session") == (
        utc("2025-11-21", 14, 30), utc("2025-11-21", 21, 0)
    )
    assert cal.window_bounds(D("2025-11-28"), "session") == (
        utc("2025-11-28", 14, 30), utc("2025-11-28", 18, 0)
    )
    # extended hours do not shrink on a half day
    assert cal.window_bounds(D("2025-11-28"), "extended") == (
        utc("2025-11-28", 9, 0), utc("2025-11-29", 1, 0)
    )
    assert cal.window_bounds(D("2025-03-10"), "extended") == (
        utc("2025-03-10", 8, 0), utc("2025-03-11", 0, 0)
    )
    lo, hi = cal.window_bounds(D("2025-11-03"), "day")
    assert lo == utc("2025-11-03", 5, 0)
    assert hi == utc("2025-11-04", 4, 59, 59) + timedelta(microseconds=999999)
    assert all(b.tzinfo is not None and b.utcoffset() == timedelta(0) for b in (lo, hi))
    with pytest.raises(ValueError, match="unknown event window 'bogus'"):
        cal.window_bounds(D("2025-11-21"), "bogus")
    for window in ("session", "extended", "day"):
        with pytest.raises(cal.NotATradingDay, match="2025-11-27"):
            cal.window_bounds(D("2025-11-27"), window)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(nyse_sessions_2016_2026()))
def test_windows_nest_and_status_agrees(day: date) -> None:
    s_lo, s_hi = cal.window_bounds(day, "session")
    e_lo, e_hi = cal.window_bounds(day, "extended")
    d_lo, d_hi = cal.window_bounds(day, "day")
    assert d_lo < e_lo < s_lo < s_hi < e_hi < d_hi
    assert cal.market_date(d_lo) == cal.market_date(d_hi) == day
    assert cal.market_status(s_lo) == "open"
    assert cal.market_status(s_hi) == "after_hours"
    assert cal.market_status(e_lo) == "pre_market"
    assert cal.market_status(e_hi) == "closed"
    assert cal.market_status(s_lo - timedelta(microseconds=1)) == "pre_market"


@pytest.mark.parametrize("n", [1.5, 2.0, "1", True])
def test_add_trading_days_names_a_count_that_is_not_a_whole_number(n):
    """It said "tuple indices must be integers or slices, not float" from deep inside."""
    with pytest.raises(TypeError, match=r"add_trading_days: n must be a whole number of sessions, got "):
        cal.add_trading_days(date(2025, 11, 26), n)


def test_add_trading_days_takes_numpy_integers():
    import numpy as np

    assert cal.add_trading_days(date(2025, 11, 26), np.int64(2)) == date(2025, 12, 1)
