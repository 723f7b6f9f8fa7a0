"""The crypto datasets through Dagster: a simulated Saturday with its checks, coverage failing
on a day with a capture gap, the heartbeat sensor on a stale heartbeat, the UTC recovery, and the
trades backfill from a loopback server speaking Binance's daily-file format."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.crypto import sim_venue
from archive_platform.crypto.schemas import CAPTURE_GAPS, CRYPTO_TRADES
from archive_platform.crypto.spool import heartbeat_path, spool_dir
from archive_platform.defs import build_definitions
from archive_platform.defs.crypto import utc_recovery_requests
from archive_platform.defs.resources import SourcesResource
from archive_platform.settings import Settings
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, checks, materializations, sim_env
from archive_platform_tests.fakes.binance_data import FakeBinanceData, aggtrades_zip

UTC = timezone.utc
SATURDAY = date(2025, 11, 29)
AS_OF = "2025-12-01T00:00:00+00:00"
CRYPTO = ("capture_gaps", "crypto_trades", "orderbook_l2")
DERIVED = ("crypto_daily_bars", "crypto_candles", "orderbook_features")


def _defs(env):
    built = build_definitions(env)
    sources = SourcesResource(symbols=["SPY"], as_of=AS_OF)
    return dg.Definitions(assets=built.assets, jobs=built.jobs, sensors=built.sensors,
                          asset_checks=built.asset_checks, resources={**built.resources, "sources": sources})


def _run(defs, keys=None, day=SATURDAY, raise_on_error=True):
    job = defs.resolve_job_def("archive_all_utc")
    return job.execute_in_process(partition_key=day.isoformat(), instance=dg.DagsterInstance.ephemeral(),
                                  run_config=QUIET, raise_on_error=raise_on_error,
                                  asset_selection=[dg.AssetKey(k) for k in keys] if keys else None)


@pytest.mark.slow
def test_simulated_saturday_materializes_trades_and_books_with_passing_checks(tmp_path):
    result = _run(_defs(sim_env(tmp_path)))
    assert result.success
    meta = materializations(result)
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    books, trades = store.read_day("orderbook_l2", SATURDAY), store.read_day("crypto_trades", SATURDAY)
    assert books.num_rows == 2 * 86_400  # BTC and ETH, one book a second all day
    assert trades.num_rows == meta["crypto_trades"]["dagster/row_count"] > 100_000
    assert set(trades["symbol"].to_pylist()) == {"BTC", "ETH"}
    assert store.read_day("capture_gaps", SATURDAY).num_rows == 0
    assert (tmp_path / "sim" / "orderbook_l2" / "date=2025-11-29").is_dir()
    bm = meta["orderbook_l2"]
    assert bm["origin"] == "sim" and bm["cadence_ms"] == "1000" and bm["streams"] == 2
    assert bm["expected_slots"] == bm["present_slots"] == 2 * 86_400 and bm["min_ratio"] == 1.0
    assert bm["crossed"] == 0 and bm["out_of_order"] == 0 and "1000 ms" in bm["cadence_note"]
    by_stream = {s["stream"]: s for s in bm["coverage_by_stream"]}
    assert by_stream["sim:orderbook_l2:BTC"]["missing_runs"] == 0
    tm = meta["crypto_trades"]
    assert tm["id_holes"] == 0 and tm["min_ratio"] == 1.0 and tm["expected_slots"] == 2 * 864_000
    got = {k: e.passed for k, e in checks(result).items()}
    assert {k: v for k, v in got.items() if k[0] in CRYPTO} == {
        (a, c): True for a in CRYPTO for c in ("schema", "unique_key", "in_session", "values", "coverage")
        if (a, c) != ("capture_gaps", "coverage")}
    # the derived datasets run in the same job, after their inputs (test_crypto_derived: known answers)
    assert {k: v for k, v in got.items() if k[0] in DERIVED} == {
        (a, c): True for a in DERIVED
        for c in ("schema", "unique_key", "in_session", "values", "complete", "matches_inputs")}
    assert meta["orderbook_features"]["dagster/row_count"] == 2 * 86_400
    assert meta["crypto_daily_bars"]["dagster/row_count"] == 2
    # Friday is not stored: each series starts at its first Saturday bucket, so no candle closes
    # at 00:00 (no 1d candle, one fewer of every other timeframe)
    assert meta["crypto_candles"]["dagster/row_count"] == 2 * (1439 + 287 + 95 + 23 + 5)


def _spool(root, dataset: str, day: date, table: pa.Table, n: int = 0) -> None:
    folder = spool_dir(root, dataset, day)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"part-{1_000_000 + n:019d}-1-0.parquet")


def _hyperliquid_day(day: date, hole: tuple[int, int]) -> tuple[pa.Table, pa.Table]:
    """A day of Hyperliquid BTC books (1 s) and trades with nothing in ``hole`` (seconds of the day)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    w = sim_venue.simulate("BTC", start, start + 86_400_000_000, seed=3, book_ms=1000)
    trades, books = sim_venue.window_tables(w, exchange="hyperliquid", source="hyperliquid")
    lo, hi = start + hole[0] * 1_000_000, start + hole[1] * 1_000_000

    def keep(t):
        ev = t["event_time"].cast(pa.int64()).to_numpy()
        return t.filter(pa.array((ev < lo) | (ev >= hi)))

    books = books.set_column(4, "update_id", pa.nulls(books.num_rows, pa.int64()))
    books = books.set_column(5, "prev_update_id", pa.nulls(books.num_rows, pa.int64()))
    return keep(trades), keep(books)


