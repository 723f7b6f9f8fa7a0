"""The vectorised backtest and its metrics against hand computation and empyrical (issue 10)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import empyrical
import numpy as np
import polars as pl
import pytest

from archive_platform.analysis.backtest import (
    feature_bars, imbalance_signal, run_backtest, sma_cross_signal,
)
from archive_platform.analysis.metrics import metrics, periods_per_year

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def bars(opens, closes) -> pl.DataFrame:
    return pl.DataFrame({"timestamp": [T0 + timedelta(hours=i) for i in range(len(opens))],
                         "open": [float(x) for x in opens], "close": [float(x) for x in closes]}
                        ).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))


def test_fills_at_the_next_open_with_fees_by_hand():
    b = bars([100, 102, 110, 99], [101, 105, 100, 98])
    res = run_backtest(b, [1, 1, 0, 0], periods_per_year=8760, fee=0.001)
    assert res.equity["position"].to_list() == [0.0, 1.0, 1.0, 0.0]
    r1 = (1 - 0.001) * (105 / 102) - 1                  # bought at 102's open, fee 0.1 %
    r2 = (110 / 105) * (100 / 110) - 1                  # held through gap and bar
    r3 = (99 / 100) * (1 - 0.001) - 1                   # gap earns the old position, then sold
    assert res.equity["return"].to_list() == pytest.approx([0.0, r1, r2, r3])
    assert res.metrics["final_equity"] == pytest.approx((1 + r1) * (1 + r2) * (1 + r3))
    t = res.trades.row(0, named=True)
    assert (t["side"], t["entry_price"], t["exit_price"], t["bars"], t["open_at_end"]) == ("long", 102.0, 99.0, 2, False)
    assert t["pnl"] == pytest.approx(99 / 102 - 1 - 0.002)
    assert res.metrics["trades"] == 1 and res.metrics["win_rate"] == 0.0 and res.metrics["fills"] == 2
    assert res.metrics["exposure"] == 0.5


def test_a_round_trip_on_flat_prices_costs_two_fees_plus_slippage():
    b = bars([100] * 4, [100] * 4)
    res = run_backtest(b, [1, 0, 0, 0], periods_per_year=365, fee=0.002, slippage_bps=5)
    assert res.metrics["final_equity"] == pytest.approx((1 - 0.0025) ** 2)
    assert res.trades["pnl"].to_list() == pytest.approx([100 * (1 - 0.0005) / (100 * 1.0005) - 1 - 0.004])


def test_a_signal_at_t_never_trades_before_t_plus_1():
    rng = np.random.default_rng(7)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, 300))
    opens = np.concatenate([[100.0], close[:-1]]) * (1 + rng.normal(0, 0.001, 300))
    b = bars(opens, close)
    for k in (0, 17, 150, 298):
        sig = np.zeros(300)
        sig[k] = 1.0
        res = run_backtest(b, sig, periods_per_year=8760)
        pos = res.equity["position"].to_numpy()
        assert np.all(pos[: k + 1] == 0) and pos[k + 1] == 1.0
        assert np.all(res.equity["return"].to_numpy()[: k + 1] == 0.0)
    # changing prices from bar 200 on leaves the equity of bars 0..199 untouched
    honest = run_backtest(b, sma_cross_signal(close, 3, 10), periods_per_year=8760)
    changed = b.with_columns(pl.Series("close", np.concatenate([close[:200], close[200:] * 3])))
    after = run_backtest(changed, sma_cross_signal(changed["close"].to_numpy(), 3, 10), periods_per_year=8760)
    assert after.equity["equity"].to_numpy()[:200] == pytest.approx(honest.equity["equity"].to_numpy()[:200])


def test_metrics_equal_empyrical_on_the_same_returns():
    rng = np.random.default_rng(42)
    for ppy, r in ((252, rng.normal(0.0005, 0.01, 500)), (8760, rng.normal(-0.0001, 0.004, 2000)),
                   (365, np.concatenate([[-0.05], rng.normal(0.001, 0.02, 99)]))):
        m = metrics(r, periods_per_year=ppy)
        assert m["total_return"] == pytest.approx(empyrical.cum_returns_final(r))
        assert m["annual_return"] == pytest.approx(empyrical.annual_return(r, annualization=ppy))
        assert m["sharpe"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=ppy))
        assert m["sortino"] == pytest.approx(empyrical.sortino_ratio(r, annualization=ppy))
        assert m["max_drawdown"] == pytest.approx(empyrical.max_drawdown(r))


def test_backtest_metrics_equal_empyrical_on_its_equity_returns():
    rng = np.random.default_rng(3)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, 400))
    b = bars(np.concatenate([[100.0], close[:-1]]), close)
    res = run_backtest(b, sma_cross_signal(close, 5, 20, allow_short=True), periods_per_year=8760)
    r = res.equity["return"].to_numpy()
    assert res.metrics["sharpe"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=8760))
    assert res.metrics["max_drawdown"] == pytest.approx(empyrical.max_drawdown(r))
    assert res.metrics["total_return"] == pytest.approx(res.equity["equity"][-1] - 1)
    pnl = res.trades["pnl"].to_numpy()
    assert res.metrics["trades"] == len(pnl) > 3
    assert res.metrics["profit_factor"] == pytest.approx(pnl[pnl > 0].sum() / -pnl[pnl < 0].sum())
    assert set(res.trades["side"].to_list()) == {"long", "short"}


def test_drawdown_depth_and_duration_by_hand():
    r = np.array([0.10, -0.10, -0.10, 0.30, -0.05, 0.0])
    ts = np.array([T0.replace(tzinfo=None) + timedelta(days=i) for i in range(6)], dtype="datetime64[us]")
    m = metrics(r, periods_per_year=365, trade_pnl=[0.2, -0.1, 0.05], positions=[0, 1, 1, 1, 0, 0], timestamps=ts)
    assert m["max_drawdown"] == pytest.approx(0.81 - 1)          # 1.1 -> 0.891: 19 % of the peak
    assert m["max_drawdown_bars"] == 2                            # bars 1, 2 below the 1.1 peak
    assert m["max_drawdown_duration_s"] == 2 * 86400              # from the peak bar 0 to bar 2
    assert m["win_rate"] == pytest.approx(2 / 3) and m["profit_factor"] == pytest.approx(2.5)
    assert m["exposure"] == 0.5 and m["trades"] == 3


def test_periods_per_year_from_the_calendar():
    assert periods_per_year("1d", "crypto") == 365 and periods_per_year("1h", "crypto") == 8760
    assert periods_per_year("1d", "nyse") == 252 and periods_per_year("5m", "nyse") == 252 * 78
    assert periods_per_year("1m", "crypto") == 525600 and periods_per_year("1s", "crypto") == 365 * 86400
    with pytest.raises(ValueError, match="unknown calendar"):
        periods_per_year("1d", "lse")


def test_sma_cross_and_imbalance_signals():
    close = [1, 2, 3, 4, 5, 4, 3, 2, 1, 1]
    sig = sma_cross_signal(close, 2, 3)
    # sma2 vs sma3 from bar 2: 2.5>2, 3.5>3, 4.5>4, 4.5>4.33, 3.5<4, 2.5<3, 1.5<2, 1<1.33
    assert sig.tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert sma_cross_signal(close, 2, 3, allow_short=True).tolist() == [0, 0, 1, 1, 1, 1, -1, -1, -1, -1]
    feats = pl.DataFrame({"timestamp": [T0 + timedelta(seconds=i) for i in range(4)],
                          "mid": [100.0, 101.0, None, 99.0], "imbalance_5": [0.5, -0.4, 0.1, None]})
    assert imbalance_signal(feats, threshold=0.3).tolist() == [1.0, -1.0, 0.0, 0.0]
    fb = feature_bars(feats)
    assert fb["open"].to_list() == [100.0, 101.0, 99.0] == fb["close"].to_list()
    res = run_backtest(fb, imbalance_signal(fb), periods_per_year=periods_per_year("1s"), fee=0.0)
    # the +1 of t=0 fills at the mid of t=1 (101), the position then earns 101 -> 99
    assert res.equity["position"].to_list() == [0.0, 1.0, -1.0]
    assert res.equity["return"].to_list() == pytest.approx([0.0, 0.0, 99 / 101 - 1])


def test_bad_signals_are_refused():
    b = bars([1, 2], [1, 2])
    with pytest.raises(ValueError, match=r"signal must lie in \[-1, 1\]"):
        run_backtest(b, [2, 0], periods_per_year=365)
    with pytest.raises(ValueError, match="1 values for 2 bars"):
        run_backtest(b, [1], periods_per_year=365)
    assert math.isnan(metrics([0.0, 0.0], periods_per_year=365)["sharpe"])


def test_sma_cross_backtest_on_equity_session_candles():
    from archive_platform.analysis.backtest import sma_cross_backtest
    from archive_platform.analysis.candles import candles_from_bars

    opens = datetime(2026, 3, 9, 13, 30, tzinfo=timezone.utc)  # an EDT session, 390 minutes
    rng = np.random.default_rng(11)
    close = 500 * np.cumprod(1 + rng.normal(0, 0.001, 390))
    b = pl.DataFrame({"timestamp": [opens + timedelta(minutes=i) for i in range(390)], "symbol": "SPY",
                      "open": close, "high": close, "low": close, "close": close, "volume": 100,
                      "vwap": close, "trade_count": 3}).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    c = candles_from_bars(b, "5m")
    res = sma_cross_backtest(c, timeframe="5m", calendar="nyse", fast=3, slow=6)
    assert res.equity.height == 78
    direct = run_backtest(c, sma_cross_signal(c["close"].to_numpy(), 3, 6), periods_per_year=252 * 78)
    assert res.metrics == direct.metrics
    r = res.equity["return"].to_numpy()
    assert res.metrics["sharpe"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=252 * 78))
    with pytest.raises(ValueError, match="one series"):
        sma_cross_backtest(pl.concat([c, c.with_columns(symbol=pl.lit("QQQ"))]), timeframe="5m", calendar="nyse")


# -- review fixes: alignment, ruin, time zones, gross return ------------------------------------
def test_an_array_signal_is_sorted_together_with_its_bars():
    # bars given newest first with the signal in the same row order: the long decided at 00:00
    # must earn 100 -> 110 of the bar closing at 01:00 (it was aligned to the wrong bars before)
    b = bars([100, 100, 110, 121], [100, 110, 121, 121])
    sig = np.array([1.0, 0.0, 0.0, 0.0])
    asc = run_backtest(b, sig, periods_per_year=8760, fee=0.0)
    desc = run_backtest(b.reverse(), sig[::-1].copy(), periods_per_year=8760, fee=0.0)
    assert asc.equity["equity"].to_list() == pytest.approx([1.0, 1.1, 1.1, 1.1])
    assert desc.equity["equity"].to_list() == pytest.approx([1.0, 1.1, 1.1, 1.1])
    assert desc.equity["position"].to_list() == [0.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="duplicate timestamps"):
        run_backtest(pl.concat([b, b]), np.zeros(8), periods_per_year=8760)
    with pytest.raises(ValueError, match="positive prices"):
        run_backtest(bars([100, float("nan")], [100, 101]), [0, 0], periods_per_year=8760)


def test_a_ruinous_bar_leaves_the_equity_at_zero_not_negative():
    # short through a tripling: the bar's return is -200 %; the account is gone, and the
    # curve must not go negative and then "earn" on the next down moves (-1, -1.5, -2.25 before)
    from archive_platform.analysis.daily_backtests import consistency

    b = bars([100, 100, 300, 150], [100, 300, 150, 75])
    res = run_backtest(b, [-1, -1, -1, -1], periods_per_year=8760, fee=0.0)
    assert res.equity["equity"].to_list() == [1.0, 0.0, 0.0, 0.0]
    assert res.equity["return"].to_list() == [0.0, -1.0, 0.0, 0.0]
    assert res.equity["position"].to_list() == [0.0, -1.0, 0.0, 0.0]  # liquidated at the next open
    assert res.metrics["max_drawdown"] == -1.0 and res.metrics["total_return"] == -1.0
    assert res.metrics["final_equity"] == 0.0 and res.metrics["trades"] == 1
    assert res.trades["pnl"].to_list() == [-1.0]  # not -2: a trade loses at most the equity
    assert consistency(res) == []
    from archive_platform.analysis.backtest import ruin

    assert ruin(res) == (T0 + timedelta(hours=1), 0.0)
    assert ruin(run_backtest(b, [0, 0, 0, 0], periods_per_year=8760)) is None


def test_trade_times_keep_their_utc_time_zone():
    res = run_backtest(bars([100, 102, 110, 99], [101, 105, 100, 98]), [1, 1, 0, 0], periods_per_year=8760)
    assert res.trades.schema["entry_time"] == pl.Datetime("us", "UTC") == res.trades.schema["exit_time"]
    assert res.trades["entry_time"].to_list() == [T0 + timedelta(hours=1)]
    assert res.trades["exit_time"].to_list() == [T0 + timedelta(hours=3)]


def test_gross_return_is_the_same_positions_without_costs():
    b = bars([100, 102, 110, 99], [101, 105, 100, 98])
    res = run_backtest(b, [1, 1, 0, 0], periods_per_year=8760, fee=0.001, slippage_bps=5)
    assert res.metrics["gross_return"] == pytest.approx((105 / 102) * (110 / 105) * (100 / 110) * (99 / 100) - 1)
    free = run_backtest(b, [1, 1, 0, 0], periods_per_year=8760, fee=0.0)
    assert res.metrics["gross_return"] == pytest.approx(free.metrics["total_return"])
    assert res.metrics["total_return"] == pytest.approx((1 + free.metrics["total_return"]) * (1 - 0.0015) ** 2 - 1)
