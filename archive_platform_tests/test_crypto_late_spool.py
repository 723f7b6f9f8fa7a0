"""Rows that reach a day's spool after the day was built: ``recover_utc_days`` rebuilds the day.

The case that matters: the capture was down at 00:30 (or killed), so the day was built without
the downtime; on restart the service writes a restart gap (and maybe a flushed tail of the day's
rows) into that day's spool. With a real Dagster instance, spool files written by the test into
the live root and ``ARCHIVE_CRYPTO_CAPTURE=1``:

* the late files make the sensor request the day once (run key stable across ticks), for the
  datasets they affect (a late gap: ``capture_gaps`` and ``crypto_trades``, whose coverage reads
  the gaps), with the reason in the request's tags; after the rebuild nothing more is requested,
  the archive holds the late rows and gaps and the trades' coverage check shows the gap, and
  ``refresh_crypto_derived`` then rebuilds the derived days;
* a late book file rebuilds only the books, also when it is named before the newest file read;
* never while a live run writes the day, never for the open day (nor the day just closed while
  the daily schedule owns it), never outside ``ARCHIVE_RECOVERY_LOOKBACK``, never with the
  capture off;
* a day built before builds recorded their spool listing is judged by the files' write times;
* a dataset whose spool files were deleted since its build is not rebuilt from what is left.
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.crypto import sim_venue
from archive_platform.crypto.schemas import CAPTURE_GAPS
from archive_platform.crypto.spool import late_spool, spool_dir, spool_files, spool_listing
from archive_platform.defs import build_definitions
from archive_platform.defs import crypto as crypto_defs
from archive_platform.datasets import DATASETS
from archive_platform.defs.crypto_derived import stale_derived_requests
from archive_platform.defs.resources import SourcesResource
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, checks, materializations, sim_env

UTC = timezone.utc
DAY = date(2025, 11, 30)
NOW = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)  # DAY closed; lookback 3: 11-28, 11-29, 11-30
CAPTURED = ("capture_gaps", "crypto_trades", "orderbook_l2")
DERIVED = ("crypto_candles", "crypto_daily_bars", "orderbook_features")
US = 1_000_000
_SEQ = itertools.count()


def at(h: int, m: int = 0, s: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, h, m, s, tzinfo=UTC)


def _env(tmp_path, **extra):
    return sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1", ARCHIVE_CRYPTO_SYMBOLS="BTC",
                   ARCHIVE_RECOVERY_LOOKBACK="3", **extra)


def _defs(env):
    built = build_definitions(env)
    sources = SourcesResource(symbols=["SPY"], as_of="2025-12-01T00:00:00+00:00")
    return dg.Definitions(assets=built.assets, jobs=built.jobs, sensors=built.sensors,
                          asset_checks=built.asset_checks, resources={**built.resources, "sources": sources})


def _spool(root, dataset: str, table: pa.Table, ns: int | None = None) -> str:
    """One spool file named as the service names them (part-<time_ns>-<pid>-<seq>)."""
    folder = spool_dir(root, dataset, DAY)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{ns or time.time_ns()}-{os.getpid()}-{next(_SEQ):06d}.parquet"
    pq.write_table(table, folder / name)
    time.sleep(0.002)  # distinct time_ns
    return name


def _market(lo: datetime, hi: datetime) -> tuple[pa.Table, pa.Table]:
    """Hyperliquid BTC trades and 1 s books between ``lo`` and ``hi``."""
    w = sim_venue.simulate("BTC", int(lo.timestamp()) * US, int(hi.timestamp()) * US, seed=5, book_ms=1000)
    trades, books = sim_venue.window_tables(w, exchange="hyperliquid", source="hyperliquid")
    books = books.set_column(4, "update_id", pa.nulls(books.num_rows, pa.int64()))
    books = books.set_column(5, "prev_update_id", pa.nulls(books.num_rows, pa.int64()))
    return trades, books


def _restart_gap(lo: datetime, hi: datetime) -> pa.Table:
    cause = "capture not running: between the last spooled row and a restart (continues after 00:00 UTC)"
    return pa.table({"exchange": ["hyperliquid"] * 2, "stream": ["l2Book", "trades"], "symbol": ["BTC"] * 2,
                     "start": pa.array([lo, lo], pa.timestamp("us", tz="UTC")),
                     "end": pa.array([hi, hi], pa.timestamp("us", tz="UTC")),
                     "cause": [cause] * 2, "source": ["hyperliquid"] * 2}, schema=CAPTURE_GAPS)


def _captured_day(tmp_path, instance):
    """DAY as the 00:30 run built it (every UTC dataset): books and trades 21:00-23:00 spooled,
    no gap yet (the capture died at 23:00 and was still down). Returns (defs, live root)."""
    live = tmp_path / "live"
    trades, books = _market(at(21), at(23))
    _spool(live, "orderbook_l2", books)
    _spool(live, "crypto_trades", trades)
    defs = _defs(_env(tmp_path))
    res = defs.resolve_job_def("archive_all_utc").execute_in_process(
        partition_key=DAY.isoformat(), instance=instance, run_config=QUIET)
    assert res.success
    assert checks(res)[("crypto_trades", "coverage")].passed  # no gap recorded: 100 % (overstated)
    meta = materializations(res)
    assert meta["capture_gaps"]["spool_files"] == 0 and meta["capture_gaps"]["spool_newest"] == ""
    assert meta["crypto_trades"]["spool_files"] == 1
    return defs, live


def _tick(defs, instance, monkeypatch, now=NOW, name="recover_utc_days"):
    monkeypatch.setattr(crypto_defs, "utcnow", lambda: now)
    ctx = dg.build_sensor_context(instance=instance, definitions=defs)
    return defs.resolve_sensor_def(name).evaluate_tick(ctx)


def _asked(result) -> dict[str, list[str]]:
    return {r.partition_key: sorted(k.to_user_string() for k in r.asset_selection) for r in result.run_requests}


def _execute(defs, instance, req):
    return defs.resolve_job_def("archive_all_utc").execute_in_process(
        partition_key=req.partition_key, instance=instance, run_config=QUIET, tags=req.tags,
        asset_selection=list(req.asset_selection))


@pytest.mark.slow
def test_a_restart_gap_and_tail_after_the_build_rebuild_the_day_once(tmp_path, monkeypatch):
    with dg.instance_for_test() as instance:
        defs, live = _captured_day(tmp_path, instance)
        quiet = _tick(defs, instance, monkeypatch)
        assert not quiet.run_requests and "late-spooled" in quiet.skip_message
        # the service restarts at 01:00 on 12-01: the tail it had flushed before dying, and the
        # restart gap's part on DAY, land in DAY's spool after DAY was built
        tail, _ = _market(at(22, 59, 30), at(23))
        tail = tail.filter(pa.array([t.second >= 30 for t in tail["event_time"].to_pylist()]))
        extra = tail.slice(0, 1).to_pylist()[0]
        extra["trade_id"], extra["event_time"] = 987654321, at(22, 59, 59)
        tail = pa.concat_tables([tail, pa.Table.from_pylist([extra], schema=tail.schema)])
        _spool(live, "crypto_trades", tail)
        newest = _spool(live, "capture_gaps", _restart_gap(at(23), at(23, 59, 59) + timedelta(microseconds=999_999)))

        first = _tick(defs, instance, monkeypatch)
        assert _asked(first) == {"2025-11-30": ["capture_gaps", "crypto_trades"]}  # not the books: none came
        (req,) = first.run_requests
        assert req.run_key.startswith(f"late-spool-utc:2025-11-30:capture_gaps+crypto_trades:{newest[:-8]}:")
        assert req.tags["archive/trigger"] == "late_spool"
        why = req.tags["archive/late_spool"]
        assert f"capture_gaps: 1 spool files after the build, newest {newest}" in why
        assert "crypto_trades: 1 spool files after the build" in why
        # the same spool on a later tick (another hour): the same run key, so Dagster does not launch it twice
        again = _tick(defs, instance, monkeypatch, now=NOW + timedelta(hours=1, minutes=15))
        assert [r.run_key for r in again.run_requests] == [req.run_key]

        rebuilt = _execute(defs, instance, req)
        assert rebuilt.success
        store = ArchiveStore(live, kind="live")
        gaps = store.read_day("capture_gaps", DAY).to_pylist()
        assert [(g["stream"], g["start"]) for g in gaps] == [("l2Book", at(23)), ("trades", at(23))]
        ids = set(store.read_day("crypto_trades", DAY)["trade_id"].to_pylist())
        assert 987654321 in ids and set(tail["trade_id"].to_pylist()) <= ids
        cov = checks(rebuilt)[("crypto_trades", "coverage")]
        assert not cov.passed and "hyperliquid:crypto_trades:BTC 95.833" in cov.description
        meta = materializations(rebuilt)["crypto_trades"]
        assert meta["recorded_gaps"] == 1 and meta["spool_files"] == 2

        # rebuilt: nothing is late any more
        after = _tick(defs, instance, monkeypatch, now=NOW + timedelta(minutes=30))
        assert not after.run_requests
        # the derived days read the trades that were just archived again: refresh_crypto_derived
        # (its requests, at NOW) rebuilds them
        utc = [d for d in DATASETS if d.calendar_name == "utc"]
        pdef = defs.resolve_job_def("archive_all_utc").partitions_def
        follow = stale_derived_requests(instance, utc, pdef, NOW, 3)
        assert sorted((r.partition_key, k.to_user_string()) for r in follow for k in r.asset_selection) == \
            [("2025-11-30", n) for n in DERIVED]


@pytest.mark.slow
def test_a_late_book_file_rebuilds_the_books_even_when_named_before_the_newest_read(tmp_path, monkeypatch):
    with dg.instance_for_test() as instance:
        defs, live = _captured_day(tmp_path, instance)
        (read,) = spool_files(live, "orderbook_l2", DAY)
        _, books = _market(at(23), at(23, 0, 10))
        # a file whose name sorts before the newest one the build read (the clock was set back)
        early = int(read.name.split("-")[1]) - 10**9
        _spool(live, "orderbook_l2", books, ns=early)
        res = _tick(defs, instance, monkeypatch)
        assert _asked(res) == {"2025-11-30": ["orderbook_l2"]}
        assert "1 spool files more than the build read" in res.run_requests[0].tags["archive/late_spool"]
        assert _execute(defs, instance, res.run_requests[0]).success
        assert ArchiveStore(live, kind="live").read_day("orderbook_l2", DAY).num_rows == 7200 + 10
        assert not _tick(defs, instance, monkeypatch).run_requests


@pytest.mark.slow
def test_no_late_rebuild_while_a_run_writes_the_day_nor_for_open_or_old_days_nor_without_capture(
        tmp_path, monkeypatch):
    with dg.instance_for_test() as instance:
        defs, live = _captured_day(tmp_path, instance)
        _spool(live, "capture_gaps", _restart_gap(at(23), at(23, 30)))
        want = {"2025-11-30": ["capture_gaps", "crypto_trades"]}
        assert _asked(_tick(defs, instance, monkeypatch)) == want
        # still DAY (open): never
        assert not _tick(defs, instance, monkeypatch, now=at(23, 50)).run_requests
        # the day just closed belongs to archive_utc_daily until 00:45, then it may be rebuilt
        assert not _tick(defs, instance, monkeypatch, now=datetime(2025, 12, 1, 0, 40, tzinfo=UTC)).run_requests
        assert _asked(_tick(defs, instance, monkeypatch, now=datetime(2025, 12, 1, 0, 50, tzinfo=UTC))) == want
        # ARCHIVE_RECOVERY_LOOKBACK=3: on 12-03 DAY is the oldest day of the window, on 12-04 outside it
        assert _asked(_tick(defs, instance, monkeypatch, now=datetime(2025, 12, 3, 9, tzinfo=UTC))) == want
        assert not _tick(defs, instance, monkeypatch, now=datetime(2025, 12, 4, 9, tzinfo=UTC)).run_requests
        # capture off: the simulated venue is the source, the spool is nobody's input
        sim = _defs(sim_env(tmp_path, ARCHIVE_RECOVERY_LOOKBACK="3"))
        res = _tick(sim, instance, monkeypatch)  # (it asks for the days the sim archive misses)
        assert not any("archive/late_spool" in r.tags for r in res.run_requests)
        assert not set(_asked(res).get("2025-11-30", ())) & set(CAPTURED)
        # a live run writing DAY (the trades only): the day is left to it, the gaps' rebuild too
        run = instance.create_run_for_job(
            defs.resolve_job_def("archive_all_utc"), run_config={}, status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": DAY.isoformat()}, asset_selection=frozenset([dg.AssetKey("crypto_trades")]))
        assert not _tick(defs, instance, monkeypatch).run_requests
        instance.report_run_failed(run)  # it died: the trades are missing and the late gap is due again
        assert _asked(_tick(defs, instance, monkeypatch)) == {"2025-11-30": ["capture_gaps", "crypto_trades"]}


def test_a_day_built_without_a_recorded_listing_is_judged_by_the_files_write_times(tmp_path, monkeypatch):
    live = tmp_path / "live"
    defs = _defs(_env(tmp_path))
    with dg.instance_for_test() as instance:
        _spool(live, "capture_gaps", _restart_gap(at(1), at(1, 5)))  # read by that build
        instance.report_runless_asset_event(dg.AssetMaterialization("capture_gaps", partition=DAY.isoformat()))
        assert not _tick(defs, instance, monkeypatch).run_requests
        name = _spool(live, "capture_gaps", _restart_gap(at(23), at(23, 30)))
        (req,) = _tick(defs, instance, monkeypatch).run_requests
        assert (req.partition_key, [k.to_user_string() for k in req.asset_selection]) == ("2025-11-30", ["capture_gaps"])
        assert f"newest {name}" in req.tags["archive/late_spool"]


@pytest.mark.slow
def test_a_dataset_whose_spool_files_were_deleted_is_not_rebuilt_from_the_rest(tmp_path, monkeypatch):
    with dg.instance_for_test() as instance:
        defs, live = _captured_day(tmp_path, instance)
        (read,) = spool_files(live, "crypto_trades", DAY)
        read.unlink()  # allowed once the day has materialized
        tail, _ = _market(at(23), at(23, 0, 10))
        _spool(live, "crypto_trades", tail)
        _spool(live, "capture_gaps", _restart_gap(at(23), at(23, 30)))
        res = _tick(defs, instance, monkeypatch)
        # the gaps are rebuilt; the trades would be rebuilt from the late file alone: left as archived
        assert _asked(res) == {"2025-11-30": ["capture_gaps"]}
        assert "not rebuilt: crypto_trades" in res.run_requests[0].tags["archive/late_spool"]


def test_late_spool_compares_with_the_listing_a_build_recorded(tmp_path):
    root = tmp_path / "live"
    gaps = _restart_gap(at(1), at(2))
    a = _spool(root, "capture_gaps", gaps)
    read = spool_listing(root, "capture_gaps", DAY)
    assert (read.files, read.newest) == (1, a)
    assert not late_spool(root, "capture_gaps", DAY, read=read).changed
    b = _spool(root, "capture_gaps", gaps)
    change = late_spool(root, "capture_gaps", DAY, read=read)
    assert [p.name for p in change.late] == [b] and change.newest == b and not change.pruned
    (spool_dir(root, "capture_gaps", DAY) / a).unlink()
    assert late_spool(root, "capture_gaps", DAY, read=read).pruned == 1
    # no listing: by the time_ns the names carry
    ns = int(b.split("-")[1])
    assert [p.name for p in late_spool(root, "capture_gaps", DAY, built_ns=ns - 1).late] == [b]
    assert not late_spool(root, "capture_gaps", DAY, built_ns=ns).changed
