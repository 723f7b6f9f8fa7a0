"""Audit of the orchestration layer, second pass: each test fails before its fix.

1. a failed last poll of the day (up to 20:00 ET) is fetched again before the end-of-day run;
2. one poll window that always fails does not block the rest of the day, and stays visible;
3. a range run with a failed day records the other days as materialized (per partition);
4. the coverage asset writes a UTC-day dataset's ledger into the archive it lives in.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from archive_platform import calendar
from archive_platform.datasets import DATASETS
from archive_platform.defs import automation
from archive_platform.defs.assets import TAG_MODE, TAG_SINCE, TAG_UNTIL
from archive_platform.defs.coverage_assets import build_coverage_asset
from archive_platform.defs.resources import SourcesResource
from archive_platform.schemas import ArchiveType
from archive_platform.settings import Settings
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, defs_for, run_job, sim_env

UTC = timezone.utc
ET = calendar.ET
DAY = date(2025, 11, 26)
KEY = DAY.isoformat()


def _et(h, m, s=0, day=DAY):
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=ET).astimezone(UTC)


def _tick(defs, instance, monkeypatch, now, cursor=None):
    monkeypatch.setattr(automation, "utcnow", lambda: now)
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return defs.resolve_sensor_def("uw_flow_poll").evaluate_tick(ctx)


def _failed_poll(instance, defs, tags, key=KEY):
    run = instance.create_run_for_job(
        defs.resolve_job_def("uw_flow_poll"), run_config={}, status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": key, **tags}, asset_selection=frozenset({dg.AssetKey("uw_flow")}))
    instance.report_run_failed(run)
    return run


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    return defs_for(tmp_path_factory.mktemp("audit_orch2"), ARCHIVE_SYMBOLS="SPY,QQQ")


# -- 1. the last poll of the day -------------------------------------------------------------------


def test_a_failed_last_poll_is_fetched_again_before_the_end_of_day_run(tmp_path, monkeypatch):
    defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY,QQQ")
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    end = _et(20, 0)
    with dg.instance_for_test() as instance:
        # the day's polls up to 19:59:30 succeeded
        first = {TAG_MODE: "poll", TAG_UNTIL: _et(19, 59, 30).isoformat()}
        assert run_job(defs, "uw_flow_poll", instance, partition_key=KEY, tags=first).success
        # the last poll (19:57:30 .. 20:00) is requested at 20:00:30 and fails
        res = _tick(defs, instance, monkeypatch, _et(20, 0, 30), cursor=_et(19, 59, 30).isoformat())
        (last,) = res.run_requests
        assert last.tags[TAG_UNTIL] == end.isoformat() == res.cursor
        _failed_poll(instance, defs, last.tags)
        # the next tick fetches that window again, under a run key of its own (the daemon skips
        # a run key it has seen: the failed run's would never run again)
        res = _tick(defs, instance, monkeypatch, _et(20, 1, 30), cursor=res.cursor)
        (retry,) = res.run_requests
        assert retry.partition_key == KEY and retry.tags[TAG_MODE] == "poll"
        assert retry.tags[TAG_SINCE] == last.tags[TAG_SINCE] == (_et(19, 59, 30) - automation.FLOW_OVERLAP).isoformat()
        assert retry.tags[TAG_UNTIL] == end.isoformat() == res.cursor
        assert retry.run_key != last.run_key
        # not after LATE_RETRY_END: the end-of-day run (20:15) must compact every late part
        late = _tick(defs, instance, monkeypatch, _et(20, 10, 30), cursor=end.isoformat())
        assert not late.run_requests
        # the retry runs and stores the alerts up to 20:00; then nothing is left to fetch
        assert run_job(defs, "uw_flow_poll", instance, partition_key=KEY, tags=retry.tags).success
        assert not _tick(defs, instance, monkeypatch, _et(20, 2, 30), cursor=end.isoformat()).run_requests
        stored = store.read_day(ArchiveType.UW_FLOW, DAY)
    # every alert up to 20:00 is stored, as a whole-day fetch finds them
    whole = defs_for(tmp_path / "whole", ARCHIVE_SYMBOLS="SPY,QQQ")
    whole = dg.Definitions(assets=whole.assets, jobs=whole.jobs, resources={
        **whole.resources, "sources": SourcesResource(symbols=["SPY", "QQQ"], as_of=end.isoformat())})
    with dg.instance_for_test() as instance:
        assert run_job(whole, "uw_flow_poll", instance, partition_key=KEY).success
    table = ArchiveStore(tmp_path / "whole" / "sim", kind="sim").read_day(ArchiveType.UW_FLOW, DAY)
    due = sorted(a for a, ts in zip(table["alert_id"].to_pylist(), table["timestamp"].to_pylist()) if ts <= end)
    assert sorted(stored["alert_id"].to_pylist()) == due


def test_the_late_retry_is_bounded_and_waits_for_a_poll_in_flight(defs, monkeypatch):
    with dg.instance_for_test() as instance:
        tags = {TAG_MODE: "poll", TAG_SINCE: _et(19, 57, 30).isoformat(), TAG_UNTIL: _et(20, 0).isoformat()}
        _failed_poll(instance, defs, tags)
        cursor = _et(20, 0).isoformat()
        assert automation.late_flow_day(_et(20, 9, 59)) == KEY
        assert automation.late_flow_day(_et(20, 10)) is None
        assert automation.late_flow_day(_et(19, 59)) is None
        # a retry in flight: no second one
        live = instance.create_run_for_job(
            defs.resolve_job_def("uw_flow_poll"), run_config={}, status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": KEY, **tags})
        assert not _tick(defs, instance, monkeypatch, _et(20, 1, 30), cursor=cursor).run_requests
        instance.report_run_failed(live)
        # attempts are bounded too: MAX_REACH_BACK failures of the window and it is given up on
        for _ in range(automation.MAX_REACH_BACK - 2):
            _failed_poll(instance, defs, tags)
        assert not _tick(defs, instance, monkeypatch, _et(20, 3, 30), cursor=cursor).run_requests
        assert automation.flow_gaps(instance, KEY) == [(tags[TAG_SINCE], tags[TAG_UNTIL])]


# -- 2. one window that always fails -----------------------------------------------------------------


def test_a_window_that_always_fails_does_not_block_the_rest_of_the_day(defs, monkeypatch):
    bad_since, bad_until = _et(11, 0), _et(11, 1)
    with dg.instance_for_test() as instance:
        bad = {TAG_MODE: "poll", TAG_SINCE: bad_since.isoformat(), TAG_UNTIL: bad_until.isoformat()}
        _failed_poll(instance, defs, bad)
        # each reaching-back poll starts at the bad window and fails as well
        for n in range(1, automation.MAX_REACH_BACK):
            now = bad_until + timedelta(minutes=10 + n)
            (rr,) = _tick(defs, instance, monkeypatch, now, cursor=(now - timedelta(minutes=1)).isoformat()).run_requests
            assert rr.tags[TAG_SINCE] == bad_since.isoformat()
            _failed_poll(instance, defs, rr.tags)
        assert automation.flow_gaps(instance, KEY) == []
        # MAX_REACH_BACK failures: the polls go on from the cursor ...
        now = _et(11, 30)
        cursor = (now - timedelta(minutes=1)).isoformat()
        res = _tick(defs, instance, monkeypatch, now, cursor=cursor)
        (rr,) = res.run_requests
        assert rr.tags[TAG_SINCE] == (now - timedelta(minutes=1) - automation.FLOW_OVERLAP).isoformat()
        assert rr.tags[TAG_UNTIL] == now.isoformat() == res.cursor
        # ... and the gap stays visible: a warning and one observation of uw_flow on the day
        gaps = automation.flow_gaps(instance, KEY)
        assert gaps == [(bad_since.isoformat(), (bad_until + timedelta(minutes=10 + automation.MAX_REACH_BACK - 1)).isoformat())]
        _tick(defs, instance, monkeypatch, now + timedelta(minutes=1), cursor=res.cursor)
        obs = instance.fetch_observations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("uw_flow"), asset_partitions=[KEY]), limit=10).records
        assert len(obs) == 1  # once per window, not once a minute
        assert obs[0].asset_observation.metadata["failed_attempts"].value == automation.MAX_REACH_BACK
        # a later failed window is still reached back to (the given-up one does not mask it)
        other = {TAG_MODE: "poll", TAG_SINCE: _et(12, 0).isoformat(), TAG_UNTIL: _et(12, 1).isoformat()}
        _failed_poll(instance, defs, other)
        now = _et(12, 5)
        (rr,) = _tick(defs, instance, monkeypatch, now, cursor=(now - timedelta(minutes=1)).isoformat()).run_requests
        assert rr.tags[TAG_SINCE] == other[TAG_SINCE]


# -- 3. range runs record each day's outcome -----------------------------------------------------------


def test_a_range_run_with_a_failed_day_keeps_the_days_it_wrote(tmp_path):
    """A backfill chunk over 11-24 .. 11-26 whose clock is 11-26 12:00 ET: the bars of 11-26
    cannot be archived before its close; 11-24 and 11-25 are written and must show so."""
    base = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY")
    defs = dg.Definitions(assets=base.assets, jobs=base.jobs, resources={
        **base.resources, "sources": SourcesResource(symbols=["SPY"], as_of="2025-11-26T12:00:00-05:00")})
    job = defs.resolve_job_def("archive_all").get_subset(asset_selection={dg.AssetKey("stocks_1m")})
    keys = ["2025-11-24", "2025-11-25", "2025-11-26"]
    with dg.instance_for_test() as instance:
        res = job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False, tags={
            ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
        assert not res.success
        pdef = defs.get_assets_def("stocks_1m").partitions_def
        st = instance.get_status_by_partition(dg.AssetKey("stocks_1m"), keys, pdef)
        assert {k: v.value for k, v in st.items()} == {
            "2025-11-24": "MATERIALIZED", "2025-11-25": "MATERIALIZED", "2025-11-26": "FAILED"}
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    mats = {ev.partition: ev.event_specific_data.materialization.metadata
            for ev in res.get_asset_materialization_events()}
    assert set(mats) == {"2025-11-24", "2025-11-25"}
    for k, meta in mats.items():  # each day its own figures
        assert meta["dagster/row_count"].value == store.read_day(ArchiveType.STOCKS_1M, date.fromisoformat(k)).num_rows > 0
    evals = {(e.check_name, e.partition) for e in res.get_asset_check_evaluations()}
    assert {("complete", "2025-11-24"), ("complete", "2025-11-25")} <= evals
    assert not any(p == "2025-11-26" for _, p in evals)


# -- 4. the coverage asset's archive per dataset ------------------------------------------------------


def test_the_coverage_asset_writes_a_utc_dataset_into_its_own_archive(tmp_path, monkeypatch):
    """With the crypto capture on, the UTC-day datasets live in the live archive
    (``Settings.dataset_kind``) while their source selection says ``sim``."""
    env = sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1", ARCHIVE_START_DATE="2025-11-24")
    settings = Settings.from_env(env)
    utc = [d for d in DATASETS if d.calendar_name == "utc"][:1]
    assert settings.dataset_kind(utc[0]) == "live" != settings.sources.store_kind(utc[0])
    defs = defs_for(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1", ARCHIVE_START_DATE="2025-11-24")
    parts = {"utc": defs.resolve_job_def("archive_all_utc").partitions_def}
    monkeypatch.setattr(automation, "utcnow", lambda: datetime(2025, 11, 26, 12, tzinfo=UTC))
    asset = build_coverage_asset(settings, utc, parts)
    with dg.instance_for_test() as instance:
        res = dg.materialize([asset], instance=instance)
    (ev,) = res.get_asset_materialization_events()
    assert ev.event_specific_data.materialization.metadata["files_rewritten"].value >= 2
    assert sorted(p.name for p in (tmp_path / "live" / "coverage").glob("date=*")) == [
        "date=2025-11-24", "date=2025-11-25"]
    assert not (tmp_path / "sim" / "coverage").exists()
