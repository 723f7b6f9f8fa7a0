"""Sensors as an operator relies on them: evaluated with Dagster's build_sensor_context against a
real instance holding real run records (in flight, failed, died), asserting on the run requests.

* the NYSE recovery window is ARCHIVE_RECOVERY_LOOKBACK closed sessions, during a session too;
* the UTC recovery leaves the day just closed to ``archive_utc_daily`` (no second run of a day),
  and requests again a day whose run died;
* the capture heartbeat sensor runs ``capture_health`` once per incident, not once a minute;
* a failed flow poll's window is fetched again by the next poll, so no alert is lost;
* ``refresh_crypto_derived`` leaves a day to the run in flight that is rebuilding it.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from archive_platform import calendar
from archive_platform.crypto.spool import heartbeat_path
from archive_platform.datasets import DATASETS
from archive_platform.defs import automation
from archive_platform.defs import crypto as crypto_defs
from archive_platform.defs.assets import TAG_MODE, TAG_SINCE, TAG_UNTIL
from archive_platform.defs.resources import SourcesResource
from archive_platform.schemas import ArchiveType
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import defs_for, run_job

UTC = timezone.utc
ET = calendar.ET
NYSE = sorted(d.name for d in DATASETS if d.calendar_name == "nyse")


def _sensor_tick(defs, name, instance, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return defs.resolve_sensor_def(name).evaluate_tick(ctx)


def _in_flight(instance, defs, job: str, key: str, assets, status=dg.DagsterRunStatus.STARTED, tags=None):
    """A run of ``job`` over ``assets`` of partition ``key`` that has not finished (its planned
    materializations make Dagster show the partitions in progress)."""
    return instance.create_run_for_job(
        defs.resolve_job_def(job), run_config={}, status=status,
        tags={"dagster/partition": key, **(tags or {})},
        asset_selection=frozenset(dg.AssetKey(a) for a in assets))


# -- NYSE recovery window ------------------------------------------------------------------------


@pytest.mark.parametrize("now, want", [
    (datetime(2025, 11, 26, 8, 0, tzinfo=ET), ["2025-11-25"]),  # before the open
    (datetime(2025, 11, 26, 11, 0, tzinfo=ET), ["2025-11-25"]),  # the session runs
    (datetime(2025, 11, 26, 21, 0, tzinfo=ET), ["2025-11-25"]),  # after the close, before midnight
    (datetime(2025, 11, 27, 12, 0, tzinfo=ET), ["2025-11-26"]),  # Thanksgiving
    (datetime(2025, 11, 29, 12, 0, tzinfo=ET), ["2025-11-28"]),  # Saturday: the half day
])
def test_recovery_window_is_lookback_closed_sessions_even_while_a_session_runs(tmp_path, monkeypatch, now, want):
    # ARCHIVE_RECOVERY_LOOKBACK=1 is "the last closed session": during Wednesday's session that
    # is Tuesday (it used to be nothing at all from the open to midnight: the window counted
    # today's running session and then dropped it)
    d = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY", ARCHIVE_RECOVERY_LOOKBACK="1")
    monkeypatch.setattr(automation, "utcnow", lambda: now.astimezone(UTC))
    with dg.instance_for_test() as instance:
        res = _sensor_tick(d, "recover_missing_partitions", instance)
    got = {rr.partition_key: sorted(k.to_user_string() for k in rr.asset_selection) for rr in res.run_requests}
    assert got == {k: NYSE for k in want}
    assert automation.recovery_candidates(d.resolve_job_def("archive_all").partitions_def, now, 3) == \
        [x.isoformat() for x in calendar.last_trading_days(3, as_of=calendar.previous_trading_day(now.date()))]


# -- UTC recovery and the daily schedule ------------------------------------------------------------


def test_utc_recovery_leaves_the_day_just_closed_to_the_daily_schedule(tmp_path, monkeypatch):
    d = defs_for(tmp_path, ARCHIVE_RECOVERY_LOOKBACK="3")
    sched = d.resolve_schedule_def("archive_utc_daily")
    with dg.instance_for_test() as instance:
        # 00:10 UTC: 11-30 has just closed; archive_utc_daily requests it at 00:30
        monkeypatch.setattr(crypto_defs, "utcnow", lambda: datetime(2025, 12, 1, 0, 10, tzinfo=UTC))
        early = _sensor_tick(d, "recover_utc_days", instance)
        assert [r.partition_key for r in early.run_requests] == ["2025-11-28", "2025-11-29"]
        tick = sched.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2025, 12, 1, 0, 30, tzinfo=UTC),
            repository_def=d.get_repository_def()))
        (daily,) = tick.run_requests
        assert daily.partition_key == "2025-11-30" and daily.run_key == "utc-daily:2025-11-30"
        # 00:50: the schedule's run is in flight: still not requested a second time
        utc = sorted(x.name for x in DATASETS if x.calendar_name == "utc")
        # (a run of the captured datasets only: the derived ones wait for their inputs too)
        _in_flight(instance, d, "archive_all_utc", "2025-11-30",
                   ["capture_gaps", "crypto_trades", "orderbook_l2"], tags=daily.tags)
        monkeypatch.setattr(crypto_defs, "utcnow", lambda: datetime(2025, 12, 1, 0, 50, tzinfo=UTC))
        later = _sensor_tick(d, "recover_utc_days", instance)
        assert {r.partition_key: sorted(k.to_user_string() for k in r.asset_selection)
                for r in later.run_requests} == {"2025-11-28": utc, "2025-11-29": utc}
    with dg.instance_for_test() as instance:  # no schedule run at all (daemon down at 00:30)
        later = _sensor_tick(d, "recover_utc_days", instance)
        assert [r.partition_key for r in later.run_requests] == ["2025-11-28", "2025-11-29", "2025-11-30"]


def test_utc_recovery_requests_a_day_whose_run_died(tmp_path, monkeypatch):
    # a run that never got past STARTING (its worker never came up) holds the day "in progress"
    # for ever unless something tells it apart from a live run: the ledger calls it LOST
    d = defs_for(tmp_path, ARCHIVE_RECOVERY_LOOKBACK="3", ARCHIVE_START_DATE="2025-01-02")
    with dg.instance_for_test() as instance:
        now = datetime.now(UTC) + timedelta(seconds=instance.run_monitoring_start_timeout_seconds + 60)
        day = (now.date() - timedelta(days=2)).isoformat()
        _in_flight(instance, d, "archive_all_utc", day, ["capture_gaps"], status=dg.DagsterRunStatus.STARTING)
        monkeypatch.setattr(crypto_defs, "utcnow", lambda: now)
        res = _sensor_tick(d, "recover_utc_days", instance)
        by_day = {r.partition_key: {k.to_user_string() for k in r.asset_selection} for r in res.run_requests}
        assert "capture_gaps" in by_day[day]
        # the same run seen before its start timeout is alive: the day is left to it
        monkeypatch.setattr(crypto_defs, "utcnow", lambda: datetime.now(UTC))
        res = _sensor_tick(d, "recover_utc_days", instance)
        assert "capture_gaps" not in {k.to_user_string() for r in res.run_requests
                                      if r.partition_key == day for k in r.asset_selection}


# -- capture heartbeat ------------------------------------------------------------------------------


def _beat(root, now: datetime, *, silent: str | None = None) -> None:
    """A heartbeat written at ``now`` by a live service; ``silent``: a stream quiet for 10 min."""
    path = heartbeat_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = (now - timedelta(hours=2)).isoformat()
    streams = {s: {"last_event": now.isoformat(), "last_receive": now.isoformat()}
               for s in ("binance:aggTrade:BTCUSDT", "binance:depth20:BTCUSDT")}
    if silent:
        quiet = (now - timedelta(minutes=10)).isoformat()
        streams[silent] = {"last_event": quiet, "last_receive": quiet}
    path.write_text(json.dumps({"pid": 4242, "started": started, "written_at": now.isoformat(),
                                "streams": streams, "expected_streams": sorted(streams)}))


def test_heartbeat_sensor_runs_capture_health_once_per_incident_not_every_tick(tmp_path, monkeypatch):
    d = defs_for(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1")
    live = tmp_path / "live"
    t0 = datetime(2025, 11, 29, 12, 0, tzinfo=UTC)
    cursor, keys = None, []
    instance = dg.DagsterInstance.ephemeral()

    def tick(at: datetime, **beat):
        nonlocal cursor
        if beat.get("gone"):
            heartbeat_path(live).unlink(missing_ok=True)
        else:
            _beat(live, at, **beat)  # a live service rewrites it every 5 s
        monkeypatch.setattr(crypto_defs, "utcnow", lambda: at)
        res = _sensor_tick(d, "capture_heartbeat", instance, cursor)
        cursor = res.cursor
        keys.extend(r.run_key for r in res.run_requests)
        return res

    assert not tick(t0).run_requests
    # one stream goes silent under a live service: one run, then nothing for the next hour
    (first,) = tick(t0 + timedelta(minutes=1), silent="binance:depth20:ETHUSDT").run_requests
    assert "binance:depth20:ETHUSDT: no message for 600 s" in first.tags["archive/capture_problem"]
    quiet = [tick(t0 + timedelta(minutes=m), silent="binance:depth20:ETHUSDT") for m in range(2, 62)]
    assert all(not r.run_requests for r in quiet)
    assert "same problems since" in quiet[-1].skip_message and "depth20:ETHUSDT" in quiet[-1].skip_message
    # another stream is silent instead: the problems changed, a new run names it
    (second,) = tick(t0 + timedelta(minutes=63), silent="binance:aggTrade:ETHUSDT").run_requests
    # healthy again, then the heartbeat file disappears twice: each incident is alerted
    assert not tick(t0 + timedelta(minutes=64)).run_requests
    (gone,) = tick(t0 + timedelta(minutes=65), gone=True).run_requests
    assert "no capture heartbeat" in gone.tags["archive/capture_problem"]
    assert not tick(t0 + timedelta(minutes=66), gone=True).run_requests
    assert not tick(t0 + timedelta(minutes=67)).run_requests
    (again,) = tick(t0 + timedelta(minutes=68), gone=True).run_requests
    assert len(keys) == len(set(keys)) == 4  # distinct run keys: none is deduplicated away
    assert keys == [first.run_key, second.run_key, gone.run_key, again.run_key]


# -- flow polls ------------------------------------------------------------------------------------


def test_a_failed_flow_poll_is_fetched_again_by_the_next_poll(tmp_path, monkeypatch):
    day = date(2025, 11, 26)
    s = calendar.session(day)
    t1, t2, t3 = (s.open_utc + timedelta(hours=h) for h in (1, 2, 3))
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY,QQQ")
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    with dg.instance_for_test() as instance:
        # the sensor's first poll of the day (from the open) succeeds
        monkeypatch.setattr(automation, "utcnow", lambda: t1)
        (rr,) = _sensor_tick(defs, "uw_flow_poll", instance).run_requests
        assert TAG_SINCE not in rr.tags
        assert run_job(defs, "uw_flow_poll", instance, partition_key=day.isoformat(), tags=rr.tags).success
        # the next one (t1 - 2 min .. t2) fails: the vendor was down
        monkeypatch.setattr(automation, "utcnow", lambda: t2)
        (rr,) = _sensor_tick(defs, "uw_flow_poll", instance, cursor=t1.isoformat()).run_requests
        failed = _in_flight(instance, defs, "uw_flow_poll", day.isoformat(), ["uw_flow"], tags=rr.tags)
        instance.report_run_failed(failed)
        # the poll after it reaches back to where the failed window started
        monkeypatch.setattr(automation, "utcnow", lambda: t3)
        res = _sensor_tick(defs, "uw_flow_poll", instance, cursor=t2.isoformat())
        (rr,) = res.run_requests
        assert rr.tags[TAG_SINCE] == (t1 - automation.FLOW_OVERLAP).isoformat()
        assert rr.tags[TAG_UNTIL] == t3.isoformat() == res.cursor
        assert run_job(defs, "uw_flow_poll", instance, partition_key=day.isoformat(), tags=rr.tags).success
        polled = sorted(store.read_day(ArchiveType.UW_FLOW, day)["alert_id"].to_pylist())
        # once fetched again, the polls go on from the cursor
        t4 = t3 + timedelta(minutes=1)
        monkeypatch.setattr(automation, "utcnow", lambda: t4)
        (rr,) = _sensor_tick(defs, "uw_flow_poll", instance, cursor=t3.isoformat()).run_requests
        assert rr.tags[TAG_SINCE] == (t3 - automation.FLOW_OVERLAP).isoformat()
    # every alert up to t3 is stored, as a whole-day fetch at t3 finds them
    whole = defs_for(tmp_path / "whole", ARCHIVE_SYMBOLS="SPY,QQQ")
    whole = dg.Definitions(assets=whole.assets, jobs=whole.jobs, resources={
        **whole.resources, "sources": SourcesResource(symbols=["SPY", "QQQ"], as_of=t3.isoformat())})
    with dg.instance_for_test() as instance:
        assert run_job(whole, "uw_flow_poll", instance, partition_key=day.isoformat()).success
    table = ArchiveStore(tmp_path / "whole" / "sim", kind="sim").read_day(ArchiveType.UW_FLOW, day)
    due = sorted(a for a, ts in zip(table["alert_id"].to_pylist(), table["timestamp"].to_pylist()) if ts <= t3)
    missed = [a for a, ts in zip(table["alert_id"].to_pylist(), table["timestamp"].to_pylist())
              if t1 < ts <= t2 - automation.FLOW_OVERLAP]
    assert missed, "the sim must have alerts inside the failed window for this test to mean anything"
    assert polled == due


def test_a_first_poll_that_failed_makes_the_next_one_start_at_the_open(tmp_path, monkeypatch):
    day = date(2025, 11, 26)
    s = calendar.session(day)
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY")
    with dg.instance_for_test() as instance:
        failed = _in_flight(instance, defs, "uw_flow_poll", day.isoformat(), ["uw_flow"],
                            tags={TAG_MODE: "poll", TAG_UNTIL: (s.open_utc + timedelta(minutes=1)).isoformat()})
        instance.report_run_failed(failed)
        now = s.open_utc + timedelta(minutes=30)
        monkeypatch.setattr(automation, "utcnow", lambda: now)
        (rr,) = _sensor_tick(defs, "uw_flow_poll", instance,
                             cursor=(now - timedelta(minutes=1)).isoformat()).run_requests
        assert TAG_SINCE not in rr.tags and rr.partition_key == day.isoformat()
        # a failed poll of another day does not widen today's
        other = _in_flight(instance, defs, "uw_flow_poll", "2025-11-25", ["uw_flow"],
                           tags={TAG_MODE: "poll", TAG_UNTIL: "2025-11-25T15:00:00+00:00"})
        instance.report_run_failed(other)
        assert automation.unfetched_flow_since(instance, "uw_flow_poll", "2025-11-25") == automation.OPEN
        assert automation.unfetched_flow_since(instance, "uw_flow_poll", "2025-11-24") is None


# -- crypto derived refresh -------------------------------------------------------------------------


def test_refresh_sensor_leaves_a_day_to_the_run_in_flight_rebuilding_it(tmp_path):
    import time

    from archive_platform.defs.crypto_derived import stale_derived_requests

    defs = defs_for(tmp_path)
    pdef = defs.resolve_job_def("archive_all_utc").partitions_def
    D = date(2025, 11, 29)
    instance = dg.DagsterInstance.ephemeral()

    def report(name: str, day: date) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=name, partition=day.isoformat()))
        time.sleep(0.01)

    for day in (D - timedelta(days=1), D, D + timedelta(days=1)):
        for name in ("crypto_trades", "crypto_candles", "crypto_daily_bars"):
            report(name, day)
    now = datetime(2025, 12, 3, 1, 0, tzinfo=UTC)
    # the recovery sensor's run of D is under way: trades written, its candles and bars not yet
    run = _in_flight(instance, defs, "archive_all_utc", D.isoformat(),
                     ["crypto_trades", "crypto_candles", "crypto_daily_bars"])
    report("crypto_trades", D)

    def requested():
        return sorted((r.partition_key, r.asset_selection[0].to_user_string())
                      for r in stale_derived_requests(instance, DATASETS, pdef, now, 7))

    # D's candles and bars are the run's to rebuild; D+1's candles read D's end, now final
    assert requested() == [("2025-11-30", "crypto_candles")]
    # the run died: the days are requested (a LOST run holds nothing)
    instance.report_run_failed(run)
    assert requested() == [("2025-11-29", "crypto_candles"), ("2025-11-29", "crypto_daily_bars"),
                   ("2025-11-30", "crypto_candles")]
