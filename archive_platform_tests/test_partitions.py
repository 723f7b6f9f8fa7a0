"""Tests of the NYSE trading-day partitions and the key pickers for schedules and sensors.

The oracle is pandas_market_calendars' NYSE schedule queried here directly; the expected key sets
at particular instants follow from Dagster's documented rule for ``end_offset=1`` (the partition
after the last one that has ended is included) applied to those sessions.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import dagster as dg
import pandas_market_calendars as mcal
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_platform import partitions as P

# the oracle calls pandas-market-calendars directly; its pandas-3 deprecation is not ours
pytestmark = pytest.mark.filterwarnings("ignore:Series.dt.weekday is deprecated")

ET = ZoneInfo("America/New_York")
UTC = timezone.utc
D = date.fromisoformat
START = "2016-01-04"  # first session of 2016


@lru_cache(maxsize=1)
def oracle() -> list[tuple[date, datetime, datetime]]:
    """(session date, open UTC, close UTC) for 2016..2026 from pandas_market_calendars."""
    sched = mcal.get_calendar("NYSE").schedule("2016-01-01", "2026-12-31")
    return [
        (ts.date(), row["market_open"].to_pydatetime(), row["market_close"].to_pydatetime())
        for ts, row in sched.iterrows()
    ]


def oracle_days() -> list[date]:
    return [d for d, _, _ in oracle()]


def et(day: str, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(D(day), time(hh, mm, ss), tzinfo=ET)


@pytest.fixture(scope="module")
def pdef() -> dg.TimeWindowPartitionsDefinition:
    return P.trading_day_partitions(START)


def keys_at(pdef: dg.TimeWindowPartitionsDefinition, now: datetime) -> list[str]:
    return list(pdef.get_partition_keys(current_time=now))


def last_key_at(pdef: dg.TimeWindowPartitionsDefinition, now: datetime) -> str | None:
    with dg.partition_loading_context(effective_dt=now):
        return pdef.get_last_partition_key()


# --- the key set -----------------------------------------------------------------------------


def test_keys_equal_nyse_sessions_2016_2026(pdef) -> None:
    keys = keys_at(pdef, datetime(2027, 1, 5, 12, tzinfo=ET))
    in_range = [k for k in keys if k <= "2026-12-31"]
    assert in_range == [d.isoformat() for d in oracle_days()]
    assert keys[0] == START
    assert pdef.timezone == "America/New_York" and pdef.cron_schedule == "0 0 * * *"
    assert pdef.end_offset == 1


def test_non_sessions_are_not_keys(pdef) -> None:
    for day in ["2025-11-22", "2025-11-23", "2025-11-27", "2025-01-09", "2018-12-05", "2025-04-18"]:
        assert not pdef.has_partition_key(day), day


def test_definition_ends_with_the_calendar(pdef) -> None:
    # beyond CALENDAR_END there are no holiday exclusions, so the definition stops there
    keys = keys_at(pdef, datetime(2040, 1, 1, tzinfo=ET))
    assert keys[-1] == "2036-12-31"


def test_each_key_window_is_its_own_et_day(pdef) -> None:
    # Friday's window closes at Saturday 00:00 ET, not Monday (the weekday-cron behaviour)
    fri = pdef.time_window_for_partition_key("2025-11-21")
    assert (fri.start, fri.end) == (et("2025-11-21", 0), et("2025-11-22", 0))
    # the session before Thanksgiving also ends at its own midnight, not at Friday's
    wed = pdef.time_window_for_partition_key("2025-11-26")
    assert (wed.start, wed.end) == (et("2025-11-26", 0), et("2025-11-27", 0))
    # DST weekends: the Friday before and the Monday after are ordinary 24 h ET days
    for key in ["2025-03-07", "2025-03-10", "2025-10-31", "2025-11-03"]:
        w = pdef.time_window_for_partition_key(key)
        assert w.start == et(key, 0) and w.end == et(key, 0) + timedelta(days=1)
        assert w.end.astimezone(UTC) - w.start.astimezone(UTC) == timedelta(hours=24)


def test_dagster_maps_non_keys_to_a_neighbouring_window(pdef) -> None:
    # Pinned Dagster behaviour (why callers must check has_partition_key first): a Saturday
    # "key" silently yields Monday's window, and a Saturday instant maps to Friday's key.
    sat = pdef.time_window_for_partition_key("2025-11-22")
    assert sat.start == et("2025-11-24", 0)
    assert pdef.get_partition_key_for_timestamp(et("2025-11-22", 12).timestamp()) == "2025-11-21"


# --- what end_offset=1 exposes at given instants ----------------------------------------------


@pytest.mark.parametrize(
    ("now", "last"),
    [
        (et("2025-11-20", 23, 59, 59), "2025-11-20"),
        (et("2025-11-21", 0, 0), "2025-11-21"),  # today's key exists from ET midnight
        (et("2025-11-21", 10, 0), "2025-11-21"),  # during the session
        (et("2025-11-21", 23, 59, 59), "2025-11-21"),
        (et("2025-11-22", 0, 0), "2025-11-24"),  # Friday's window ended: Monday is exposed
        (et("2025-11-22", 12, 0), "2025-11-24"),
        (et("2025-11-23", 12, 0), "2025-11-24"),
        (et("2025-11-24", 10, 0), "2025-11-24"),
        (et("2025-11-26", 23, 59, 59), "2025-11-26"),  # day before the holiday
        (et("2025-11-27", 12, 0), "2025-11-28"),  # Thanksgiving exposes the half day
        (et("2025-11-28", 12, 0), "2025-11-28"),
        (et("2025-03-09", 12, 0), "2025-03-10"),  # spring-forward Sunday
        (et("2025-11-02", 12, 0), "2025-11-03"),  # fall-back Sunday
    ],
)
def test_last_key_at_instants(pdef, now: datetime, last: str) -> None:
    assert last_key_at(pdef, now) == last
    assert keys_at(pdef, now)[-1] == last


def _expected_last_key(now: datetime) -> str:
    # Dagster's end_offset=1 rule on our windows: the session after the last one whose ET day
    # has fully ended (window end <= now).
    days = oracle_days()
    ended = [d for d in days if datetime.combine(d + timedelta(days=1), time(0), tzinfo=ET) <= now]
    return days[len(ended)].isoformat()


@settings(max_examples=40, deadline=None)
@given(st.datetimes(min_value=datetime(2016, 2, 1), max_value=datetime(2026, 11, 30)))
def test_last_key_follows_end_offset_rule_and_includes_today(pdef, naive: datetime) -> None:
    now = naive.replace(tzinfo=UTC)
    keys = keys_at(pdef, now)
    assert keys[-1] == _expected_last_key(now)
    today = now.astimezone(ET).date()
    if today in set(oracle_days()):
        assert today.isoformat() in keys  # intraday runs can always write today's partition


# --- helpers for schedules and sensors -------------------------------------------------------


def _oracle_opened(now: datetime) -> list[date]:
    return [d for d, o, _ in oracle() if o <= now]


def _oracle_closed(now: datetime) -> list[date]:
    return [d for d, _, c in oracle() if c <= now]


INSTANTS = {
    "saturday": et("2025-11-22", 12, 0),
    "sunday": et("2025-11-23", 23, 59),
    "holiday": et("2025-11-27", 12, 0),
    "closure": et("2025-01-09", 10, 0),
    "weekday 00:00": et("2025-11-21", 0, 0),
    "before open": et("2025-11-21", 9, 29, 59),
    "at open": et("2025-11-21", 9, 30),
    "during": et("2025-11-21", 12, 0),
    "at close": et("2025-11-21", 16, 0),
    "after close": et("2025-11-21", 22, 0),
    "half day open": et("2025-11-28", 12, 0),
    "half day after close": et("2025-11-28", 13, 0),
    "spring sunday": datetime(2025, 3, 9, 7, 0, tzinfo=UTC),
    "spring monday before open": datetime(2025, 3, 10, 13, 29, 59, tzinfo=UTC),
    "spring monday open": datetime(2025, 3, 10, 13, 30, tzinfo=UTC),
    "fall sunday": datetime(2025, 11, 2, 6, 0, tzinfo=UTC),
    "fall monday before open": datetime(2025, 11, 3, 14, 29, 59, tzinfo=UTC),
    "fall monday open": datetime(2025, 11, 3, 14, 30, tzinfo=UTC),
}


@pytest.mark.parametrize("name", list(INSTANTS))
def test_requestable_keys_never_in_the_future(pdef, name: str) -> None:
    now = INSTANTS[name]
    opened = _oracle_opened(now)
    got = P.requestable_keys(pdef, now, 5)
    assert got == [d.isoformat() for d in opened[-5:]]
    assert all(pdef.has_partition_key(k) for k in got)
    # the key end_offset exposes before its session opens must never be handed out
    exposed = keys_at(pdef, now)[-1]
    if D(exposed) > opened[-1]:
        assert exposed not in got


def test_requestable_keys_spot_values(pdef) -> None:
    assert P.requestable_keys(pdef, INSTANTS["saturday"], 2) == ["2025-11-20", "2025-11-21"]
    assert P.requestable_keys(pdef, INSTANTS["holiday"], 2) == ["2025-11-25", "2025-11-26"]
    assert P.requestable_keys(pdef, INSTANTS["before open"], 1) == ["2025-11-20"]
    assert P.requestable_keys(pdef, INSTANTS["at open"], 1) == ["2025-11-21"]
    assert P.requestable_keys(pdef, INSTANTS["spring monday before open"], 1) == ["2025-03-07"]
    assert P.requestable_keys(pdef, INSTANTS["fall monday open"], 1) == ["2025-11-03"]
    assert P.requestable_keys(pdef, INSTANTS["half day after close"], 1) == ["2025-11-28"]
    assert P.requestable_keys(pdef, INSTANTS["during"], 0) == []
    with pytest.raises(ValueError, match="lookback must be >= 0"):
        P.requestable_keys(pdef, INSTANTS["during"], -1)


def test_requestable_keys_never_before_start() -> None:
    pdef = P.trading_day_partitions("2025-11-20")
    assert P.requestable_keys(pdef, et("2025-11-24", 10), 10) == [
        "2025-11-20", "2025-11-21", "2025-11-24"
    ]
    assert P.requestable_keys(pdef, et("2025-11-20", 9, 0), 10) == []


@settings(max_examples=60, deadline=None)
@given(
    st.datetimes(min_value=datetime(2016, 3, 1), max_value=datetime(2026, 11, 30)),
    st.integers(min_value=1, max_value=30),
)
def test_helpers_match_oracle_at_any_instant(pdef, naive: datetime, lookback: int) -> None:
    now = naive.replace(tzinfo=UTC)
    opened, closed = _oracle_opened(now), _oracle_closed(now)
    assert P.requestable_keys(pdef, now, lookback) == [d.isoformat() for d in opened[-lookback:]]
    assert P.latest_closed_session(now) == closed[-1]
    assert P.latest_opened_session(now) == opened[-1]
    today = now.astimezone(ET).date()
    expected_current = today.isoformat() if opened[-1] == today else None
    assert P.current_session_key(now) == expected_current


@pytest.mark.parametrize(
    ("now", "current", "closed"),
    [
        (et("2025-11-21", 9, 29, 59), None, "2025-11-20"),
        (et("2025-11-21", 9, 30), "2025-11-21", "2025-11-20"),
        (et("2025-11-21", 15, 59, 59), "2025-11-21", "2025-11-20"),
        (et("2025-11-21", 16, 0), "2025-11-21", "2025-11-21"),
        (et("2025-11-21", 23, 59, 59), "2025-11-21", "2025-11-21"),
        (et("2025-11-22", 0, 0), None, "2025-11-21"),
        (et("2025-11-28", 12, 59, 59), "2025-11-28", "2025-11-26"),
        (et("2025-11-28", 13, 0), "2025-11-28", "2025-11-28"),
        (et("2025-11-27", 12, 0), None, "2025-11-26"),
    ],
)
def test_current_and_latest_closed_session(now: datetime, current, closed: str) -> None:
    assert P.current_session_key(now) == current
    assert P.latest_closed_session(now) == D(closed)


@pytest.mark.parametrize(
    "fn", [P.current_session_key, P.latest_closed_session, P.latest_opened_session]
)
def test_helpers_reject_naive_datetimes(fn) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        fn(datetime(2025, 11, 21, 10, 0))


# --- start date ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2025-11-22", "start_date argument 2025-11-22 is not an NYSE trading day .*2025-11-24"),
        ("2025-01-09", "2025-01-09 is not an NYSE trading day"),
        ("yesterday", "'yesterday' is not an ISO date"),
        ("2025-13-01", "'2025-13-01' is not an ISO date"),
        ("20250102", "'20250102' is not an ISO date"),
        (date(1990, 1, 2), "outside the NYSE calendar's range"),
        (datetime(2025, 1, 2, tzinfo=UTC), "must be a date, not a datetime"),
        (20250102, "must be a YYYY-MM-DD string or a date"),
    ],
)
def test_invalid_start_date(value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        P.trading_day_partitions(value)


def test_start_from_argument_date_or_string() -> None:
    assert P.trading_day_partitions(date(2025, 11, 20)).get_first_partition_key() == "2025-11-20"
    assert P.trading_day_partitions("2025-11-20") is P.trading_day_partitions(date(2025, 11, 20))


def test_start_from_env_read_at_call_time(monkeypatch) -> None:
    monkeypatch.setenv("ARCHIVE_START_DATE", "2025-06-02")
    assert P.trading_day_partitions().get_first_partition_key() == "2025-06-02"
    monkeypatch.setenv("ARCHIVE_START_DATE", "2025-06-03")
    assert P.trading_day_partitions().get_first_partition_key() == "2025-06-03"
    # an explicit argument wins over the environment
    assert P.trading_day_partitions("2025-06-04").get_first_partition_key() == "2025-06-04"


def test_default_start_when_env_unset_or_blank(monkeypatch) -> None:
    monkeypatch.delenv("ARCHIVE_START_DATE", raising=False)
    assert P.trading_day_partitions().get_first_partition_key() == "2024-01-02"
    monkeypatch.setenv("ARCHIVE_START_DATE", "  ")
    assert P.trading_day_partitions().get_first_partition_key() == "2024-01-02"


def test_invalid_env_start_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("ARCHIVE_START_DATE", "2024-01-01")  # New Year's Day
    with pytest.raises(ValueError, match="variable ARCHIVE_START_DATE 2024-01-01 is not an NYSE"):
        P.trading_day_partitions()


def test_build_schedule_from_partitioned_job_requests_unopened_sessions() -> None:
    # Pinned Dagster behaviour, the reason schedules must use requestable_keys: the stock
    # partitioned-job schedule ticks daily at 00:00 ET and asks for the last key, which with
    # end_offset=1 is a session that has not opened yet, on weekends and holidays too.
    pdef = P.trading_day_partitions("2025-11-03")

    @dg.asset(partitions_def=pdef)
    def probe() -> None: ...

    job = dg.define_asset_job("probe_job", selection=[probe])
    defs = dg.Definitions(
        assets=[probe], jobs=[job], schedules=[dg.build_schedule_from_partitioned_job(job)]
    )
    schedule = defs.resolve_schedule_def("probe_job_schedule")
    assert schedule.cron_schedule == "0 0 * * *"
    assert schedule.execution_timezone == "America/New_York"

    def requested(now: datetime) -> list[str]:
        result = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=now))
        return [r.partition_key for r in result.run_requests or []]

    friday_midnight = et("2025-11-21", 0)
    assert requested(friday_midnight) == ["2025-11-21"]
    assert P.requestable_keys(pdef, friday_midnight, 1) == ["2025-11-20"]
    assert requested(et("2025-11-22", 0)) == ["2025-11-24"]  # Saturday asks for Monday
    assert requested(et("2025-11-27", 0)) == ["2025-11-28"]  # Thanksgiving asks for Friday
    assert P.requestable_keys(pdef, et("2025-11-22", 0), 1) == ["2025-11-21"]


def test_demo_session_waits_for_the_executions_window():
    """Bug: `./run demo` between 16:00 and 20:00 ET picked today's session and failed on trades."""
    from archive_platform.datasets import DATASETS
    from archive_platform.partitions import latest_closed_session, latest_complete_session

    et = ZoneInfo("America/New_York")
    after_close = datetime(2025, 11, 26, 16, 25, tzinfo=et)
    assert latest_closed_session(after_close) == date(2025, 11, 26)
    assert latest_complete_session(after_close, DATASETS) == date(2025, 11, 25)
    after_executions = datetime(2025, 11, 26, 20, 0, tzinfo=et)
    assert latest_complete_session(after_executions, DATASETS) == date(2025, 11, 26)
    # a half day's executions window still ends at 20:00 ET
    assert latest_complete_session(datetime(2025, 11, 28, 19, 59, tzinfo=et), DATASETS) == date(2025, 11, 26)
