"""Candles: archive_platform.analysis.candles vs DuckDB (time_bucket + generate_series) vs pandas resample.

2,000,000 synthetic trades of 56 symbols over one UTC day (skewed activity, so the quiet symbols
have empty minutes), right-aligned 1-minute candles with gap filling. Each engine starts from the
trades already in its own in-memory format (polars / Arrow registered in DuckDB / pandas) and ends
with a finished table; the three outputs are asserted equal (exact for timestamps, counts and
flags, relative 1e-9 for float sums whose order of addition differs). Best of --repeat runs.

    ./run python bench/candles.py [--trades 2000000] [--symbols 56] [--timeframe 1m] [--repeat 3] [--shuffled]
"""

from __future__ import annotations

import argparse
import time

import duckdb
import numpy as np
import pandas as pd
import polars as pl
from polars.testing import assert_frame_equal

from archive_platform.analysis.candles import TIMEFRAMES, candles

DAY_US = 86_400 * 1_000_000
START_US = 1_772_323_200 * 1_000_000  # 2026-03-01 00:00 UTC


def synthetic(n: int, symbols: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, symbols + 1) ** 1.3
    sym = np.sort(rng.choice(symbols, size=n, p=weights / weights.sum()))
    counts = np.bincount(sym, minlength=symbols)
    # strictly increasing times per symbol (sorted draws + rank), the order the store keeps
    t = np.concatenate([np.sort(rng.integers(0, DAY_US - c, c)) + np.arange(c) for c in counts]) + START_US
    price = 100 * (1 + sym) * np.exp(np.cumsum(rng.normal(0, 2e-4, n)) * 0.01)
    return pl.DataFrame({
        "exchange": "sim", "symbol": [f"S{i:02d}USDT" for i in sym], "trade_id": np.arange(n, dtype=np.int64),
        "event_time": t, "price": np.round(price, 4), "size": np.round(rng.exponential(0.5, n) + 0.001, 6),
    }).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))


def duckdb_candles(con, timeframe: str) -> pl.DataFrame:
    secs = TIMEFRAMES[timeframe]
    step = f"INTERVAL '{secs} seconds'"
    sql = f"""
    WITH t AS (
      SELECT exchange, symbol, event_time, price, size,
             time_bucket({step}, event_time - INTERVAL '1 microsecond') + {step} AS ts
      FROM trades),
    agg AS (
      SELECT exchange, symbol, ts, arg_min(price, event_time) AS open, max(price) AS high,
             min(price) AS low, arg_max(price, event_time) AS close, sum(size) AS volume,
             sum(price * size) / sum(size) AS vwap, count(*) AS trades
      FROM t GROUP BY ALL),
    bounds AS (SELECT exchange, symbol, min(ts) AS lo, max(ts) AS hi FROM agg GROUP BY ALL),
    grid AS (
      SELECT exchange, symbol, unnest(generate_series(lo, hi, {step})) AS ts FROM bounds),
    filled AS (
      SELECT g.exchange, g.symbol, g.ts, a.open, a.high, a.low, a.close, a.volume, a.vwap, a.trades,
             last_value(a.close IGNORE NULLS) OVER (PARTITION BY g.exchange, g.symbol ORDER BY g.ts
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS prev
      FROM grid g LEFT JOIN agg a USING (exchange, symbol, ts))
    SELECT exchange, symbol, '{timeframe}' AS timeframe, ts AS timestamp,
           coalesce(open, prev) AS open, coalesce(high, prev) AS high, coalesce(low, prev) AS low,
           coalesce(close, prev) AS close, coalesce(volume, 0.0) AS volume, vwap,
           coalesce(trades, 0)::BIGINT AS trades, open IS NULL AS is_empty
    FROM filled ORDER BY exchange, symbol, timestamp"""
    return pl.from_arrow(con.sql(sql).to_arrow_table())


def pandas_candles(pdf: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    rule = f"{TIMEFRAMES[timeframe]}s"
    g = pdf.set_index("event_time").groupby(["exchange", "symbol"])
    kw = {"label": "right", "closed": "right"}
    out = g["price"].resample(rule, **kw).ohlc()
    sums = g[["size", "pv"]].resample(rule, **kw).sum()
    out["volume"], out["pv"] = sums["size"], sums["pv"]
    out["trades"] = g["size"].resample(rule, **kw).count()
    out["is_empty"] = out["trades"] == 0
    out["close"] = out["close"].groupby(level=[0, 1]).ffill()
    for c in ("open", "high", "low"):
        out[c] = out[c].fillna(out["close"])
    out["vwap"] = (out["pv"] / out["volume"]).where(~out["is_empty"])
    return out.drop(columns="pv").reset_index()


def best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trades", type=int, default=2_000_000)
    ap.add_argument("--symbols", type=int, default=56)
    ap.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shuffled", action="store_true",
                    help="shuffle the rows (default: sorted by exchange, symbol, time, as stored)")
    args = ap.parse_args()
    trades = synthetic(args.trades, args.symbols)
    if args.shuffled:
        trades = trades.sample(fraction=1.0, shuffle=True, seed=1)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.register("trades", trades.to_arrow())
    pdf = trades.to_pandas().assign(pv=lambda d: d["price"] * d["size"])

    t_ours, ours = best(lambda: candles(trades, args.timeframe), args.repeat)
    t_duck, duck = best(lambda: duckdb_candles(con, args.timeframe), args.repeat)
    t_pd, pdo = best(lambda: pandas_candles(pdf, args.timeframe), args.repeat)

    ours = ours.sort(["exchange", "symbol", "timestamp"])
    assert_frame_equal(ours, duck.select(ours.columns), check_exact=False, rel_tol=1e-9, abs_tol=0)
    pdl = pl.from_pandas(pdo).with_columns(pl.lit(args.timeframe).alias("timeframe"),
                                           pl.col("event_time").alias("timestamp"),
                                           pl.col("trades").cast(pl.Int64))
    pdl = pdl.with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    assert_frame_equal(ours, pdl.select(ours.columns), check_exact=False, rel_tol=1e-9, abs_tol=0)
    empty = int(ours["is_empty"].sum())
    print(f"{args.trades:,} trades, {args.symbols} symbols, {args.timeframe}: {ours.height:,} candles "
          f"({empty:,} empty), {'shuffled' if args.shuffled else 'sorted'} input; outputs identical (floats to 1e-9 relative)")
    print(f"  archive_platform (polars) {t_ours:8.3f} s")
    print(f"  DuckDB time_bucket+gen    {t_duck:8.3f} s   ours is {t_duck / t_ours:5.2f}x faster (target >= 1.5x)")
    print(f"  pandas resample           {t_pd:8.3f} s   ours is {t_pd / t_ours:5.2f}x faster (target >= 5x)")


if __name__ == "__main__":
    main()
