"""Candle checks: gaps, OHLC sanity, volume equal to the trades' (issue 10)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from archive_platform.analysis.candles import candles
from archive_platform.analysis.checks import check_candles

T0 = datetime(2026, 3, 1, 23, 50, tzinfo=timezone.utc)  # spans the UTC midnight


def trades() -> pl.DataFrame:
    secs = [5, 70, 75, 400, 610, 900, 1190]
    return pl.DataFrame({
        "exchange": "binance", "symbol": "BTCUSDT", "trade_id": list(range(len(secs))),
        "event_time": [T0 + timedelta(seconds=s) for s in secs],
        "price": [100.0, 101.0, 99.5, 100.5, 102.0, 101.0, 100.0], "size": [1.0, 0.5, 0.25, 2.0, 1.0, 1.5, 0.1],
    }).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))


def test_healthy_candles_pass():
    tr = trades()
    for tf in ("1m", "5m"):
        c = candles(tr, tf)
        assert c["is_empty"].any() if tf == "1m" else True
        assert check_candles(c, tr) == []


def test_each_problem_is_named():
    tr = trades()
    c = candles(tr, "1m")
    gap_at = c.filter(pl.col("is_empty"))["timestamp"][0]
    holed = c.filter(pl.col("timestamp") != gap_at)
    assert check_candles(holed) == [f"missing candle (gap): binance/BTCUSDT 1m {gap_at.isoformat()}"]
    first = c["timestamp"][0]
    broken = c.with_columns(pl.when(pl.col("timestamp") == first).then(50.0).otherwise(pl.col("high")).alias("high"))
    assert check_candles(broken) == [f"OHLC out of order or non-positive: binance/BTCUSDT 1m {first.isoformat()}"]
    heavy = c.with_columns(pl.when(pl.col("timestamp") == first).then(9.0).otherwise(pl.col("volume")).alias("volume"))
    assert check_candles(heavy, tr) == [
        f"volume or trade count differs from the trades': binance/BTCUSDT 1m {first.isoformat()}"]
    twice = pl.concat([c, c.head(1)])
    assert check_candles(twice)[0].startswith("duplicate candle: binance/BTCUSDT 1m")
