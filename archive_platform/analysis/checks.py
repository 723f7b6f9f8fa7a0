"""Checks of a candle table, for the asset checks of the candles dataset (pure, no Dagster).

``check_candles`` returns a list of problems (empty = healthy), each naming the series and the
candle, so the Dagster layer can turn them into an AssetCheckResult with the list as metadata.
"""

from __future__ import annotations

import polars as pl

from archive_platform.analysis.candles import (
    CANDLE_COLUMNS, SERIES, TRADE_COLUMNS, timeframe_us, to_polars,
)
from archive_platform.analysis.upsert import upsert_candles

MAX_LISTED = 20


def _listed(what: str, df: pl.DataFrame) -> list[str]:
    rows = df.select(*SERIES, "timeframe", "timestamp").head(MAX_LISTED).rows()
    more = f" (+{df.height - MAX_LISTED} more)" if df.height > MAX_LISTED else ""
    return [f"{what}: {e}/{s} {tf} {ts.isoformat()}" for e, s, tf, ts in rows] + ([more] if more else [])


def check_candles(candles, trades=None, calendar: str = "crypto") -> list[str]:
    """No gaps (the table equals itself re-gridded), OHLC sanity, volume/count equal the trades'."""
    df = to_polars(candles, tuple(CANDLE_COLUMNS), "candles")
    problems: list[str] = []
    dupes = df.filter(pl.struct(*SERIES, "timeframe", "timestamp").is_duplicated())
    problems += _listed("duplicate candle", dupes)
    bad = df.filter(~((pl.col("low") <= pl.min_horizontal("open", "close"))
                      & (pl.col("high") >= pl.max_horizontal("open", "close"))
                      & (pl.col("low") > 0) & (pl.col("volume") >= 0)))
    problems += _listed("OHLC out of order or non-positive", bad)
    empty_bad = df.filter(pl.col("is_empty") & ((pl.col("volume") != 0) | (pl.col("trades") != 0)
                                                | (pl.col("open") != pl.col("close"))))
    problems += _listed("empty candle with volume, trades or a range", empty_bad)
    if not dupes.height:
        full = upsert_candles(df.clear(), df, calendar)  # re-derive the complete grid
        gaps = full.join(df, on=[*SERIES, "timeframe", "timestamp"], how="anti")
        problems += _listed("missing candle (gap)", gaps)
    if trades is not None:
        problems += _check_volume(df, to_polars(trades, TRADE_COLUMNS, "crypto_trades"))
    return problems


def _check_volume(df: pl.DataFrame, trades: pl.DataFrame) -> list[str]:
    problems = []
    for (timeframe,), part in df.group_by(["timeframe"], maintain_order=True):
        tf = timeframe_us(timeframe)
        lo, hi = part["timestamp"].min(), part["timestamp"].max()
        bucket = (((pl.col("event_time").dt.epoch("us") - 1) // tf + 1) * tf).cast(pl.Datetime("us", "UTC"))
        sums = (trades.with_columns(bucket.alias("timestamp"))
                .filter(pl.col("timestamp").is_between(lo, hi))
                .group_by(*SERIES, "timestamp").agg(pl.col("size").sum().alias("tv"), pl.len().alias("tn")))
        joined = part.join(sums, on=[*SERIES, "timestamp"], how="full", coalesce=True).with_columns(
            pl.col("volume").fill_null(0.0), pl.col("trades").fill_null(0), pl.col("tv").fill_null(0.0),
            pl.col("tn").fill_null(0), pl.col("timeframe").fill_null(timeframe))
        off = joined.filter(((pl.col("volume") - pl.col("tv")).abs() > 1e-9 * pl.col("tv").abs().clip(1.0))
                            | (pl.col("trades") != pl.col("tn")))
        problems += _listed("volume or trade count differs from the trades'", off)
    return problems
