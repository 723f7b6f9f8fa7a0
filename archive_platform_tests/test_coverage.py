"""The coverage ledger (issue 11, item 11): pure states, and reconciled with a real archive and
a real Dagster instance: a file deleted on disk turns a materialized day into ``missing``, the
recovery sensor asks for it (and only from the archive's first day), the ``coverage`` asset
writes the ledger the DuckDB views show."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timezone

import dagster as dg
import duckdb
import pytest

from archive_platform.coverage import Stored, classify, wanted_again
from archive_platform.datasets import DATASETS
from archive_platform.defs import automation
from archive_platform.defs.recovery import LedgerContext
from archive_platform.partitions import partitions_for
from archive_platform.schemas import ArchiveType
from archive_platform.settings import Settings
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import defs_for, run_job, sim_env

UTC = timezone.utc
D = date(2025, 11, 26)
ALL = sorted(d.name for d in DATASETS if d.calendar_name == "nyse")  # the ledger judges NYSE sessions


# -- pure states ---------------------------------------------------------------------------------
def _stored(rows=10, problems=()):
    return Stored(files=1, rows=rows, bytes=100, last_write=None, problems=tuple(problems), fingerprint="f")


@pytest.mark.parametrize("stored, dagster, state, reconcilable", [
    (_stored(), "MATERIALIZED", "complete", False),
    (_stored(problems=["1 configured symbols missing"]), "MATERIALIZED", "degraded", True),
    (_stored(problems=["2 symbols without exactly 27 snapshots"]), None, "degraded", True),
    (_stored(problems=["1 symbols without exactly 390 one-minute bars"]), None, "degraded", True),
    (_stored(problems=["3 capture gaps (42 s)"]), None, "degraded", False),
    (_stored(rows=0), "MATERIALIZED", "empty-by-design", False),
    (None, "MATERIALIZED", "missing", False),  # deleted on disk
    (None, None, "missing", False),
    (None, "LOST", "missing", False),  # its run died
    (None, "FAILED", "failed", False),
    (None, "IN_PROGRESS", "in-progress", False),
])
def test_states(stored, dagster, state, reconcilable):
    e = classify("options", D, stored, dagster)
    assert (e.state, e.reconcilable) == (state, reconcilable)
    assert e.wanted_again == (state in ("missing", "failed") or reconcilable)


def test_reasons_name_what_is_missing():
    e = classify("stocks_1m", D, _stored(problems=["1 configured symbols missing",
                                                   "1 symbols without exactly 390 one-minute bars"]), None)
    assert e.reason == ("minutes: 1 symbols without exactly 390 one-minute bars; "
                        "symbols: 1 configured symbols missing")
    assert classify("options", D, None, "MATERIALIZED").reason == "materialized in Dagster but no file on disk"
    assert wanted_again([e, classify("gex", D, _stored(), None)]) == {D: ["stocks_1m"]}


# -- against a real archive and instance ----------------------------------------------------------
@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coverage")
    env = sim_env(tmp, ARCHIVE_SYMBOLS="SPY", ARCHIVE_START_DATE="", ARCHIVE_RECOVERY_LOOKBACK="5")
    defs = defs_for(tmp, ARCHIVE_SYMBOLS="SPY", ARCHIVE_START_DATE="", ARCHIVE_RECOVERY_LOOKBACK="5")
    (tmp / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp / "home")) as instance:
        for day in ("2025-11-25", "2025-11-26"):
            assert run_job(defs, "archive_all", instance, partition_key=day).success
        yield tmp, env, defs, instance


def _sensor(defs):
    return next(s for s in defs.sensors if s.name == "recover_missing_partitions")


def _requests(defs, instance, monkeypatch, now):
    monkeypatch.setattr(automation, "utcnow", lambda: now)
    res = _sensor(defs).evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    return {rr.partition_key: sorted(k.to_user_string() for k in rr.asset_selection)
            for rr in res.run_requests}


SATURDAY = datetime(2025, 11, 29, 17, 0, tzinfo=UTC)


@pytest.mark.slow
def test_recovery_starts_at_the_archives_first_day(archive, monkeypatch):
    # the last five closed sessions are 11-21, 11-24, 11-25, 11-26 and the half day 11-28; the
    # archive starts on 11-25 (like `./run dev` after the demo): nothing before it is requested
    _, _, defs, instance = archive
    assert _requests(defs, instance, monkeypatch, SATURDAY) == {"2025-11-28": ALL}


@pytest.mark.slow
def test_a_file_deleted_on_disk_is_missing_and_requested_again(archive, monkeypatch):
    tmp, _, defs, instance = archive
    store = ArchiveStore(tmp / "sim", kind="sim")
    (path,) = store.partition_files(ArchiveType.OPTIONS, D)
    backup = tmp / "options.bak"
    shutil.copy2(path, backup)
    path.unlink()
    try:
        ctx = LedgerContext(Settings.from_env(sim_env(tmp, ARCHIVE_SYMBOLS="SPY", ARCHIVE_START_DATE="")),
                            [d for d in DATASETS if d.calendar_name == "nyse"], {"nyse": partitions_for("nyse")})
        entries = {(e.dataset, e.day): e for e in ctx.entries(instance, SATURDAY)}
        e = entries[("options", D)]
        assert (e.state, e.dagster_status, e.files) == ("missing", "MATERIALIZED", 0)
        assert entries[("gex", D)].state == "complete"
        assert entries[("options", date(2025, 11, 25))].state == "complete"
        assert entries[("options", date(2025, 11, 28))].state == "missing"
        # options again, and what is derived from it so it is rebuilt from the restored day
        assert _requests(defs, instance, monkeypatch, SATURDAY) == {
            "2025-11-26": ["daily_iv", "gex", "iv_rank", "market_regime", "options"], "2025-11-28": ALL}
    finally:
        shutil.move(backup, path)
    assert _requests(defs, instance, monkeypatch, SATURDAY) == {"2025-11-28": ALL}


@pytest.mark.slow
def test_the_coverage_asset_writes_the_ledger_the_views_show(archive, monkeypatch):
    tmp, _, defs, instance = archive
    monkeypatch.setattr(automation, "utcnow", lambda: SATURDAY)
    res = run_job(defs, "coverage_ledger", instance)
    (ev,) = res.get_asset_materialization_events()
    meta = ev.event_specific_data.materialization.metadata
    assert meta["healthy"].value is False  # 11-28 is due and missing
    table = meta["status"].value
    assert [r.data["dataset"] for r in table.records] == [d.name for d in DATASETS if d.calendar_name == "nyse"]
    options = next(r.data for r in table.records if r.data["dataset"] == "options")
    assert options["days_stored"] == 2 and options["missing"] == "2025-11-28"
    assert (tmp / "sim" / "coverage" / "date=2025-11-26" / "coverage_20251126.parquet").exists()
    run_job(defs, "refresh_views", instance)
    con = duckdb.connect(str(tmp / "sim.duckdb"), read_only=True)
    rows = con.execute("SELECT dataset, state FROM coverage WHERE date = DATE '2025-11-26' "
                       "ORDER BY dataset").fetchall()
    missing = con.execute("SELECT DISTINCT day FROM coverage WHERE state = 'missing'").fetchall()
    con.close()
    assert {d for d, _ in rows} == set(ALL)
    assert all(s in ("complete", "empty-by-design") for _, s in rows), rows
    assert missing == [(date(2025, 11, 28),)]


def test_an_unchanged_day_is_not_read_again_once_looked_at_after_its_close(tmp_path, monkeypatch):
    from dataclasses import replace

    from archive_platform.coverage import build_ledger
    from archive_platform.sim import SimulatedMarket

    store = ArchiveStore(tmp_path / "sim", kind="sim")
    table = SimulatedMarket().fetch_stocks_1m(D, ["SPY"])
    store.write_day(ArchiveType.STOCKS_1M, D, table.slice(0, 200))  # 200 of 390 bars: degraded
    ds = next(d for d in DATASETS if d.name == "stocks_1m")
    reads = []
    real = store.read_day
    monkeypatch.setattr(store, "read_day", lambda *a, **k: reads.append(a) or real(*a, **k))

    def look(now, previous=None):
        (e,) = build_ledger([ds], store_for=lambda _: store, symbols=["SPY"], statuses={},
                            first_day=D, now=now, previous=previous, days={"stocks_1m": [D]})
        return e

    during = look(datetime(2025, 11, 26, 17, 0, tzinfo=UTC))  # 12:00 ET, session open
    assert during.state == "degraded" and during.reason.startswith("minutes:") and len(reads) == 1
    after = look(datetime(2025, 11, 27, 2, 0, tzinfo=UTC), {("stocks_1m", D): during})
    assert len(reads) == 2  # looked at before the close: read again
    again = look(datetime(2025, 11, 27, 3, 0, tzinfo=UTC), {("stocks_1m", D): after})
    assert len(reads) == 2 and replace(again, checked_at=None) == replace(after, checked_at=None)
    store.write_day(ArchiveType.STOCKS_1M, D, table)  # the day completed: files changed
    assert look(datetime(2025, 11, 27, 4, 0, tzinfo=UTC), {("stocks_1m", D): again}).state == "complete"
    assert len(reads) == 3
