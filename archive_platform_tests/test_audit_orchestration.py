"""Audit of the orchestration layer: a hostile user's cases for the flow poll sensor and the
recovery sensor, each failing before its fix (defs/automation.py, defs/recovery.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from archive_platform import calendar
from archive_platform.defs import automation
from archive_platform.defs.assets import TAG_MODE, TAG_SINCE, TAG_SNAPSHOT, TAG_UNTIL
from archive_platform.defs.resources import SourcesResource
from archive_platform.schemas import ArchiveType
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, defs_for, run_job

ET = calendar.ET
UTC = timezone.utc
DAY = date(2025, 11, 26)  # a full session (EST), the day before Thanksgiving


def _sensor(defs, name):
    return next(s for s in defs.sensors if s.name == name)


def _tick(defs, name, instance, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return _sensor(defs, name).evaluate_tick(ctx)


def _et(h, m, s=0, day=DAY):
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=ET)


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    return defs_for(tmp_path_factory.mktemp("audit_orch"), ARCHIVE_SYMBOLS="SPY,QQQ")


# -- the flow poll's cursor ----------------------------------------------------------------------


@pytest.mark.parametrize("cursor", [
    "garbage",  # hand-edited or truncated
    "2025-11-26T15:20:00",  # no UTC offset
    "2025-11-26T16:20:00+00:00",  # after now: the clock was set back
])
def test_a_corrupted_flow_cursor_does_not_stop_the_polls(defs, monkeypatch, cursor):
    now = datetime(2025, 11, 26, 15, 30, tzinfo=UTC)
    monkeypatch.setattr(automation, "utcnow", lambda: now)
    with dg.instance_for_test() as instance:
        res = _tick(defs, "uw_flow_poll", instance, cursor=cursor)
    (rr,) = res.run_requests
    # the cursor is not trusted: the poll reaches back to the open (dedup makes that free)
    assert rr.partition_key == "2025-11-26" and rr.tags[TAG_MODE] == "poll"
    assert TAG_SINCE not in rr.tags
    assert rr.tags[TAG_UNTIL] == now.isoformat() == res.cursor


def test_parse_flow_cursor():
    assert automation.parse_flow_cursor(None) is None
    assert automation.parse_flow_cursor("") is None
    assert automation.parse_flow_cursor("nope") is None
    assert automation.parse_flow_cursor("2025-11-26T15:20:00") is None
    assert automation.parse_flow_cursor("2025-11-26T15:20:00+00:00") == datetime(2025, 11, 26, 15, 20, tzinfo=UTC)


# -- the last poll of the day --------------------------------------------------------------------


@pytest.mark.parametrize("now, cursor, expect", [
    # the first tick after 20:00 ET closes the day's window at 20:00 exactly
    (_et(20, 0, 40), _et(19, 59, 10), ("2025-11-26", _et(19, 57, 10), _et(20, 0))),
    # a sensor that was down since 19:40 still fetches up to 20:00 (same market date)
    (_et(23, 0), _et(19, 40), ("2025-11-26", _et(19, 38), _et(20, 0))),
    (_et(20, 1, 40), _et(20, 0), None),  # already polled up to 20:00
    (_et(20, 0, 40), None, None),  # no poll today: nothing to finish
    (_et(20, 0, 40), _et(19, 59, day=date(2025, 11, 25)), None),  # yesterday's cursor
    (_et(0, 30, day=date(2025, 11, 28)), _et(19, 40), None),  # the next market date
    (_et(20, 0, 40, day=date(2025, 11, 27)), _et(19, 40, day=date(2025, 11, 27)), None),  # holiday
    # the half day polls after its 13:00 close until 20:00 as well
    (_et(20, 0, 30, day=date(2025, 11, 28)), _et(19, 59, day=date(2025, 11, 28)),
     ("2025-11-28", _et(19, 57, day=date(2025, 11, 28)), _et(20, 0, day=date(2025, 11, 28)))),
])
def test_the_last_flow_poll_reaches_20_et(now, cursor, expect):
    got = automation.flow_poll(now.astimezone(UTC), cursor.astimezone(UTC).isoformat() if cursor else None)
    assert got == expect


def test_the_poll_windows_of_a_day_cover_everything_up_to_20_et(defs, monkeypatch):
    """The sensor ticks every minute (here at :30 s); its windows, chained through the cursor,
    must leave no gap before 20:00 ET: the end-of-day run only compacts what polls stored, and
    uw_flow keeps the whole ET day's alerts (the vendor reports after hours too)."""
    key = DAY.isoformat()
    cursor, windows = None, []
    with dg.instance_for_test() as instance:
        for minute in range(14):  # 19:50:30 .. 20:03:30
            now = (_et(19, 50, 30) + timedelta(minutes=minute)).astimezone(UTC)
            monkeypatch.setattr(automation, "utcnow", lambda now=now: now)
            res = _tick(defs, "uw_flow_poll", instance, cursor=cursor)
            for rr in res.run_requests:
                assert rr.partition_key == key and rr.tags[TAG_MODE] == "poll"
                windows.append((rr.tags.get(TAG_SINCE), rr.tags[TAG_UNTIL]))
            cursor = res.cursor
    end = _et(20, 0).astimezone(UTC).isoformat()
    assert windows[0][0] is None  # the first poll of the day starts at the open
    for (_, until), (since, _) in zip(windows, windows[1:]):
        assert since is not None and since < until  # each window starts before the last ended
    # ten polls inside the hours, then exactly one that ends at 20:00, then none
    assert len(windows) == 11 and windows[-1][1] == end
    assert windows[-1][0] == (_et(19, 59, 30) - automation.FLOW_OVERLAP).astimezone(UTC).isoformat()


