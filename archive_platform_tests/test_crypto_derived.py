"""The crypto derived datasets on small hand-made days with known answers: candles across the UTC
midnight with a minute without trades, a late trade re-materialized through Dagster, the 1-second
feature grid with a second without a book update, and the daily bars; each check must fail on a
damaged partition."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest

from archive_platform.analysis import crypto_checks as chk
from archive_platform.analysis import crypto_days as cd
from archive_platform.crypto.schemas import CRYPTO_TRADES, ORDERBOOK_L2
from archive_platform.defs import build_definitions
from archive_platform.store import ArchiveStore
from archive_platform_tests.dagster_helpers import QUIET, checks, materializations, sim_env

UTC = timezone.utc
D = date(2025, 11, 29)  # a Saturday
PREV = D - timedelta(days=1)


def at(day: date, hh: int, mm: int, ss: int = 0, us: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, us, tzinfo=UTC)


def trades(rows) -> pa.Table:
    """rows: (symbol, trade_id, event_time, price, size, side)."""
    cols = list(zip(*rows))
    return pa.table({"exchange": ["sim"] * len(rows), "symbol": list(cols[0]), "trade_id": list(cols[1]),
                     "event_time": list(cols[2]), "price": list(cols[3]), "size": list(cols[4]),
                     "side": list(cols[5]), "receive_time": list(cols[2]), "source": ["sim"] * len(rows)},
                    schema=CRYPTO_TRADES)


def books(rows) -> pa.Table:
    """rows: (event_time, bid_px, bid_sz, ask_px, ask_sz) of sim/BTC."""
    cols = list(zip(*rows))
    n = len(rows)
    return pa.table({"exchange": ["sim"] * n, "symbol": ["BTC"] * n, "event_time": list(cols[0]),
                     "receive_time": list(cols[0]), "update_id": [None] * n, "prev_update_id": [None] * n,
                     "bid_px": list(cols[1]), "bid_sz": list(cols[2]), "ask_px": list(cols[3]),
                     "ask_sz": list(cols[4]), "bid_n": [None] * n, "ask_n": [None] * n, "source": ["sim"] * n},
                    schema=ORDERBOOK_L2)


PREV_TRADES = [("BTC", 1, at(PREV, 10, 0), 100.0, 1.0, "buy"), ("BTC", 2, at(PREV, 23, 59, 30), 101.0, 2.0, "sell")]
DAY_TRADES = [
    ("BTC", 3, at(D, 0, 0), 102.0, 1.0, "buy"),  # exactly midnight: closes the candle stamped D 00:00
    ("BTC", 4, at(D, 0, 0, 0, 1), 103.0, 1.0, "buy"),  # one microsecond later: the 00:01 candle
    ("BTC", 5, at(D, 0, 3), 99.0, 3.0, "sell"),  # exactly on the 00:03 close; 00:02 has no trade
    ("BTC", 6, at(D, 23, 59, 30), 110.0, 1.0, "buy"),  # closes at D+1 00:00: the next partition
    ("ETH", 7, at(D, 5, 0, 30), 50.0, 2.0, "buy"),  # ETH's first trade ever
]


@pytest.fixture
def store(tmp_path):
    s = ArchiveStore(tmp_path / "sim", kind="sim")
    s.write_day("crypto_trades", PREV, trades(PREV_TRADES))
    s.write_day("crypto_trades", D, trades(DAY_TRADES))
    return s


def _candle(df: pl.DataFrame, symbol: str, tf: str, ts: datetime) -> dict:
    (row,) = df.filter((pl.col("symbol") == symbol) & (pl.col("timeframe") == tf)
                       & (pl.col("timestamp") == ts)).to_dicts()
    return row


def test_candles_across_the_utc_midnight_and_a_minute_without_trades(store):
    df = pl.from_arrow(cd.derive_crypto_candles(store, D))
    btc = df.filter(pl.col("symbol") == "BTC")
    counts = dict(btc.group_by("timeframe").agg(pl.len()).iter_rows())
    assert counts == {"1m": 1440, "5m": 288, "15m": 96, "1h": 24, "4h": 6, "1d": 1}
    first = _candle(df, "BTC", "1m", at(D, 0, 0))  # (23:59, 00:00]: trade 2 of D-1 and the midnight trade
    assert (first["open"], first["high"], first["low"], first["close"]) == (101.0, 102.0, 101.0, 102.0)
    assert (first["volume"], first["trades"], first["is_empty"]) == (3.0, 2, False)
    assert first["vwap"] == pytest.approx((101 * 2 + 102) / 3)
    assert _candle(df, "BTC", "1m", at(D, 0, 1))["open"] == 103.0
    gap = _candle(df, "BTC", "1m", at(D, 0, 2))
    assert gap["is_empty"] and (gap["open"], gap["close"], gap["volume"], gap["trades"], gap["vwap"]) == \
        (103.0, 103.0, 0.0, 0, None)
    assert _candle(df, "BTC", "1m", at(D, 0, 3))["close"] == 99.0
    last = _candle(df, "BTC", "1m", at(D, 23, 59))
    assert last["is_empty"] and last["close"] == 99.0  # the 23:59:30 trade closes at D+1 00:00
    day = _candle(df, "BTC", "1d", at(D, 0, 0))  # the daily candle of D-1 (and the midnight trade)
    assert (day["open"], day["high"], day["low"], day["close"], day["volume"]) == (100.0, 102.0, 100.0, 102.0, 4.0)
    four = _candle(df, "BTC", "4h", at(D, 4, 0))
    assert (four["open"], four["high"], four["low"], four["close"], four["volume"]) == (103.0, 103.0, 99.0, 99.0, 4.0)
    assert btc.filter(pl.col("timeframe") == "1m")["volume"].sum() == 7.0
    # ETH has no earlier price: its series starts at its first trade, and has no daily candle yet
    eth = df.filter((pl.col("symbol") == "ETH") & (pl.col("timeframe") == "1m"))
    assert eth["timestamp"].min() == at(D, 5, 1) and eth.height == 1440 - 301
    assert df.filter((pl.col("symbol") == "ETH") & (pl.col("timeframe") == "1d")).height == 0
    assert chk.candle_grid_problems(df, D)[0] == []
    assert chk.reconcile_crypto_candles(df, cd.trades_window(store, D), D)[0] == []


def test_candle_checks_fail_on_a_gap_and_on_a_wrong_close(store):
    df = pl.from_arrow(cd.derive_crypto_candles(store, D))
    window = cd.trades_window(store, D)
    holed = df.filter(~((pl.col("symbol") == "BTC") & (pl.col("timeframe") == "1m")
                        & (pl.col("timestamp") == at(D, 0, 1))))
    problems, _ = chk.reconcile_crypto_candles(holed, window, D)
    assert any("missing candle (gap)" in p for p in problems)
    assert any("volume or trade count differs" in p for p in problems)
    assert chk.candle_grid_problems(holed, D)[0]
    wrong = df.with_columns(pl.when((pl.col("timeframe") == "1m") & (pl.col("timestamp") == at(D, 0, 2)))
                            .then(104.0).otherwise(pl.col("close")).alias("close"))
    problems, meta = chk.reconcile_crypto_candles(wrong, window, D)
    assert any("close is not the last trade" in p for p in problems)
    short = df.filter(pl.col("timestamp") < at(D, 23, 0))  # the day's last hour missing
    assert chk.candle_grid_problems(short, D)[0]


def _materialize(tmp_path, asset: str, day: date = D, raise_on_error: bool = True):
    defs = build_definitions(sim_env(tmp_path))
    return defs.resolve_job_def("archive_all_utc").execute_in_process(
        partition_key=day.isoformat(), instance=dg.DagsterInstance.ephemeral(), run_config=QUIET,
        asset_selection=[dg.AssetKey(asset)], raise_on_error=raise_on_error)


def test_a_late_trade_rematerialized_replaces_the_day_through_dagster(tmp_path, store):
    result = _materialize(tmp_path, "crypto_candles")
    got = {c: e.passed for (a, c), e in checks(result).items()}
    assert got == dict.fromkeys(("schema", "unique_key", "in_session", "values", "complete", "matches_inputs"), True)
    # BTC: 1440 + 288 + 96 + 24 + 6 + 1; ETH from its first trade's buckets (05:01, 05:05, 05:15,
    # 06:00, 08:00; no daily candle): 1139 + 227 + 75 + 18 + 4
    assert materializations(result)["crypto_candles"]["dagster/row_count"] == 1855 + 1463
    late = ("BTC", 8, at(D, 0, 5, 30), 98.0, 0.5, "sell")  # in the empty minute (00:05, 00:06]
    store.write_day("crypto_trades", D, trades(DAY_TRADES + [late]))
    stale, _ = chk.reconcile_crypto_candles(store.read_day("crypto_candles", D), cd.trades_window(store, D), D)
    assert stale  # the stored candles no longer match the trades until the day is rebuilt
    result = _materialize(tmp_path, "crypto_candles")
    assert all(e.passed for e in checks(result).values())
    df = pl.from_arrow(store.read_day("crypto_candles", D))
    minute = _candle(df, "BTC", "1m", at(D, 0, 6))
    assert not minute["is_empty"] and (minute["close"], minute["volume"], minute["trades"]) == (98.0, 0.5, 1)
    after = _candle(df, "BTC", "1m", at(D, 12, 0))
    assert after["is_empty"] and after["close"] == 98.0  # the empty candles after it carry the new close
    assert df.filter(pl.col("timeframe") == "1m").height == 1440 + 1440 - 301  # replaced, not appended


def test_a_day_without_trades_fails_naming_the_input(tmp_path):
    result = _materialize(tmp_path, "crypto_daily_bars", day=date(2025, 12, 3), raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "no crypto_trades stored for 2025-12-03" in failure.event_specific_data.error.to_string()


def test_daily_bars_of_a_utc_day(store):
    store.write_day("crypto_trades", D + timedelta(days=1),
                    trades([("BTC", 9, at(D + timedelta(days=1), 0, 0), 500.0, 9.0, "buy")]))
    df = pl.from_arrow(cd.derive_crypto_daily_bars(store, D)).sort("symbol")
    btc = df.row(0, named=True)
    assert btc["timestamp"] == at(D, 0, 0) and btc["symbol"] == "BTC"
    # trades 3..6: the midnight trade of D is in, the next midnight's (trade 9) is not
    assert (btc["open"], btc["high"], btc["low"], btc["close"]) == (102.0, 110.0, 99.0, 110.0)
    assert (btc["volume"], btc["trade_count"]) == (6.0, 4)
    assert btc["vwap"] == pytest.approx((102 + 103 + 99 * 3 + 110) / 6)
    assert btc["first_trade"] == at(D, 0, 0) and btc["last_trade"] == at(D, 23, 59, 30)
    day_trades = store.read_day("crypto_trades", D)
    assert chk.reconcile_crypto_daily_bars(df, day_trades, D)[0] == []
    wrong = df.with_columns(pl.when(pl.col("symbol") == "BTC").then(111.0).otherwise(pl.col("close")).alias("close"))
    problems, _ = chk.reconcile_crypto_daily_bars(wrong, day_trades, D)
    assert problems == ["bars differ from the trades' aggregation: {'close': 1}"]


def test_the_daily_bars_check_agrees_on_a_day_of_zero_size_trades(tmp_path):
    """Zero-size trades are stored (size > 0 is a soft rule) and give a null vwap; the check
    computed 0/0 (NaN) for it and reported the correct bar as differing."""
    day = D + timedelta(days=3)
    s = ArchiveStore(tmp_path / "zero", kind="sim")
    s.write_day("crypto_trades", day, trades([("ETH", 1, at(day, 1, 0), 50.0, 0.0, "buy"),
                                              ("ETH", 2, at(day, 2, 0), 51.0, 0.0, "sell")]))
    df = pl.from_arrow(cd.derive_crypto_daily_bars(s, day))
    assert df["vwap"].to_list() == [None] and df["volume"].to_list() == [0.0]
    assert chk.reconcile_crypto_daily_bars(df, s.read_day("crypto_trades", day), day)[0] == []
    # a null where a value is due still differs
    wrong = df.with_columns(pl.lit(None, pl.Float64).alias("close"))
    assert chk.reconcile_crypto_daily_bars(wrong, s.read_day("crypto_trades", day), day)[0] == [
        "bars differ from the trades' aggregation: {'close': 1}"]


BOOKS_PREV = [(at(PREV, 23, 59, 59, 500_000), [100.0], [1.0], [101.0], [1.0])]
BOOKS_DAY = [
    (at(D, 0, 0), [100.0, 99.9], [3.0, 1.0], [101.0, 101.1], [1.0, 1.0]),  # exactly midnight: t = 00:00:00
    (at(D, 0, 0, 1, 500_000), [100.5], [1.0], [101.0], [3.0]),  # t = 00:00:02; second 00:00:01 has none
    (at(D, 0, 0, 3), [100.0], [2.0], [100.5], [2.0]),
    (at(D, 0, 0, 5, 200_000), [100.0], [2.0], [100.5], [2.0]),  # the last book: t = 00:00:06
]


@pytest.fixture
def book_store(tmp_path):
    s = ArchiveStore(tmp_path / "sim", kind="sim")
    s.write_day("orderbook_l2", PREV, books(BOOKS_PREV))
    s.write_day("orderbook_l2", D, books(BOOKS_DAY))
    s.write_day("crypto_trades", PREV, trades([("BTC", 1, at(PREV, 23, 59, 59, 800_000), 101.0, 1.0, "buy")]))
    s.write_day("crypto_trades", D, trades([("BTC", 2, at(D, 0, 0, 0, 500_000), 101.0, 2.0, "buy"),
                                            ("BTC", 3, at(D, 0, 0, 1), 100.0, 0.5, "sell")]))
    return s


def test_feature_grid_covers_the_day_with_a_second_without_a_book(book_store):
    df = pl.from_arrow(cd.derive_orderbook_features(book_store, D))
    assert df.height == 86_400 and df["timestamp"].min() == at(D, 0, 0)
    assert df["timestamp"].max() == at(D, 23, 59, 59)
    sec = {r["timestamp"].second: r for r in df.filter(pl.col("timestamp") <= at(D, 0, 0, 7)).to_dicts()}
    # 00:00:00: the midnight book; both it and the previous day's last book arrived in (-1 s, 0]
    assert (sec[0]["mid"], sec[0]["spread"], sec[0]["imbalance_1"], sec[0]["updates"]) == (100.5, 1.0, 0.5, 2)
    assert sec[0]["volume"] == 1.0  # the previous day's trade at 23:59:59.8
    # 00:00:01: no book arrived; the state is still the midnight book's, the flows are the trades'
    assert (sec[1]["mid"], sec[1]["imbalance_1"], sec[1]["updates"]) == (100.5, 0.5, 0)
    assert (sec[1]["volume"], sec[1]["signed_volume"]) == (2.5, 1.5)
    assert (sec[2]["mid"], sec[2]["spread"], sec[2]["imbalance_1"], sec[2]["updates"]) == (100.75, 0.5, -0.5, 1)
    assert (sec[3]["mid"], sec[3]["imbalance_1"]) == (100.25, 0.0)
    assert sec[6]["updates"] == 1 and sec[7]["mid"] is None and sec[7]["updates"] == 0
    assert df.filter(pl.col("mid").is_null()).height == 86_400 - 7
    assert df["vpin_bucket_volume"].unique().to_list() == [1.0 / 500]  # the previous day's volume / 500
    books_in, trades_in, _ = cd.feature_inputs(book_store, D)
    assert chk.reconcile_orderbook_features(df, books_in, trades_in, D)[0] == []


def test_feature_checks_fail_on_a_missing_second_and_a_wrong_value(book_store):
    df = pl.from_arrow(cd.derive_orderbook_features(book_store, D))
    books_in, trades_in, _ = cd.feature_inputs(book_store, D)
    holed = df.filter(pl.col("timestamp") != at(D, 12, 0))
    assert chk.features_grid_problems(holed, D)[0] == ["1 series without exactly one row per second of 2025-11-29"]
    wrong = df.with_columns(pl.when(pl.col("timestamp") == at(D, 0, 0, 2)).then(100.5).otherwise(pl.col("mid")).alias("mid"))
    problems, meta = chk.reconcile_orderbook_features(wrong, books_in, trades_in, D)
    assert problems and "'mid': 1" in problems[0]
    eth = books_in.filter(pl.col("event_time") >= at(D, 0, 0)).with_columns(pl.lit("ETH").alias("symbol"))
    problems, _ = chk.reconcile_orderbook_features(df, pl.concat([books_in, eth]), trades_in, D)
    assert problems == ["1 series with books on 2025-11-29 have no features: sim:ETH"]


def test_utc_recovery_asks_for_a_derived_day_once_its_inputs_are_stored(tmp_path):
    from archive_platform.datasets import BY_NAME
    from archive_platform.defs.crypto import utc_recovery_requests
    from archive_platform.settings import Settings

    env = sim_env(tmp_path, ARCHIVE_CRYPTO_CAPTURE="1")
    live = ArchiveStore(tmp_path / "live", kind="live")
    rows = trades([("BTC", 1, at(D, 1, 0), 100.0, 1.0, "buy")])
    live.write_day("crypto_trades", D, rows.set_column(8, "source", pa.array(["hyperliquid"])))
    pdef = build_definitions(env).resolve_job_def("archive_all_utc").partitions_def
    derived = [BY_NAME[n] for n in ("crypto_daily_bars", "crypto_candles", "orderbook_features")]
    reqs = utc_recovery_requests(dg.DagsterInstance.ephemeral(), derived, pdef, Settings.from_env(env),
                                 datetime(2025, 12, 1, 9, 0, tzinfo=UTC), 3, tmp_path / "live")
    # only the day with stored trades; the features also need books, which the live archive lacks
    assert [(r.partition_key, sorted(k.to_user_string() for k in r.asset_selection)) for r in reqs] == [
        ("2025-11-29", ["crypto_candles", "crypto_daily_bars"])]


def test_refresh_sensor_rebuilds_the_days_whose_inputs_were_archived_again(tmp_path):
    import time

    from archive_platform.datasets import DATASETS
    from archive_platform.defs.crypto_derived import stale_derived_requests

    defs = build_definitions(sim_env(tmp_path))
    assert "refresh_crypto_derived" in {s.name for s in defs.sensors}
    pdef = defs.resolve_job_def("archive_all_utc").partitions_def
    instance = dg.DagsterInstance.ephemeral()
    nxt = D + timedelta(days=1)

    def report(name: str, day: date) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=name, partition=day.isoformat()))
        time.sleep(0.01)  # distinct timestamps

    for day in (PREV, D, nxt):
        report("crypto_trades", day)
        report("crypto_candles", day)
        report("crypto_daily_bars", day)
    now = datetime(2025, 12, 3, 1, 0, tzinfo=UTC)
    assert stale_derived_requests(instance, DATASETS, pdef, now, 7) == []
    report("crypto_trades", D)  # late trades of D archived again
    reqs = stale_derived_requests(instance, DATASETS, pdef, now, 7)
    got = sorted((r.partition_key, r.asset_selection[0].to_user_string()) for r in reqs)
    # the candles of D and D+1 (whose first candles and daily candle hold D's end), D's bars;
    # orderbook_features was never built here: the recovery sensor's business
    assert got == [("2025-11-29", "crypto_candles"), ("2025-11-29", "crypto_daily_bars"),
                   ("2025-11-30", "crypto_candles")]
    assert all(r.run_key.startswith("refresh:") and r.tags["archive/trigger"] == "inputs_changed" for r in reqs)
