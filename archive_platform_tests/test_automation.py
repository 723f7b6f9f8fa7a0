"""Schedules and sensors evaluated at chosen instants: exact run requests, nothing out of window."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import dagster as dg
import pytest

from archive_platform import calendar
from archive_platform.defs import automation
from archive_platform.defs.assets import TAG_MODE, TAG_SINCE, TAG_SNAPSHOT, TAG_UNTIL
from archive_platform.defs.resources import SourcesResource
from archive_platform.datasets import DATASETS
from archive_platform.schemas import ArchiveType
from archive_platform_tests.dagster_helpers import defs_for, run_job

ET = calendar.ET
UTC = timezone.utc


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    d = defs_for(tmp_path_factory.mktemp("auto"))
    _DEFS[:] = [d]
    return d


def _sched(defs, name):
    return next(s for s in defs.schedules if s.name == name)


def _sensor(defs, name):
    return next(s for s in defs.sensors if s.name == name)


def _tick(schedule, at: datetime, defs=None):
    repo = (defs or _DEFS[0]).get_repository_def()
    ctx = dg.build_schedule_context(scheduled_execution_time=at, repository_def=repo)
    return schedule.evaluate_tick(ctx)


_DEFS: list = []


def _cron_ticks_15(day: date) -> list[datetime]:
    """The instants `*/15 9-16 * * 1-5` fires on an ET day (written out independently)."""
    if day.weekday() >= 5:
        return []
    return [datetime.combine(day, time(h, m), tzinfo=ET) for h in range(9, 17) for m in (0, 15, 30, 45)]


def _snapshot_requests(defs, day: date):
    sched = _sched(defs, "options_snapshots")
    assert sched.cron_schedule == "*/15 9-16 * * 1-5" and sched.execution_timezone == "America/New_York"
    out = []
    for at in _cron_ticks_15(day):
        for rr in _tick(sched, at).run_requests or []:
            out.append(rr)
    return out


@pytest.mark.parametrize(
    "day, n, first_utc, last_utc",
    [
        (date(2025, 11, 26), 27, "2025-11-26T14:30:00+00:00", "2025-11-26T21:00:00+00:00"),  # full day, EST
        (date(2025, 11, 28), 15, "2025-11-28T14:30:00+00:00", "2025-11-28T18:00:00+00:00"),  # half day 13:00
        (date(2025, 3, 10), 27, "2025-03-10T13:30:00+00:00", "2025-03-10T20:00:00+00:00"),  # after spring forward
        (date(2025, 11, 3), 27, "2025-11-03T14:30:00+00:00", "2025-11-03T21:00:00+00:00"),  # after fall back
        (date(2025, 11, 27), 0, None, None),  # Thanksgiving
        (date(2025, 3, 9), 0, None, None),  # Sunday of the spring DST switch
        (date(2025, 11, 2), 0, None, None),  # Sunday of the fall DST switch
        (date(2025, 1, 9), 0, None, None),  # unscheduled closure (national day of mourning)
    ],
)
def test_options_schedule_requests_exactly_the_snapshot_grid(defs, day, n, first_utc, last_utc):
    reqs = _snapshot_requests(defs, day)
    assert len(reqs) == n
    if n:
        assert {r.partition_key for r in reqs} == {day.isoformat()}
        assert all(r.tags[TAG_MODE] == "snapshot" for r in reqs)
        times = [r.tags[TAG_SNAPSHOT] for r in reqs]
        assert times[0] == first_utc and times[-1] == last_utc
        assert len(set(r.run_key for r in reqs)) == n  # one run per snapshot, re-ticks deduplicated


def test_options_schedule_skips_with_a_reason(defs):
    res = _tick(_sched(defs, "options_snapshots"), datetime(2025, 11, 26, 9, 15, tzinfo=ET))
    assert not res.run_requests and "not a snapshot instant" in res.skip_message


@pytest.mark.parametrize(
    "at, expected",
    [
        (datetime(2025, 11, 26, 7, 0, tzinfo=ET), "2025-11-26T12:00:00+00:00"),
        (datetime(2025, 11, 26, 19, 0, tzinfo=ET), "2025-11-27T00:00:00+00:00"),
        (datetime(2025, 3, 10, 7, 0, tzinfo=ET), "2025-03-10T11:00:00+00:00"),  # EDT
        (datetime(2025, 11, 27, 7, 0, tzinfo=ET), None),  # holiday
        (datetime(2025, 11, 29, 19, 0, tzinfo=ET), None),  # Saturday
    ],
)
def test_iv_rank_schedule(defs, at, expected):
    res = _tick(_sched(defs, "iv_rank_snapshots"), at)
    if expected is None:
        assert not res.run_requests
    else:
        (rr,) = res.run_requests
        assert rr.partition_key == at.date().isoformat() and rr.tags[TAG_SNAPSHOT] == expected


def test_iv_rank_times_are_configurable(tmp_path):
    d = defs_for(tmp_path, ARCHIVE_IV_RANK_TIMES="08:30,18:00")
    s = _sched(d, "iv_rank_snapshots")
    assert sorted(s.cron_schedule) == ["0 18 * * 1-5", "30 8 * * 1-5"]
    (rr,) = _tick(s, datetime(2025, 11, 26, 8, 30, tzinfo=ET), d).run_requests
    assert rr.tags[TAG_SNAPSHOT] == "2025-11-26T13:30:00+00:00"


@pytest.mark.parametrize(
    "at, key",
    [
        (datetime(2025, 11, 26, 20, 15, tzinfo=ET), "2025-11-26"),
        (datetime(2025, 11, 28, 20, 15, tzinfo=ET), "2025-11-28"),  # half day
        (datetime(2025, 11, 27, 20, 15, tzinfo=ET), None),  # Thanksgiving
        (datetime(2025, 1, 9, 20, 15, tzinfo=ET), None),  # closure
    ],
)
def test_end_of_day_schedule(defs, at, key):
    res = _tick(_sched(defs, "end_of_day"), at)
    if key is None:
        assert not res.run_requests
    else:
        (rr,) = res.run_requests
        assert rr.partition_key == key and rr.tags[TAG_MODE] == "eod"


def _eval_sensor(sensor, instance, defs, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return sensor.evaluate_tick(ctx)


@pytest.mark.parametrize(
    "now, expect",
    [
        (datetime(2025, 11, 26, 10, 1, tzinfo=ET), "2025-11-26"),
        (datetime(2025, 3, 10, 9, 30, tzinfo=ET), "2025-03-10"),
        (datetime(2025, 11, 28, 12, 59, tzinfo=ET), "2025-11-28"),
        (datetime(2025, 11, 28, 13, 0, tzinfo=ET), "2025-11-28"),  # half day: after hours polled
        (datetime(2025, 11, 26, 16, 27, tzinfo=ET), "2025-11-26"),  # ETF options trade to 16:15
        (datetime(2025, 11, 26, 20, 0, tzinfo=ET), None),  # after hours end at 20:00 ET
        (datetime(2025, 11, 26, 9, 29, tzinfo=ET), None),  # pre-market
        (datetime(2025, 11, 27, 11, 0, tzinfo=ET), None),  # holiday
        (datetime(2025, 11, 29, 11, 0, tzinfo=ET), None),  # Saturday
    ],
)
def test_flow_sensor_polls_only_while_open(defs, monkeypatch, now, expect):
    monkeypatch.setattr(automation, "utcnow", lambda: now.astimezone(UTC))
    with dg.instance_for_test() as instance:
        res = _eval_sensor(_sensor(defs, "uw_flow_poll"), instance, defs)
    if expect is None:
        assert not res.run_requests and res.cursor is None
    else:
        (rr,) = res.run_requests
        assert rr.partition_key == expect
        assert rr.tags[TAG_MODE] == "poll" and TAG_SINCE not in rr.tags
        assert rr.tags[TAG_UNTIL] == now.astimezone(UTC).isoformat() == res.cursor


def test_flow_sensor_resumes_from_its_cursor(defs, monkeypatch):
    t1 = datetime(2025, 11, 26, 15, 30, tzinfo=UTC)
    monkeypatch.setattr(automation, "utcnow", lambda: t1)
    with dg.instance_for_test() as instance:
        sensor = _sensor(defs, "uw_flow_poll")
        (rr,) = _eval_sensor(sensor, instance, defs, cursor="2025-11-26T15:20:00+00:00").run_requests
        # a restart after ten minutes resumes from the cursor, with a small overlap
        assert rr.tags[TAG_SINCE] == "2025-11-26T15:18:00+00:00"
        # a cursor from yesterday starts today's polls at the open
        (rr,) = _eval_sensor(sensor, instance, defs, cursor="2025-11-25T20:59:00+00:00").run_requests
        assert TAG_SINCE not in rr.tags


def _with_clock(defs, iso: str):
    return dg.Definitions(
        assets=defs.assets, jobs=defs.jobs, schedules=defs.schedules, sensors=defs.sensors,
        resources={**defs.resources, "sources": SourcesResource(symbols=["SPY"], as_of=iso)},
    )


def test_recovery_sensor_requests_exactly_the_missing_and_failed_partitions(tmp_path, monkeypatch):
    d = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY", ARCHIVE_RECOVERY_LOOKBACK="4")
    with dg.instance_for_test() as instance:
        for day in ("2025-11-24", "2025-11-25"):
            assert run_job(d, "archive_all", instance, partition_key=day).success
        # 2025-11-26 archived at 11:00 ET: bars and executions fail (session not over)
        partial = run_job(_with_clock(d, "2025-11-26T11:00:00-05:00"), "archive_all", instance,
                          partition_key="2025-11-26", raise_on_error=False)
        assert not partial.success
        # Saturday noon: the last four sessions are 11-24, 11-25, 11-26 and the half day 11-28
        monkeypatch.setattr(automation, "utcnow", lambda: datetime(2025, 11, 29, 17, 0, tzinfo=UTC))
        res = _eval_sensor(_sensor(d, "recover_missing_partitions"), instance, d)
    got = {rr.partition_key: sorted(k.to_user_string() for k in rr.asset_selection) for rr in res.run_requests}
    assert got == {
        # bars and executions failed; the snapshot datasets hold only what was due by 11:00
        # (degraded, and a new fetch completes them); flow alerts have no expected count; the
        # datasets derived from any of those are rebuilt with them
        "2025-11-26": ["candles", "daily_bars", "daily_iv", "gex", "iv_rank", "market_regime",
                       "options", "stocks_1m", "trades", "vix"],
        # every NYSE dataset of the half day (UTC days have their own sensor)
        "2025-11-28": sorted(d.name for d in DATASETS if d.calendar_name == "nyse"),
    }
    assert all(rr.tags[TAG_MODE] == "day" for rr in res.run_requests)


def test_recovery_never_requests_today_the_future_or_before_the_start(tmp_path, monkeypatch):
    d = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY", ARCHIVE_RECOVERY_LOOKBACK="10",
                 ARCHIVE_START_DATE="2025-11-25")
    with dg.instance_for_test() as instance:
        # Wednesday 11:00 ET during the session: 11-25 only (start), not today, not 11-28
        monkeypatch.setattr(automation, "utcnow", lambda: datetime(2025, 11, 26, 16, 0, tzinfo=UTC))
        res = _eval_sensor(_sensor(d, "recover_missing_partitions"), instance, d)
        assert [rr.partition_key for rr in res.run_requests] == ["2025-11-25"]
        # Thanksgiving: still nothing after 11-26
        monkeypatch.setattr(automation, "utcnow", lambda: datetime(2025, 11, 27, 23, 0, tzinfo=UTC))
        res = _eval_sensor(_sensor(d, "recover_missing_partitions"), instance, d)
        assert [rr.partition_key for rr in res.run_requests] == ["2025-11-25", "2025-11-26"]


def test_recovery_skips_live_only_sources(tmp_path, monkeypatch):
    # Polygon: chain snapshots are live-only, but its one-minute bars can be fetched again
    d = defs_for(tmp_path, ARCHIVE_SOURCE_OPTIONS="polygon", ARCHIVE_SOURCE_STOCKS_1M="polygon",
                 POLYGON_API_KEY="k", ARCHIVE_SYMBOLS="SPY", ARCHIVE_RECOVERY_LOOKBACK="2")
    sensor = _sensor(d, "recover_missing_partitions")
    keys = {k.to_user_string() for k in sensor.asset_selection.resolve(d.resolve_asset_graph())}
    # gex is derived from those options, so it cannot be recovered either; the rest can
    # and neither can daily_iv, derived from options alone (market_regime also reads bars and VIX)
    assert keys == {d.name for d in DATASETS if d.calendar_name == "nyse"} - {"options", "gex", "daily_iv"}


def test_pure_decisions_agree_with_the_calendar():
    # every snapshot instant of a year of sessions maps back to its own session and grid
    for day in calendar.trading_days(date(2025, 1, 1), date(2025, 12, 31)):
        grid = calendar.snapshot_times(day)
        assert automation.snapshot_request(grid[0], timedelta(minutes=15)) == (day.isoformat(), grid[0])
        assert automation.snapshot_request(grid[-1] + timedelta(minutes=15), timedelta(minutes=15)) is None
