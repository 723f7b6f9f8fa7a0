"""Every schedule ticked as the daemon ticks it: Dagster's own cron iterator over whole days
around the 2026 DST switches, Thanksgiving and its half day, Christmas Eve and Christmas, and a
weekend, each tick evaluated with build_schedule_context. The run requests are compared with
instants written out independently here (UTC), and every schedule and sensor with the docs."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from dagster._utils.schedules import schedule_execution_time_iterator

from archive_platform import calendar
from archive_platform.defs.assets import TAG_MODE, TAG_SNAPSHOT
from archive_platform_tests.dagster_helpers import defs_for

UTC = timezone.utc
ET = calendar.ET
DOCS = Path(__file__).resolve().parents[1] / "docs" / "orchestration.md"


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    return defs_for(tmp_path_factory.mktemp("sched"), ARCHIVE_CRYPTO_CAPTURE="1")


def _requests(defs, name: str, start: datetime, end: datetime):
    """(tick, run request) of every tick of ``name`` in [start, end), evaluated like the daemon."""
    sched = defs.resolve_schedule_def(name)
    repo = defs.get_repository_def()
    out = []
    for tick in schedule_execution_time_iterator(start.timestamp(), sched.cron_schedule, sched.execution_timezone):
        if tick >= end:
            break
        res = sched.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick, repository_def=repo))
        out += [(tick, rr) for rr in res.run_requests or []]
        if not res.run_requests:
            assert res.skip_message, f"{name} at {tick}: neither a run nor a reason"
    return out


def _utc(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC)


# (day, first snapshot, last snapshot, snapshots) in UTC, written out by hand
SESSIONS = [
    (date(2026, 3, 6), _utc(date(2026, 3, 6), 14, 30), _utc(date(2026, 3, 6), 21, 0), 27),  # EST
    (date(2026, 3, 9), _utc(date(2026, 3, 9), 13, 30), _utc(date(2026, 3, 9), 20, 0), 27),  # EDT
    (date(2026, 10, 30), _utc(date(2026, 10, 30), 13, 30), _utc(date(2026, 10, 30), 20, 0), 27),
    (date(2026, 11, 2), _utc(date(2026, 11, 2), 14, 30), _utc(date(2026, 11, 2), 21, 0), 27),  # EST again
    (date(2026, 11, 27), _utc(date(2026, 11, 27), 14, 30), _utc(date(2026, 11, 27), 18, 0), 15),  # half day
    (date(2026, 12, 24), _utc(date(2026, 12, 24), 14, 30), _utc(date(2026, 12, 24), 18, 0), 15),  # half day
]
CLOSED = [date(2026, 3, 8), date(2026, 11, 1), date(2026, 11, 26), date(2026, 12, 25), date(2026, 12, 26)]


@pytest.mark.parametrize("name", ["options_snapshots", "grid_snapshots"])
def test_snapshot_schedules_request_the_session_grid_only(defs, name):
    for day, first, last, n in SESSIONS:
        got = _requests(defs, name, datetime.combine(day, time(0), tzinfo=ET),
                        datetime.combine(day + timedelta(days=1), time(0), tzinfo=ET))
        snaps = [datetime.fromisoformat(rr.tags[TAG_SNAPSHOT]) for _, rr in got]
        assert len(snaps) == n and snaps[0] == first and snaps[-1] == last, day
        assert snaps == [first + timedelta(minutes=15) * i for i in range(n)], day
        assert {rr.partition_key for _, rr in got} == {day.isoformat()}
        assert all(tick == datetime.fromisoformat(rr.tags[TAG_SNAPSHOT]) for tick, rr in got)  # on time
        assert len({rr.run_key for _, rr in got}) == n
    for day in CLOSED:
        assert _requests(defs, name, datetime.combine(day, time(0), tzinfo=ET),
                         datetime.combine(day + timedelta(days=1), time(0), tzinfo=ET)) == [], day


def test_daily_nyse_schedules_target_their_own_session(defs):
    start, end = datetime(2026, 11, 23, tzinfo=ET), datetime(2026, 11, 30, tzinfo=ET)  # Thanksgiving week
    eod = [(t.astimezone(UTC), rr.partition_key, rr.tags[TAG_MODE]) for t, rr in _requests(defs, "end_of_day", start, end)]
    assert eod == [(_utc(date(2026, 11, d), 1, 15) + timedelta(days=1), f"2026-11-{d}", "eod") for d in (23, 24, 25, 27)]
    iv = [(rr.partition_key, rr.tags[TAG_SNAPSHOT]) for _, rr in _requests(defs, "iv_rank_snapshots", start, end)]
    assert iv == [(f"2026-11-{d}", x) for d in (23, 24, 25, 27)
                  for x in (f"2026-11-{d}T12:00:00+00:00", f"2026-11-{d + 1}T00:00:00+00:00")]
    # the spring switch: 07:00 ET is 11:00 UTC from Monday 2026-03-09
    iv = [rr.tags[TAG_SNAPSHOT] for _, rr in _requests(defs, "iv_rank_snapshots", datetime(2026, 3, 6, tzinfo=ET),
                                                        datetime(2026, 3, 10, tzinfo=ET))]
    assert iv == ["2026-03-06T12:00:00+00:00", "2026-03-07T00:00:00+00:00",
                  "2026-03-09T11:00:00+00:00", "2026-03-09T23:00:00+00:00"]


def test_the_utc_schedule_archives_every_closed_utc_day_weekends_included(defs):
    got = [(t, rr.partition_key) for t, rr in _requests(defs, "archive_utc_daily", datetime(2026, 11, 26, tzinfo=UTC),
                                                        datetime(2026, 12, 1, 1, 0, tzinfo=UTC))]
    assert got == [(_utc(date(2026, 11, d), 0, 30), f"2026-11-{d - 1}") for d in range(26, 31)] + [
        (_utc(date(2026, 12, 1), 0, 30), "2026-11-30")]
    # the daily schedule's tick is after the day closed, whatever the ET offset (DST irrelevant)
    assert all(t >= datetime.fromisoformat(k).replace(tzinfo=UTC) + timedelta(days=1) for t, k in got)


def test_every_schedule_and_sensor_is_documented_with_its_cron(defs):
    text = DOCS.read_text()
    table = text[text.index("## Schedules and sensors"):text.index('### What "missing" means')]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)`[^|]*\| ([^|]+) \|", table, re.M)}
    assert set(rows) == {s.name for s in defs.schedules} | {s.name for s in defs.sensors}
    for s in defs.schedules:
        cron = s.cron_schedule if isinstance(s.cron_schedule, list) else [s.cron_schedule]
        fires = rows[s.name]
        assert ("(UTC)" in fires) == (s.execution_timezone == "UTC"), s.name
        if s.execution_timezone != "UTC":
            assert s.execution_timezone == "America/New_York" and "(ET" in fires, s.name
        for c in cron:
            minute, hour, _, _, dow = c.split()
            if "cron `" in fires:
                assert f"`{c}`" in fires, s.name
            else:
                assert f"{int(hour):02d}:{int(minute):02d}" in fires, s.name
                assert ("weekdays" in fires) == (dow == "1-5"), s.name
    for s in defs.sensors:
        every = rows[s.name]
        want = "every 60 s" if s.minimum_interval_seconds == 60 else f"every {s.minimum_interval_seconds // 60} min"
        assert want in every, s.name