@pytest.mark.slow
def test_coverage_check_fails_on_a_captured_day_with_a_gap_and_passes_under_a_lower_threshold(tmp_path):
    day = date(2025, 11, 30)  # a Sunday
    live = tmp_path / "live"
    trades, books = _hyperliquid_day(day, (3600, 3600 + 1800))  # 30 minutes lost: 97.9 % covered
    first = books.slice(0, 1).to_pylist()[0]  # one crossed book, as a real venue shows for an instant
    first["bid_px"] = [first["ask_px"][0] + 1.0, *first["bid_px"][1:]]
    books = pa.concat_tables([pa.Table.from_pylist([first], schema=books.schema), books.slice(1)])
    _spool(live, "orderbook_l2", day, books)
    _spool(live, "crypto_trades", day, trades)
    t0 = datetime(2025, 11, 30, 1, 0, tzinfo=UTC)
    gaps = pa.table({"exchange": ["hyperliquid"] * 2, "stream": ["l2Book", "trades"], "symbol": ["BTC"] * 2,
                     "start": pa.array([t0, t0], pa.timestamp("us", tz="UTC")),
                     "end": pa.array([t0 + timedelta(minutes=30)] * 2, pa.timestamp("us", tz="UTC")),
                     "cause": ["silence for 30 s"] * 2, "source": ["hyperliquid"] * 2}, schema=CAPTURE_GAPS)
    _spool(live, "capture_gaps", day, gaps)
    env = sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1", ARCHIVE_CRYPTO_SYMBOLS="BTC")
    result = _run(_defs(env), day=day)
    assert result.success  # the data is stored; the checks say the day is incomplete
    ev = checks(result)
    assert not ev[("orderbook_l2", "coverage")].passed and not ev[("crypto_trades", "coverage")].passed
    assert "hyperliquid:orderbook_l2:BTC 97.91" in ev[("orderbook_l2", "coverage")].description
    assert ev[("crypto_trades", "schema")].passed
    # the crossed book is a stored anomaly: the values check fails as a WARN, the coverage as an ERROR
    values = ev[("orderbook_l2", "values")]
    assert not values.passed and values.severity == dg.AssetCheckSeverity.WARN
    assert "book not crossed" in values.description and "soft rules only" in values.description
    assert ev[("orderbook_l2", "coverage")].severity == dg.AssetCheckSeverity.ERROR
    meta = materializations(result)
    book = meta["orderbook_l2"]["coverage_by_stream"][0]
    assert book["expected_slots"] == 86_400 and book["present_slots"] == 86_400 - 1800
    assert book["longest_gap_s"] == 1800.0 and book["recorded_gaps"] == 1
    assert book["gap_spans"] == [["2025-11-30T01:00:00+00:00", "2025-11-30T01:30:00+00:00"]]
    trade = meta["crypto_trades"]["coverage_by_stream"][0]
    assert trade["present_slots"] == 864_000 - 18_000 and trade["recorded_gaps"] == 1
    store = ArchiveStore(live, kind="live")
    assert store.read_day("orderbook_l2", day).num_rows == books.num_rows
    assert store.read_day("capture_gaps", day).to_pylist()[0]["cause"] == "silence for 30 s"
    # the threshold is a setting: at 97 % the same day passes
    lower = _run(_defs({**env, "ARCHIVE_CRYPTO_COVERAGE_MIN": "97"}), day=day)
    assert checks(lower)[("orderbook_l2", "coverage")].passed


