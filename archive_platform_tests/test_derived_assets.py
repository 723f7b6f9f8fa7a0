"""The derived datasets and the daily backtests through Dagster, on two simulated sessions.

``archive_all`` archives SPY and QQQ for 2025-11-26 (a full day) and 2025-11-28 (13:00 close);
every derived partition is compared with an independent computation from the stored inputs
(plain polars/numpy here, not the functions that wrote them), and every check must pass.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

from archive_platform import calendar, macros, regime
from archive_platform.analysis import candles_from_bars
from archive_platform.analysis.equity_candles import TIMEFRAMES, reconcile_candles
from archive_platform.datasets import BY_NAME
from archive_platform.datasets.candles import TIMEFRAMES as DECLARED_TIMEFRAMES
from archive_platform.regime_checks import reconcile_daily_bars, reconcile_daily_iv
from archive_platform.store import ArchiveStore
from archive_platform.views import refresh_views
from archive_platform_tests.dagster_helpers import checks, defs_for, materializations, run_job

pytestmark = pytest.mark.slow  # two sessions of every dataset through Dagster (~1 minute)

FULL, HALF = date(2025, 11, 26), date(2025, 11, 28)
SYMS = ["QQQ", "SPY"]
DERIVED = ("daily_bars", "daily_iv", "market_regime", "candles")
_INSTANCE: dict = {}  # the module fixture's Dagster instance, open while its tests run


@pytest.fixture(scope="module")
def archived(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("derived")
    defs = defs_for(tmp, ARCHIVE_SYMBOLS="SPY,QQQ")
    with dg.instance_for_test() as instance:
        results = {d: run_job(defs, "archive_all", instance, partition_key=d.isoformat())
                   for d in (FULL, HALF)}
        _INSTANCE["archived"] = instance
        yield tmp, ArchiveStore(tmp / "sim", kind="sim"), results


def _df(store, name, day) -> pl.DataFrame:
    return pl.from_arrow(store.read_day(name, day))


def _session_bars(store, day) -> pl.DataFrame:
    s = calendar.session(day)
    return _df(store, "stocks_1m", day).filter(
        (pl.col("timestamp") >= s.open_utc) & (pl.col("timestamp") < s.close_utc)).sort("timestamp")


def test_every_check_passes_including_the_input_comparisons(archived):
    _, _, results = archived
    for day, result in results.items():
        evals = checks(result)
        assert {(d, "matches_inputs") for d in DERIVED} <= set(evals)
        assert ("backtests", "consistent") in evals
        assert {k: e.description for k, e in evals.items() if not e.passed} == {}, day
        meta = materializations(result)
        assert meta["daily_bars"]["dagster/row_count"] == meta["market_regime"]["dagster/row_count"] == len(SYMS)


def test_daily_bars_are_the_session_minutes_summed(archived):
    _, store, _ = archived
    for day, minutes in ((FULL, 390), (HALF, 210)):
        stored = _df(store, "daily_bars", day).sort("symbol")
        assert stored["symbol"].to_list() == SYMS
        s = calendar.session(day)
        assert set(stored["timestamp"].to_list()) == {s.close_utc}
        assert set(stored["source"].to_list()) == {"sim"}
        for row in stored.iter_rows(named=True):
            b = _session_bars(store, day).filter(pl.col("symbol") == row["symbol"])
            assert row["volume"] == int(np.sum(b["volume"].to_numpy())) > 0
            assert row["trade_count"] == int(np.sum(b["trade_count"].to_numpy()))
            assert (row["open"], row["close"]) == (b["open"][0], b["close"][-1])
            assert (row["high"], row["low"]) == (b["high"].max(), b["low"].min())
            assert row["bars"] == row["session_minutes"] == minutes


def test_daily_iv_equals_the_pure_function_of_the_stored_options(archived):
    _, store, _ = archived
    for day in (FULL, HALF):
        want = pl.from_arrow(regime.daily_iv(store.read_day("options", day))).drop("date")
        got = _df(store, "daily_iv", day).drop("timestamp", "et_offset", "source")
        assert got.sort("symbol").equals(want.select(got.columns).sort("symbol"))
        assert got["snapshots"].to_list() == ([27, 27] if day == FULL else [15, 15])


def test_market_regime_traces_its_inputs_and_applies_the_50_rule(archived):
    _, store, _ = archived
    rows = _df(store, "market_regime", HALF).sort("symbol")
    bars = _df(store, "daily_bars", HALF).sort("symbol")
    ivs = _df(store, "daily_iv", HALF).sort("symbol")
    vix = _df(store, "vix", HALF).sort("snapshot_time")
    assert rows["close"].to_list() == bars["close"].to_list()
    assert rows["iv"].to_list() == ivs["iv30_close"].to_list()
    assert set(rows["vix_close"].to_list()) == {vix["level"][-1]}
    # two sessions of history (11-26 and 11-28): fewer than 30, so rank and percentile are 50
    assert rows["iv_sessions"].to_list() == [2, 2]
    assert rows["iv_rank"].to_list() == rows["iv_percentile"].to_list() == [50.0, 50.0]
    assert all("fewer than 30 sessions" in n for n in rows["iv_rank_note"].to_list())
    assert rows["iv_first"].to_list() == [FULL, FULL]
    assert rows["sma20"].null_count() == 2 and rows["trend"].null_count() == 2


def test_candles_cover_the_session_and_sum_to_the_bars(archived):
    _, store, _ = archived
    assert tuple(DECLARED_TIMEFRAMES) == TIMEFRAMES
    for day, n5 in ((FULL, 78), (HALF, 42)):
        c = _df(store, "candles", day)
        s = calendar.session(day)
        for sym in SYMS:
            five = c.filter((pl.col("symbol") == sym) & (pl.col("timeframe") == "5m")).sort("timestamp")
            assert five.height == n5
            assert five["timestamp"][-1] == s.close_utc  # the last candle closes at 16:00 / 13:00
            assert five["timestamp"][0] == s.open_utc + timedelta(minutes=5)  # 09:35 ET
            b = _session_bars(store, day).filter(pl.col("symbol") == sym)
            for tf in TIMEFRAMES:
                part = c.filter((pl.col("symbol") == sym) & (pl.col("timeframe") == tf))
                assert part["volume"].sum() == float(b["volume"].sum())
        # the same as the pure function, called the way the asset's docs say
        pure = candles_from_bars(_df(store, "stocks_1m", day), "1h", start=s.open_utc, end=s.close_utc)
        got = c.filter(pl.col("timeframe") == "1h").select(pure.columns).sort("symbol", "timestamp")
        assert got.equals(pure.sort("symbol", "timestamp"))


def test_input_checks_fail_on_a_tampered_partition(archived):
    _, store, _ = archived
    bars = store.read_day("daily_bars", FULL)
    tampered = bars.set_column(bars.schema.get_field_index("volume"), "volume",
                               (pl.from_arrow(bars["volume"]) + 1).to_arrow())
    problems, meta = reconcile_daily_bars(tampered, store.read_day("stocks_1m", FULL), FULL)
    assert problems == ["2 values differ from the input"]
    assert any("volume" in d for d in meta["differences"])
    # an options snapshot lost after daily_iv was derived: the counts no longer agree
    opts = pl.from_arrow(store.read_day("options", FULL))
    fewer = opts.filter(pl.col("snapshot_time") != opts["snapshot_time"].max()).to_arrow()
    problems, _ = reconcile_daily_iv(store.read_day("daily_iv", FULL), fewer, FULL)
    assert problems
    candles = pl.from_arrow(store.read_day("candles", FULL))
    gap = candles.filter(~((pl.col("symbol") == "SPY") & (pl.col("timeframe") == "5m")
                           & (pl.col("timestamp") == datetime(2025, 11, 26, 16, 0, tzinfo=timezone.utc))))
    problems, _ = reconcile_candles(gap, store.read_day("stocks_1m", FULL), FULL)
    assert any("missing candle (gap)" in p for p in problems)
    assert any("volume or trades differ" in p for p in problems)


def test_backtest_metadata_matches_an_independent_sma_cross(archived):
    tmp, store, results = archived
    meta = materializations(results[HALF])["backtests"]
    c = pl.concat([_df(store, "candles", d) for d in (FULL, HALF)]).filter(
        (pl.col("symbol") == "SPY") & (pl.col("timeframe") == "5m")).sort("timestamp")
    close, opens = c["close"].to_numpy(), c["open"].to_numpy()
    sma = lambda n: np.convolve(close, np.ones(n) / n)[: len(close)]  # noqa: E731
    fast, slow = sma(20), sma(50)
    signal = np.where((np.arange(len(close)) >= 49) & (fast > slow), 1.0, 0.0)
    pos = np.concatenate([[0.0], signal[:-1]])  # filled at the next candle's open
    prev = np.concatenate([[0.0], pos[:-1]])
    prev_close = np.concatenate([[opens[0]], close[:-1]])
    r = (1 + prev * (opens / prev_close - 1)) * (1 - np.abs(pos - prev) * 0.001) * (1 + pos * (close / opens - 1)) - 1
    assert meta["equity_final"] == pytest.approx(np.prod(1 + r), rel=1e-12)
    assert meta["total_return"] == pytest.approx(np.prod(1 + r) - 1, abs=1e-12)
    entries = int(np.count_nonzero((pos != 0) & (prev == 0)))
    assert meta["trades"] == entries
    rows = {r.data["metric"]: r.data["value"] for r in meta["metrics"].records}
    assert rows["bars"] == len(close) == 78 + 42 and rows["final_equity"] == meta["equity_final"]
    assert len(meta["equity_curve"].records) == 120
    assert meta["history"].startswith(f"{FULL}..{HALF} (2 sessions")
    curve = pl.read_parquet(meta["equity_path"])
    assert curve["equity"][-1] == pytest.approx(meta["equity_final"], rel=1e-12)
    assert np.array_equal(curve["position"].to_numpy(), pos)


def test_the_views_file_answers_the_time_grid_helpers(archived):
    tmp, store, _ = archived
    db = tmp / "views.duckdb"
    refresh_views(tmp / "sim", db, BY_NAME.values())
    con = duckdb.connect(str(db))
    try:
        assert macros.install_for_views(con) == []  # daily_bars, daily_iv and options are views
    finally:
        con.close()
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT date, close, bars, note FROM bars_forward('SPY', DATE '2025-11-26', 2)"
                           ).fetchall()
        stored = _df(store, "daily_bars", HALF).filter(pl.col("symbol") == "SPY")
        assert rows[1] == (HALF, stored["close"][0], 210, None)
        assert rows[0][0] == FULL and rows[0][2] == 390
        (side, n, p), = con.execute(
            "SELECT side, sample_size, probability FROM finish_probability('SPY', 1, 1.0) "
            "WHERE side = 'above'").fetchall()
        full = _df(store, "daily_bars", FULL).filter(pl.col("symbol") == "SPY")["close"][0]
        assert (n, p) == (1, float(stored["close"][0] > full))
        with pytest.raises(duckdb.Error, match="not an NYSE session"):
            con.execute("SELECT * FROM bar_of_day('SPY', DATE '2025-11-27')").fetchall()
    finally:
        con.close()


def test_install_for_views_creates_what_is_missing():
    con = duckdb.connect()
    try:
        assert macros.install_for_views(con) == ["daily_bars", "daily_iv", "options"]
        assert con.execute("SELECT trading_day_add(DATE '2020-10-20', 28)").fetchone()[0] == date(2020, 11, 30)
        with pytest.raises(duckdb.Error, match="unknown symbol SPY"):
            con.execute("SELECT * FROM bar_of_day('SPY', DATE '2025-11-26')").fetchall()
    finally:
        con.close()


def test_the_demo_report_prints_what_the_instance_recorded(archived, capsys):
    from archive_platform.cli.demo_report import print_backtest_report

    _, _, results = archived
    meta = materializations(results[HALF])["backtests"]
    print_backtest_report(archived_instance(), HALF)
    out = capsys.readouterr().out
    assert "Backtest sma_cross_spy_5m as of 2025-11-28: SMA(20) / SMA(50) crossover" in out
    assert f"candles: {meta['history']}" in out
    assert f"  {'final_equity':<24} {meta['equity_final']:13.4f}" in out
    print_backtest_report(archived_instance(), date(2025, 11, 25))  # nothing recorded that day
    assert "No backtest was recorded for 2025-11-25" in capsys.readouterr().out


def archived_instance():
    return _INSTANCE["archived"]