# -- recovery of degraded days -------------------------------------------------------------------


def _recovery_defs(tmp_path):
    """(writer, judge): the writer's vendor serves SPY only, the judge's configuration asks for
    SPY and QQQ, so every day the writer stores is degraded (a symbol missing) however often it
    is fetched again."""
    env = dict(ARCHIVE_RECOVERY_LOOKBACK="1", ARCHIVE_START_DATE="2025-11-25")
    return (defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY", **env),
            defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY,QQQ", **env))


def _recover(judge, instance, monkeypatch, now):
    monkeypatch.setattr(automation, "utcnow", lambda: now)
    return _tick(judge, "recover_missing_partitions", instance).run_requests


def _run_request(defs, instance, rr, clock=None):
    """Execute a run request of the recovery sensor as the daemon would (its assets, tags)."""
    resources = dict(defs.resources)
    if clock is not None:
        resources["sources"] = SourcesResource(symbols=["SPY"], as_of=clock)
    d = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources)
    job = d.resolve_job_def("archive_all").get_subset(asset_selection=set(rr.asset_selection))
    return job.execute_in_process(partition_key=rr.partition_key, instance=instance, tags=rr.tags,
                                  run_config=QUIET, raise_on_error=False)


def test_a_degraded_day_fetched_again_unchanged_is_not_requested_forever(tmp_path, monkeypatch):
    writer, judge = _recovery_defs(tmp_path)
    with dg.instance_for_test() as instance:
        assert run_job(writer, "archive_all", instance, partition_key="2025-11-25").success
        keys = []
        for now in (datetime(2025, 11, 26, 17, 0, tzinfo=UTC), datetime(2025, 11, 26, 18, 0, tzinfo=UTC),
                    datetime(2025, 11, 26, 23, 0, tzinfo=UTC)):
            (rr,) = _recover(judge, instance, monkeypatch, now)
            assert rr.partition_key == "2025-11-25" and "options" in {k.path[-1] for k in rr.asset_selection}
            keys.append(rr.run_key)
            # the vendor still lacks QQQ: the day is fetched again, rewritten, and as degraded
            res = _run_request(writer, instance, rr)
            assert res.success and len(res.get_asset_materialization_events()) == len(rr.asset_selection)
        # one run key: the daemon starts the first request and skips the rest, not one run per tick
        assert len(set(keys)) == 1 and ":degraded:" in keys[0]


def test_a_degraded_day_whose_recovery_run_failed_is_requested_again(tmp_path, monkeypatch):
    writer, judge = _recovery_defs(tmp_path)
    with dg.instance_for_test() as instance:
        assert run_job(writer, "archive_all", instance, partition_key="2025-11-25").success
        (first,) = _recover(judge, instance, monkeypatch, datetime(2025, 11, 26, 17, 0, tzinfo=UTC))
        # its recovery run fails before writing anything (here: a clock before the close), so
        # the files, and the day's findings, are those of before
        failed = _run_request(writer, instance, first, clock="2025-11-25T11:00:00-05:00")
        assert not failed.success
        st = instance.get_status_by_partition(dg.AssetKey("stocks_1m"), ["2025-11-25"],
                                              judge.get_assets_def("stocks_1m").partitions_def)
        assert st["2025-11-25"].value == "FAILED"
        # the same hour: no second attempt (no run storm) ...
        (again,) = _recover(judge, instance, monkeypatch, datetime(2025, 11, 26, 17, 30, tzinfo=UTC))
        # ... the next hour: a new attempt, not given up on after one failure
        (later,) = _recover(judge, instance, monkeypatch, datetime(2025, 11, 26, 18, 0, tzinfo=UTC))
    assert again.run_key == f"recover:2025-11-25:{first.run_key.split(':')[2]}:2025112617"
    assert later.run_key == f"recover:2025-11-25:{first.run_key.split(':')[2]}:2025112618"
    assert later.partition_key == "2025-11-25"
    assert {k.path[-1] for k in later.asset_selection} == {k.path[-1] for k in first.asset_selection}