def _heartbeat(root, written_at: datetime) -> None:
    path = heartbeat_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = written_at.isoformat()
    path.write_text(json.dumps({"pid": 4242, "started": stamp, "written_at": stamp, "reconnects": 3,
                                "malformed": 0, "open_gaps": [],
                                "streams": {"binance:aggTrade:BTCUSDT": {"last_event": stamp, "last_receive": stamp}}}))


def test_heartbeat_sensor_requests_a_failing_check_when_capture_stops(tmp_path):
    assert "capture_heartbeat" not in {s.name for s in build_definitions(sim_env(tmp_path)).sensors}
    defs = _defs(sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1"))
    sensor = defs.resolve_sensor_def("capture_heartbeat")
    instance = dg.DagsterInstance.ephemeral()
    live = tmp_path / "live"
    _heartbeat(live, datetime.now(UTC))
    healthy = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert not healthy.run_requests and "capture is running (1 streams)" in healthy.skip_message
    stale = datetime(2025, 11, 29, 12, 0, tzinfo=UTC)
    _heartbeat(live, stale)
    (req,) = sensor.evaluate_tick(dg.build_sensor_context(instance=instance)).run_requests
    assert req.run_key.startswith("capture-down:") and sensor.job_name == "capture_health"
    assert "the service is not running" in req.tags["archive/capture_problem"]
    run = defs.resolve_job_def("capture_health").execute_in_process(instance=instance, run_config=QUIET)
    (ev,) = run.get_asset_check_evaluations()
    assert (ev.asset_key.to_user_string(), ev.check_name, ev.passed) == ("orderbook_l2", "capture_alive", False)
    assert "pid 4242" in ev.description and ev.metadata["reconnects"].value == 3


def test_utc_recovery_asks_only_for_what_can_fill_a_missing_day(tmp_path):
    now = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
    instance = dg.DagsterInstance.ephemeral()
    for env, want in ((sim_env(tmp_path), set(CRYPTO)),
                      (sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1"), {"crypto_trades"})):
        defs = build_definitions(env)
        settings = Settings.from_env(env)
        job = defs.resolve_job_def("archive_all_utc")
        pdef = job.partitions_def
        from archive_platform.datasets import BY_NAME

        reqs = utc_recovery_requests(instance, [BY_NAME[n] for n in CRYPTO], pdef, settings, now, 3,
                                     tmp_path / "live")
        assert [r.partition_key for r in reqs] == ["2025-11-28", "2025-11-29", "2025-11-30"]
        assert all({k.to_user_string() for k in r.asset_selection} == want for r in reqs)


def test_utc_recovery_never_reaches_before_the_archives_first_day(tmp_path):
    # right after the demo: days before its first UTC day are not "missing", they were never wanted
    from archive_platform.datasets import BY_NAME

    now = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
    env = sim_env(tmp_path, ARCHIVE_START_DATE="")  # no start date: the archive's first day rules
    settings = Settings.from_env(env)
    pdef = build_definitions(env).resolve_job_def("archive_all_utc").partitions_def
    crypto = [BY_NAME[n] for n in CRYPTO]

    def asked() -> list[str]:
        reqs = utc_recovery_requests(dg.DagsterInstance.ephemeral(), crypto, pdef, settings, now, 5, tmp_path / "live")
        return [r.partition_key for r in reqs]

    assert asked() == []  # nothing stored, no ARCHIVE_START_DATE: nothing to recover
    sim = ArchiveStore(settings.root("sim"), kind="sim")
    sim.write_day("capture_gaps", date(2025, 11, 29), CAPTURE_GAPS.empty_table())
    assert asked() == ["2025-11-29", "2025-11-30"]

    # with capture on, the UTC datasets live in the live archive: its first day rules
    env = sim_env(tmp_path / "capture", ARCHIVE_START_DATE="", ARCHIVE_CRYPTO_CAPTURE="1")
    settings = Settings.from_env(env)
    live = ArchiveStore(settings.root("live"), kind="live")
    live.write_day("capture_gaps", date(2025, 11, 28), CAPTURE_GAPS.empty_table())
    reqs = utc_recovery_requests(dg.DagsterInstance.ephemeral(), crypto, pdef, settings, now, 5,
                                 settings.root("live"))
    assert [r.partition_key for r in reqs] == ["2025-11-28", "2025-11-29", "2025-11-30"]


def test_trades_backfilled_from_daily_files_where_capture_missed_books_refuse(tmp_path):
    day = SATURDAY
    t0 = int(datetime(2025, 11, 29, tzinfo=UTC).timestamp() * 1000)
    lines = [f"{100 + i},91234.{i}0,0.{i + 1}00,{500 + i},{500 + i},{t0 + 1000 * i},{'true' if i % 2 else 'false'}"
             for i in range(5)]
    lines[3] = lines[3].replace(",0.400,", ",0.000,")  # zero-quantity aggregate trades exist in these files
    live = tmp_path / "live"
    # the capture got ids 100, 101, 104 (ids 102-103 missed): the day's file fills the hole
    captured = pa.table({
        "exchange": ["binance"] * 3, "symbol": ["BTCUSDT"] * 3, "trade_id": pa.array([100, 101, 104], pa.int64()),
        "event_time": pa.array(np.array([t0, t0 + 1000, t0 + 4000]) * 1000).cast(pa.timestamp("us", tz="UTC")),
        "price": [91234.0, 91234.1, 91234.4], "size": [0.1, 0.2, 0.5], "side": ["buy", "sell", "buy"],
        "receive_time": pa.array(np.array([t0 + 7] * 3) * 1000).cast(pa.timestamp("us", tz="UTC")),
        "source": ["binance"] * 3}, schema=CRYPTO_TRADES)
    _spool(live, "crypto_trades", day, captured)
    with FakeBinanceData() as portal:
        portal.add_aggtrades("BTCUSDT", day, aggtrades_zip("BTCUSDT", day, lines, header=True))
        env = sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1", ARCHIVE_CRYPTO_SYMBOLS="BTCUSDT",
                      BINANCE_DATA_URL=portal.url)
        defs = _defs(env)
        result = _run(defs, keys=["crypto_trades"])
        assert portal.requests[0] == "/data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-11-29.zip"
    rows = ArchiveStore(live, kind="live").read_day("crypto_trades", day).to_pylist()
    assert [r["trade_id"] for r in rows] == [100, 101, 102, 103, 104]
    assert rows[0]["price"] == 91234.0  # a captured row wins over the file's (91234.00 vs 91234.0)
    assert rows[0]["receive_time"] == datetime(2025, 11, 29, 0, 0, 0, 7000, tzinfo=UTC)
    assert rows[2]["price"] == 91234.2 and rows[3]["side"] == "sell"  # from the file: m=true -> sell
    assert rows[3]["size"] == 0.0  # stored as published, not refused
    meta = materializations(result)["crypto_trades"]
    assert meta["origin"] == "spool + binance files" and "2 aggregate trade ids missing" in meta["notes"]
    assert meta["id_holes"] == 0 and checks(result)[("crypto_trades", "coverage")].passed
    # order books: nothing spooled and no public history: the run fails and says so
    failed = _run(defs, keys=["orderbook_l2"], raise_on_error=False)
    assert not failed.success
    (err,) = [e.event_specific_data.error.to_string() for e in failed.all_events
              if e.event_type_value == "STEP_FAILURE"]
    assert "cannot be backfilled" in err and "no order books" in err
    assert not (live / "orderbook_l2").exists()


def test_demo_crypto_days_span_the_sessions_with_their_weekends():
    from archive_platform.cli.demo_crypto import crypto_days

    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    # Wednesday and Friday after Thanksgiving: Thursday's holiday and the weekend after are in
    assert crypto_days([date(2025, 11, 26), date(2025, 11, 28)], now) == [
        date(2025, 11, 26) + timedelta(days=i) for i in range(5)]
    # a Monday-to-Friday week: the weekends on both sides, so a Saturday and a Sunday always
    week = [date(2025, 11, 17) + timedelta(days=i) for i in range(5)]
    days = crypto_days(week, now)
    assert days[0] == date(2025, 11, 15) and days[-1] == date(2025, 11, 23) and len(days) == 9
    # never a UTC day that has not closed yet
    assert crypto_days(week, datetime(2025, 11, 22, 8, tzinfo=UTC))[-1] == date(2025, 11, 21)


def test_a_full_disk_under_a_live_capture_fails_capture_alive_once(tmp_path):
    # the service runs and every stream delivers, but its spool cannot be written: nothing
    # reaches the archive, so the check fails, and the sensor asks once while the counts grow
    defs = _defs(sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1"))
    sensor = defs.resolve_sensor_def("capture_heartbeat")
    instance = dg.DagsterInstance.ephemeral()
    live = tmp_path / "live"
    cursor, runs = None, []
    for buffered, dropped in ((40_000, 0), (250_000, 1_200), (250_000, 9_000)):
        _heartbeat(live, datetime.now(UTC))
        beat = json.loads(heartbeat_path(live).read_text())
        beat.update(spool_error="OSError: [Errno 28] No space left on device", spool_errors=7,
                    buffered_rows=buffered, dropped_rows=dropped, dropping_rows=dropped, max_unspooled_rows=250_000)
        heartbeat_path(live).write_text(json.dumps(beat))
        res = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
        cursor = res.cursor
        runs += res.run_requests
    # "none dropped yet" then "dropped so far": two runs, the third tick (more rows) adds none
    assert len(runs) == 2 and "none dropped yet" in runs[0].tags["archive/capture_problem"]
    assert "1,200 rows dropped so far" in runs[1].tags["archive/capture_problem"]
    run = defs.resolve_job_def("capture_health").execute_in_process(instance=instance, run_config=QUIET)
    (ev,) = run.get_asset_check_evaluations()
    assert ev.passed is False and "spool not writable (OSError: [Errno 28] No space left on device)" in ev.description
    assert "250,000 rows held in memory (bound 250,000), 9,000 rows dropped so far" in ev.description
    assert (ev.metadata["dropped_rows"].value, ev.metadata["buffered_rows"].value, ev.metadata["spool_errors"].value) \
        == (9_000, 250_000, 7)
