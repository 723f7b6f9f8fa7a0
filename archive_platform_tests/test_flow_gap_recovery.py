"""A ``uw_flow`` day whose polls gave up on a window is ``degraded`` in the coverage ledger
(reason ``poll gaps``, reconcilable) until a whole-day run of ``uw_flow`` materializes it after
the gap was recorded: ``status`` lists it, the ``coverage`` asset records it, and the recovery
sensor requests one day run of ``uw_flow`` for it once its session is closed, under its existing
rules (a live run holds the day; degraded days once per state of their content; a failed
recovery run hourly)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from archive_platform import calendar
from archive_platform.coverage import REASON_KINDS, Stored, build_ledger, classify, wanted_again
from archive_platform.datasets import DATASETS
from archive_platform.datasets.coverage import read_ledger
from archive_platform.defs import automation
from archive_platform.defs.assets import TAG_MODE, TAG_SINCE, TAG_UNTIL
from archive_platform.defs.coverage_assets import ledger_status
from archive_platform.defs.recovery import LedgerContext, open_flow_gaps
from archive_platform.partitions import partitions_for
from archive_platform.schemas import ArchiveType
from archive_platform.settings import Settings
from archive_platform.status import render_text
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, defs_for, run_job, sim_env

UTC = timezone.utc
ET = calendar.ET
DAY = date(2025, 11, 25)
KEY = DAY.isoformat()
#: 11-26 at noon ET: the session of 11-25 is closed, the lookback (1) is 11-25 alone
NOW = datetime(2025, 11, 26, 17, 0, tzinfo=UTC)
ENV = dict(ARCHIVE_SYMBOLS="SPY", ARCHIVE_RECOVERY_LOOKBACK="1", ARCHIVE_START_DATE=KEY)


def _et(h, m, day=DAY):
    return datetime(day.year, day.month, day.day, h, m, tzinfo=ET).astimezone(UTC)


def _stored(rows=10, problems=()):
    return Stored(files=1, rows=rows, bytes=100, last_write=None, problems=tuple(problems), fingerprint="f")


GAP = ("2025-11-25T16:00:00+00:00", "2025-11-25T16:40:00+00:00")
GAP_REASON = "poll gaps: unfetched poll window 2025-11-25T16:00:00+00:00 to 2025-11-25T16:40:00+00:00"


# -- pure: the ledger's state of a day with poll gaps ---------------------------------------------

def test_a_stored_day_with_a_poll_gap_is_degraded_and_reconcilable():
    assert REASON_KINDS["poll gaps"] is True
    e = classify("uw_flow", DAY, _stored(), "MATERIALIZED", [GAP])
    assert (e.state, e.reason, e.reconcilable, e.wanted_again) == ("degraded", GAP_REASON, True, True)
    # every window is named, once, in order; "open" for a window from the open
    two = classify("uw_flow", DAY, _stored(), None, [GAP, ("open", "2025-11-25T14:45:00+00:00"), GAP])
    assert two.reason == ("poll gaps: unfetched poll window 2025-11-25T16:00:00+00:00 to "
                          "2025-11-25T16:40:00+00:00, unfetched poll window open to 2025-11-25T14:45:00+00:00")
    # with the completeness rule's findings: one reason kind each; a capture gap stays final
    both = classify("uw_flow", DAY, _stored(problems=["1 configured symbols missing"]), None, [GAP])
    assert both.reason == f"{GAP_REASON}; symbols: 1 configured symbols missing" and both.reconcilable
    assert not classify("uw_flow", DAY, _stored(problems=["3 capture gaps (42 s)"]), None, [GAP]).reconcilable
    # a stored day without rows is not "empty by design" while a window of it was never fetched
    assert classify("uw_flow", DAY, _stored(rows=0), None, [GAP]).state == "degraded"
    # nothing stored: judged as before (it is requested again anyway)
    assert classify("uw_flow", DAY, None, "MATERIALIZED", [GAP]).state == "missing"
    assert classify("uw_flow", DAY, _stored(), "MATERIALIZED").state == "complete"
    assert wanted_again([e, classify("options", DAY, _stored(), None)]) == {DAY: ["uw_flow"]}


def test_a_reused_ledger_entry_does_not_keep_a_gap_that_was_closed(tmp_path, monkeypatch):
    # the coverage asset reuses the entry of unchanged files: the poll gap in its reason is not a
    # finding about the files, so a day no longer passed a gap is complete again, not degraded
    from archive_platform.sim import SimulatedMarket

    store = ArchiveStore(tmp_path / "sim", kind="sim")
    store.write_day(ArchiveType.UW_FLOW, DAY, SimulatedMarket().fetch_uw_flow(DAY, ["SPY"]))
    ds = next(d for d in DATASETS if d.name == "uw_flow")
    reads = []
    real = store.read_day
    monkeypatch.setattr(store, "read_day", lambda *a, **k: reads.append(a) or real(*a, **k))

    def look(now, previous=None, gaps=None):
        (e,) = build_ledger([ds], store_for=lambda _: store, symbols=["SPY"], statuses={},
                            first_day=DAY, now=now, previous=previous, days={"uw_flow": [DAY]},
                            poll_gaps=gaps)
        return e

    gapped = look(NOW, gaps={("uw_flow", DAY): [GAP]})
    assert (gapped.state, gapped.reason, gapped.reconcilable) == ("degraded", GAP_REASON, True)
    assert len(reads) == 1
    again = look(NOW + timedelta(hours=1), {("uw_flow", DAY): gapped}, gaps={("uw_flow", DAY): [GAP]})
    assert len(reads) == 1 and replace(again, checked_at=None) == replace(gapped, checked_at=None)
    closed = look(NOW + timedelta(hours=2), {("uw_flow", DAY): again})
    assert len(reads) == 1  # still not read again, and the gap is gone with the gaps passed in
    assert (closed.state, closed.reason, closed.reconcilable) == ("complete", None, False)


# -- against a real archive and Dagster instance ---------------------------------------------------

def _sensor_tick(defs, name, instance, monkeypatch, now, cursor=None):
    monkeypatch.setattr(automation, "utcnow", lambda: now)
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return defs.resolve_sensor_def(name).evaluate_tick(ctx)


def _recover(defs, instance, monkeypatch, now=NOW):
    return _sensor_tick(defs, "recover_missing_partitions", instance, monkeypatch, now).run_requests


def _give_up_on(defs, instance, monkeypatch, since: datetime, until: datetime):
    """``MAX_REACH_BACK`` failed polls of one window of 11-25, then a tick of ``uw_flow_poll``
    during that session: it gives up on the window and records the observation."""
    tags = {TAG_MODE: "poll", TAG_SINCE: since.isoformat(), TAG_UNTIL: until.isoformat()}
    for _ in range(automation.MAX_REACH_BACK):
        run = instance.create_run_for_job(
            defs.resolve_job_def("uw_flow_poll"), run_config={}, status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": KEY, **tags}, asset_selection=frozenset({dg.AssetKey("uw_flow")}))
        instance.report_run_failed(run)
    now = until + timedelta(minutes=30)
    _sensor_tick(defs, "uw_flow_poll", instance, monkeypatch, now, cursor=(now - timedelta(minutes=1)).isoformat())
    return since.isoformat(), until.isoformat()


def _run_request(defs, instance, rr):
    """Execute a run request of the recovery sensor as the daemon would (its assets, tags)."""
    job = defs.resolve_job_def("archive_all").get_subset(asset_selection=set(rr.asset_selection))
    return job.execute_in_process(partition_key=rr.partition_key, instance=instance, tags=rr.tags,
                                  run_config=QUIET, raise_on_error=False)


def _ledger(tmp_path, instance, now=NOW):
    ctx = LedgerContext(Settings.from_env(sim_env(tmp_path, **ENV)),
                        [d for d in DATASETS if d.calendar_name == "nyse"], {"nyse": partitions_for("nyse", DAY)})
    return ctx, {(e.dataset, e.day): e for e in ctx.entries(instance, now)}


@pytest.mark.slow
def test_an_abandoned_poll_window_is_degraded_reported_and_fetched_again(tmp_path, monkeypatch):
    defs = defs_for(tmp_path, **ENV)
    with dg.instance_for_test() as instance:
        assert run_job(defs, "archive_all", instance, partition_key=KEY).success
        _, ledger = _ledger(tmp_path, instance)
        assert ledger[("uw_flow", DAY)].state == "complete"
        assert _recover(defs, instance, monkeypatch) == []

        # the polls give up on 11:00 .. 11:01 ET of 11-25 (the vendor refused it 30 times)
        gap = _give_up_on(defs, instance, monkeypatch, _et(11, 0), _et(11, 1))
        assert automation.flow_gaps(instance, KEY) == [gap]
        assert open_flow_gaps(instance, [KEY, "2025-11-24"]) == {KEY: [gap]}
        reason = f"poll gaps: unfetched poll window {gap[0]} to {gap[1]}"

        # the polls go on from the cursor and succeed: their materializations do not close the gap
        # (only a whole-day run fetches the window again)
        poll = {TAG_MODE: "poll", TAG_SINCE: _et(11, 30).isoformat(), TAG_UNTIL: _et(12, 0).isoformat()}
        assert run_job(defs, "uw_flow_poll", instance, partition_key=KEY, tags=poll).success
        assert open_flow_gaps(instance, [KEY]) == {KEY: [gap]}
        # nor does the end-of-day run, which only compacts what the polls stored
        assert run_job(defs, "uw_flow_poll", instance, partition_key=KEY, tags={TAG_MODE: "eod"}).success
        assert open_flow_gaps(instance, [KEY]) == {KEY: [gap]}

        # (1) the ledger and status show it
        ctx, ledger = _ledger(tmp_path, instance)
        e = ledger[("uw_flow", DAY)]
        assert (e.state, e.reason, e.reconcilable) == ("degraded", reason, True)
        assert e.files and e.rows > 0
        others = {k: v.state for k, v in ledger.items() if k[0] != "uw_flow"}
        assert set(others.values()) <= {"complete", "empty-by-design"}, others
        _, status = ledger_status(ctx, instance, NOW)
        flow = next(x for x in status["datasets"] if x["dataset"] == "uw_flow")
        assert flow["degraded"] == [KEY]
        line = next(x for x in render_text(status).splitlines() if x.startswith("uw_flow "))
        assert f"degraded, not counted against health: {KEY}" in line

        # (2) the coverage asset records it
        monkeypatch.setattr(automation, "utcnow", lambda: NOW)
        res = run_job(defs, "coverage_ledger", instance)
        (ev,) = res.get_asset_materialization_events()
        meta = ev.event_specific_data.materialization.metadata
        assert meta["wanted_again"].value == {KEY: ["uw_flow"]}
        row = read_ledger(tmp_path / "sim", [DAY])[("uw_flow", DAY)]
        assert (row.state, row.reason, row.reconcilable) == ("degraded", reason, True)

        # (3) the recovery sensor requests one day run of uw_flow, once for this state of the day
        (rr,) = _recover(defs, instance, monkeypatch)
        assert rr.partition_key == KEY and rr.asset_selection == [dg.AssetKey("uw_flow")]
        assert rr.tags[TAG_MODE] == "day" and ":degraded:" in rr.run_key
        (later,) = _recover(defs, instance, monkeypatch, NOW + timedelta(hours=2))
        assert later.run_key == rr.run_key  # the daemon starts it once, not once a tick

        # a live run writing uw_flow on that day holds it; once it failed, hourly retries
        live = instance.create_run_for_job(
            defs.resolve_job_def("uw_flow_poll"), run_config={}, status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": KEY, TAG_MODE: "day"})
        assert _recover(defs, instance, monkeypatch) == []
        instance.report_run_failed(live)
        (retry,) = _recover(defs, instance, monkeypatch)
        assert retry.run_key == f"recover:{KEY}:uw_flow:2025112617"
        assert retry.asset_selection == [dg.AssetKey("uw_flow")]

        # the recovery run fetches the whole day: the gap no longer counts, the day is complete
        assert _run_request(defs, instance, retry).success
        assert open_flow_gaps(instance, [KEY]) == {}
        assert automation.flow_gaps(instance, KEY) == [gap]  # the observation itself stays
        _, ledger = _ledger(tmp_path, instance)
        e = ledger[("uw_flow", DAY)]
        assert (e.state, e.reason, e.reconcilable) == ("complete", None, False)
        assert _recover(defs, instance, monkeypatch) == []
        run_job(defs, "coverage_ledger", instance)
        assert read_ledger(tmp_path / "sim", [DAY])[("uw_flow", DAY)].state == "complete"

        # a window given up on after that run counts again (only a later whole-day run closes it)
        late = _give_up_on(defs, instance, monkeypatch, _et(13, 0), _et(13, 1))
        assert open_flow_gaps(instance, [KEY]) == {KEY: [late]}
        _, ledger = _ledger(tmp_path, instance)
        assert ledger[("uw_flow", DAY)].reason == f"poll gaps: unfetched poll window {late[0]} to {late[1]}"
        (rr,) = _recover(defs, instance, monkeypatch)
        assert rr.partition_key == KEY and rr.asset_selection == [dg.AssetKey("uw_flow")]
