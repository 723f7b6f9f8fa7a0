"""Candles on hand-made trades and bars at boundary instants (issue 10)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest

from archive_platform.analysis.candles import CANDLES_SCHEMA, candles, candles_from_bars
from archive_platform.analysis.upsert import apply_late_trades, upsert_candles

UTC = timezone.utc


def T(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


def trades(rows, exchange="sim", symbol="BTCUSDT") -> pl.DataFrame:
    """rows: (event_time, price, size[, side]); trade ids in row order."""
    return pl.DataFrame({
        "exchange": [exchange] * len(rows), "symbol": [symbol] * len(rows),
        "trade_id": list(range(1, len(rows) + 1)),
        "event_time": [r[0] for r in rows], "price": [float(r[1]) for r in rows],
        "size": [float(r[2]) for r in rows], "side": ["buy"] * len(rows),
    }).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))


def rows(df: pl.DataFrame) -> list[tuple]:
    return list(df.select("timestamp", "open", "high", "low", "close", "volume", "trades", "is_empty").iter_rows())


def test_trade_exactly_on_close_time_closes_that_candle():
    tr = trades([(T(2026, 1, 5, 9, 0), 9, 1),            # closes the 09:00 candle
                 (T(2026, 1, 5, 9, 0, 0, 1), 10, 1),      # first trade of the 09:05 candle
                 (T(2026, 1, 5, 9, 3), 12, 2),
                 (T(2026, 1, 5, 9, 5), 11, 1),            # last trade of the 09:05 candle
                 (T(2026, 1, 5, 9, 5, 0, 1), 13, 1)])     # belongs to 09:10
    out = candles(tr, "5m")
    assert rows(out) == [
        (T(2026, 1, 5, 9, 0), 9.0, 9.0, 9.0, 9.0, 1.0, 1, False),
        (T(2026, 1, 5, 9, 5), 10.0, 12.0, 10.0, 11.0, 4.0, 3, False),
        (T(2026, 1, 5, 9, 10), 13.0, 13.0, 13.0, 13.0, 1.0, 1, False),
    ]
    assert out["vwap"][1] == pytest.approx((10 + 24 + 11) / 4)
    assert out["timeframe"].unique().to_list() == ["5m"]
    assert out.to_arrow().cast(CANDLES_SCHEMA).schema == CANDLES_SCHEMA


def test_minute_without_trades_is_an_empty_candle_with_the_previous_close():
    tr = trades([(T(2026, 1, 5, 9, 0, 30), 100, 1), (T(2026, 1, 5, 9, 0, 40), 101, 1),
                 (T(2026, 1, 5, 9, 3, 10), 99, 2)])
    out = candles(tr.to_arrow(), "1m")
    assert rows(out) == [
        (T(2026, 1, 5, 9, 1), 100.0, 101.0, 100.0, 101.0, 2.0, 2, False),
        (T(2026, 1, 5, 9, 2), 101.0, 101.0, 101.0, 101.0, 0.0, 0, True),
        (T(2026, 1, 5, 9, 3), 101.0, 101.0, 101.0, 101.0, 0.0, 0, True),
        (T(2026, 1, 5, 9, 4), 99.0, 99.0, 99.0, 99.0, 2.0, 1, False),
    ]
    assert out["vwap"].to_list()[1:3] == [None, None]


def test_a_bucket_of_zero_size_trades_has_a_null_vwap_sorted_or_not():
    # zero-quantity aggregate trades are archived as sent; 0/0 must not become a NaN VWAP
    # (the candles' hard "vwap is finite" rule would refuse the whole day)
    rows_ = [(T(2026, 1, 5, 9, 0, 30), 100, 1), (T(2026, 1, 5, 9, 1, 30), 101, 0), (T(2026, 1, 5, 9, 2, 30), 99, 2)]
    for tr in (trades(rows_), trades(rows_[::-1])):  # sorted: the reduceat path; shuffled: group_by
        out = candles(tr, "1m")
        assert out["vwap"].to_list() == [100.0, None, 99.0]
        assert out["trades"].to_list() == [1, 1, 1] and out["volume"].to_list() == [1.0, 0.0, 2.0]
        assert not out["is_empty"].to_list()[1]


def test_utc_midnight_closes_the_crypto_day():
    tr = trades([(T(2026, 2, 28, 12), 50, 1), (T(2026, 3, 1, 0, 0), 51, 1),  # exactly midnight: Feb 28's candle
                 (T(2026, 3, 1, 0, 0, 0, 1), 52, 1), (T(2026, 3, 2, 23, 59, 59), 53, 1)])
    day = candles(tr, "1d")
    assert rows(day) == [
        (T(2026, 3, 1), 50.0, 51.0, 50.0, 51.0, 2.0, 2, False),
        (T(2026, 3, 2), 52.0, 52.0, 52.0, 52.0, 1.0, 1, False),
        (T(2026, 3, 3), 53.0, 53.0, 53.0, 53.0, 1.0, 1, False),
    ]
    four = candles(tr, "4h", start=T(2026, 2, 28, 20), end=T(2026, 3, 1, 8))
    assert rows(four) == [
        (T(2026, 3, 1, 0), 51.0, 51.0, 51.0, 51.0, 1.0, 1, False),
        (T(2026, 3, 1, 4), 52.0, 52.0, 52.0, 52.0, 1.0, 1, False),
        (T(2026, 3, 1, 8), 52.0, 52.0, 52.0, 52.0, 0.0, 0, True),
    ]


def test_no_candle_before_the_first_trade_unless_seeded():
    tr = trades([(T(2026, 1, 5, 1, 30), 10, 1)])
    plain = candles(tr, "1h", start=T(2026, 1, 5), end=T(2026, 1, 5, 3))
    assert [r[0] for r in rows(plain)] == [T(2026, 1, 5, 2), T(2026, 1, 5, 3)]
    seed = pl.DataFrame({"exchange": ["sim", "sim"], "symbol": ["BTCUSDT", "ETHUSDT"], "close": [9.5, 3.0]})
    seeded = candles(tr, "1h", start=T(2026, 1, 5), end=T(2026, 1, 5, 3), seed=seed)
    btc = seeded.filter(pl.col("symbol") == "BTCUSDT")
    assert rows(btc)[0] == (T(2026, 1, 5, 1), 9.5, 9.5, 9.5, 9.5, 0.0, 0, True)
    assert btc.height == 3
    eth = seeded.filter(pl.col("symbol") == "ETHUSDT")  # no trades at all: seed carried over the range
    assert eth["close"].to_list() == [3.0, 3.0, 3.0] and eth["is_empty"].all()


def test_series_are_independent():
    tr = pl.concat([trades([(T(2026, 1, 5, 0, 0, 10), 1, 1)], symbol="A"),
                    trades([(T(2026, 1, 5, 0, 2, 10), 2, 1)], symbol="B")])
    out = candles(tr, "1m")
    assert out.filter(pl.col("symbol") == "A").height == 1
    assert out.filter(pl.col("symbol") == "B")["timestamp"].to_list() == [T(2026, 1, 5, 0, 3)]


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="missing column.*size"):
        candles(trades([(T(2026, 1, 5), 1, 1)]).drop("size"), "1m")
    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        candles(trades([(T(2026, 1, 5), 1, 1)]), "2m")


def bars(day_rows) -> pl.DataFrame:
    """stocks_1m rows: (bar start, o, h, l, c, volume, vwap, trade_count)."""
    return pl.DataFrame({
        "timestamp": [r[0] for r in day_rows], "symbol": ["SPY"] * len(day_rows),
        "open": [float(r[1]) for r in day_rows], "high": [float(r[2]) for r in day_rows],
        "low": [float(r[3]) for r in day_rows], "close": [float(r[4]) for r in day_rows],
        "volume": [r[5] for r in day_rows], "vwap": [r[6] for r in day_rows],
        "trade_count": [r[7] for r in day_rows],
    }).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")), pl.col("volume").cast(pl.Int64))


def test_equity_candles_follow_the_session_across_dst():
    # Friday 2026-03-06 is EST (open 14:30 UTC); Monday 2026-03-09 is EDT (open 13:30 UTC)
    b = bars([
        (T(2026, 3, 6, 14, 30), 10, 11, 9, 10.5, 100, 10.2, 5),   # 09:30 ET bar -> 09:35 candle
        (T(2026, 3, 6, 14, 34), 10.5, 12, 10, 11, 300, 11.0, 7),  # 09:34 bar, still the 09:35 candle
        (T(2026, 3, 6, 14, 35), 11, 11, 11, 11, 10, None, None),  # 09:35 bar -> 09:40 candle
        (T(2026, 3, 6, 14, 0), 1, 1, 1, 1, 1, 1.0, 1),            # pre-market: dropped
        (T(2026, 3, 9, 13, 30), 20, 21, 19, 20, 50, 20.0, 2),     # Monday 09:30 ET
    ])
    out = candles_from_bars(b, "5m")
    fri = out.filter(pl.col("timestamp").dt.date() == date(2026, 3, 6))
    mon = out.filter(pl.col("timestamp").dt.date() == date(2026, 3, 9))
    assert fri.height == 78 and mon.height == 1  # a series ends at its last candle
    first = fri.row(0, named=True)
    assert first["timestamp"] == T(2026, 3, 6, 14, 35)
    assert (first["open"], first["high"], first["low"], first["close"]) == (10.0, 12.0, 9.0, 11.0)
    assert first["volume"] == 400 and first["trades"] == 12
    assert first["vwap"] == pytest.approx((100 * 10.2 + 300 * 11.0) / 400)
    assert fri["timestamp"][-1] == T(2026, 3, 6, 21, 0)  # 16:00 EST
    assert fri["is_empty"][2:].all() and fri["close"][-1] == 11.0
    assert mon.row(0, named=True)["timestamp"] == T(2026, 3, 9, 13, 35)  # 09:35 EDT
    assert not out.filter(pl.col("timestamp") < T(2026, 3, 6, 14, 35)).height  # nothing pre-market
    hourly = candles_from_bars(b, "1h", end=T(2026, 3, 9, 20, 0))
    assert hourly.filter(pl.col("timestamp").dt.date() == date(2026, 3, 9))["timestamp"].to_list() == [
        T(2026, 3, 9, h, 30) for h in range(14, 20)] + [T(2026, 3, 9, 20, 0)]
    monday_first = hourly.filter(pl.col("timestamp") == T(2026, 3, 9, 14, 30)).row(0, named=True)
    assert (monday_first["open"], monday_first["is_empty"]) == (20.0, False)


def test_half_day_close_ends_the_equity_day():
    # 2026-11-27, the day after Thanksgiving: the session closes at 13:00 ET (18:00 UTC)
    b = bars([(T(2026, 11, 27, 14, 30), 5, 5, 5, 5, 10, 5.0, 1), (T(2026, 11, 27, 17, 59), 6, 6, 6, 6, 10, 6.0, 1)])
    day = candles_from_bars(b, "1d")
    assert rows(day) == [(T(2026, 11, 27, 18, 0), 5.0, 6.0, 5.0, 6.0, 20.0, 2, False)]
    five = candles_from_bars(b, "5m")
    assert five.height == 42 and five["timestamp"][-1] == T(2026, 11, 27, 18, 0)
    hourly = candles_from_bars(b, "1h")
    assert hourly["timestamp"].to_list()[-2:] == [T(2026, 11, 27, 17, 30), T(2026, 11, 27, 18, 0)]


def test_late_trade_fills_an_empty_candle_and_moves_the_following_empties():
    stored = trades([(T(2026, 1, 5, 9, 0, 30), 100, 1), (T(2026, 1, 5, 9, 3, 30), 104, 1)])
    existing = candles(stored, "1m")  # 09:01 trade, 09:02 + 09:03 empty at 100, 09:04 trade
    late = trades([(T(2026, 1, 5, 9, 1, 15), 102, 3)]).with_columns(trade_id=pl.lit(99, pl.Int64))
    merged = apply_late_trades(existing, stored, late, "1m")
    assert rows(merged) == [
        (T(2026, 1, 5, 9, 1), 100.0, 100.0, 100.0, 100.0, 1.0, 1, False),
        (T(2026, 1, 5, 9, 2), 102.0, 102.0, 102.0, 102.0, 3.0, 1, False),
        (T(2026, 1, 5, 9, 3), 102.0, 102.0, 102.0, 102.0, 0.0, 0, True),
        (T(2026, 1, 5, 9, 4), 104.0, 104.0, 104.0, 104.0, 1.0, 1, False),
    ]
    # a late trade inside a stored candle recomputes it from all its trades (re-sent ids dedup)
    late2 = pl.concat([late, trades([(T(2026, 1, 5, 9, 0, 10), 90, 2)]).with_columns(trade_id=pl.lit(50, pl.Int64))])
    merged2 = apply_late_trades(merged, pl.concat([stored, late]), late2, "1m")
    assert rows(merged2)[0] == (T(2026, 1, 5, 9, 1), 90.0, 100.0, 90.0, 100.0, 3.0, 2, False)
    assert rows(merged2)[1] == rows(merged)[1]


def test_upsert_is_last_write_wins_and_fills_the_gap_between():
    a = candles(trades([(T(2026, 1, 5, 9, 0, 30), 100, 1)]), "1m")
    b = candles(trades([(T(2026, 1, 5, 9, 3, 30), 110, 1)]), "1m")
    out = upsert_candles(a, b)
    assert [r[4] for r in rows(out)] == [100.0, 100.0, 100.0, 110.0]
    assert out["is_empty"].to_list() == [False, True, True, False]
    newer = candles(trades([(T(2026, 1, 5, 9, 0, 40), 95, 5)]), "1m")
    again = upsert_candles(out, newer)
    assert rows(again)[0] == (T(2026, 1, 5, 9, 1), 95.0, 95.0, 95.0, 95.0, 5.0, 1, False)
    assert [r[4] for r in rows(again)] == [95.0, 95.0, 95.0, 110.0]


def test_unsorted_input_gives_the_same_candles_as_sorted():
    base = T(2026, 1, 5)
    tr = pl.concat([
        trades([(base + timedelta(seconds=7 * i + 3), 100 + (i * 37) % 11, 1 + i % 3) for i in range(200)], symbol=s)
        for s in ("A", "B", "C")])
    shuffled = tr.sample(fraction=1.0, shuffle=True, seed=3)
    assert shuffled["event_time"].to_list() != tr["event_time"].to_list()
    for tf in ("1m", "5m", "15m"):
        a = candles(tr, tf)
        b = candles(shuffled, tf).sort("exchange", "symbol", "timestamp")
        assert a.equals(b)
        assert a["volume"].sum() == pytest.approx(tr["size"].sum())
        assert a["trades"].sum() == 600 and a.filter(pl.col("is_empty")).height == 0


def test_unaligned_bounds_and_empty_input():
    tr = trades([(T(2026, 1, 5, 9, 10), 10, 1)])
    out = candles(tr, "1h", start=T(2026, 1, 5, 8, 30), end=T(2026, 1, 5, 11, 30))
    assert out["timestamp"].to_list() == [T(2026, 1, 5, 10), T(2026, 1, 5, 11)]  # never past end
    seed = pl.DataFrame({"exchange": ["sim"], "symbol": ["BTCUSDT"], "close": [9.0]})
    seeded = candles(tr, "1h", start=T(2026, 1, 5, 8, 30), end=T(2026, 1, 5, 11, 30), seed=seed)
    assert seeded["timestamp"].to_list() == [T(2026, 1, 5, h) for h in (9, 10, 11)]
    assert seeded["close"].to_list() == [9.0, 10.0, 10.0]
    none = candles(tr.clear(), "5m")
    assert none.height == 0 and none.columns == candles(tr, "5m").columns