# -- run tags that do not belong to the partition -------------------------------------------------


def _step_errors(result) -> list[str]:
    out = []
    for ev in result.all_events:
        if ev.event_type_value == "STEP_FAILURE":
            err = ev.event_specific_data.error
            out.append((err.cause or err).message)
    return out


@pytest.mark.parametrize("job, tags, message", [
    # a poll window of the day before: "succeeded" with nothing stored and every check passed
    ("uw_flow_poll", {TAG_MODE: "poll", TAG_SINCE: "2025-11-19T15:00:00+00:00",
                      TAG_UNTIL: "2025-11-19T18:00:00+00:00"},
     "run tag archive/until='2025-11-19T18:00:00+00:00' is an instant of 2025-11-19, not of partition 2025-11-20"),
    ("uw_flow_poll", {TAG_MODE: "poll", TAG_SINCE: "2025-11-20T18:00:00+00:00",
                      TAG_UNTIL: "2025-11-20T15:00:00+00:00"}, "make an empty poll window"),
    ("options_snapshot", {TAG_MODE: "snapshot", TAG_SNAPSHOT: "2025-11-21T15:00:00+00:00"},
     "run tag archive/snapshot_time='2025-11-21T15:00:00+00:00' is an instant of 2025-11-21, "
     "not of partition 2025-11-20"),
])
def test_run_tags_of_another_day_fail_naming_the_tag(defs, job, tags, message):
    with dg.instance_for_test() as instance:
        res = run_job(defs, job, instance, partition_key="2025-11-20", tags=tags, raise_on_error=False)
    assert not res.success and not res.get_asset_materialization_events()
    assert not res.get_asset_check_evaluations()
    errors = _step_errors(res)
    assert errors and all(message in e for e in errors), errors


def test_a_poll_run_of_its_own_day_still_stores_its_window(defs):
    # the same validation lets a correct poll through (window inside the session of 11-20)
    tags = {TAG_MODE: "poll", TAG_SINCE: "2025-11-20T15:00:00+00:00", TAG_UNTIL: "2025-11-20T18:00:00+00:00"}
    with dg.instance_for_test() as instance:
        res = run_job(defs, "uw_flow_poll", instance, partition_key="2025-11-20", tags=tags)
    (ev,) = res.get_asset_materialization_events()
    assert ev.partition == "2025-11-20"
    rows = ev.event_specific_data.materialization.metadata["dagster/row_count"].value
    assert rows > 0
    assert {(e.check_name, e.passed) for e in res.get_asset_check_evaluations()} >= {("in_session", True)}


def test_a_degraded_day_a_live_run_is_rewriting_is_left_to_that_run(tmp_path, monkeypatch):
    """docs/orchestration.md: the recovery sensor never requests "a day a live run is writing".
    A degraded day has files, so the ledger calls it degraded (not in progress) during its run."""
    writer, judge = _recovery_defs(tmp_path)
    now = datetime(2025, 11, 26, 17, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        assert run_job(writer, "archive_all", instance, partition_key="2025-11-25").success
        # an operator re-runs the whole day (a backfill of one session); it is still running
        live = instance.create_run_for_job(
            judge.resolve_job_def("archive_all"), run_config={}, status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": "2025-11-25"})
        assert _recover(judge, instance, monkeypatch, now) == []
        assert _recover(judge, instance, monkeypatch, now + timedelta(minutes=15)) == []
        # once it is over (here: it died and run monitoring failed it), the day is asked again
        instance.report_run_failed(live)
        (again,) = _recover(judge, instance, monkeypatch, now + timedelta(minutes=30))
    assert again.partition_key == "2025-11-25" and again.run_key.endswith(":2025112617")
    assert {k.path[-1] for k in again.asset_selection} >= {"options", "gex", "stocks_1m"}
