"""Upserting candles: last write wins on (exchange, symbol, timeframe, timestamp), and late trades.

After any merge the empty candles are derived again, so an empty candle always carries the close
of the candle before it (see candles.py for the alignment and completeness rules).
"""

from __future__ import annotations

import polars as pl

from archive_platform.analysis.candles import (
    CALENDARS, CANDLE_COLUMNS, KEY, SERIES, TRADE_COLUMNS, _epoch_grid, _finish, _session_grid, candles,
    timeframe_us, to_polars,
)
from archive_platform.crypto.schemas import TRADE_KEY


def upsert_candles(existing, incoming, calendar: str = "crypto") -> pl.DataFrame:
    """Last write wins on (exchange, symbol, timeframe, timestamp); empty candles are re-derived.

    ``incoming`` replaces the rows of ``existing`` with the same key. Afterwards every empty candle
    carries the (possibly changed) previous close again, and buckets between the two inputs that
    neither holds are filled as empty candles.
    """
    if calendar not in CALENDARS:
        raise ValueError(f"unknown calendar {calendar!r}; expected one of {CALENDARS}")
    ex = to_polars(existing, tuple(CANDLE_COLUMNS), "existing candles")
    inc = to_polars(incoming, tuple(CANDLE_COLUMNS), "incoming candles").select(ex.columns)
    merged = pl.concat([ex.join(inc.select(KEY), on=KEY, how="anti"), inc])
    parts = []
    for (timeframe,), part in merged.group_by(["timeframe"], maintain_order=True):
        tf = timeframe_us(timeframe)
        part = part.with_columns(pl.col("timestamp").dt.epoch("us").alias("ts"))
        nonempty = part.filter(~pl.col("is_empty")).select(
            *SERIES, "ts", "open", "high", "low", "close", "volume", "vwap", "trades")
        first_ne = nonempty.group_by(SERIES).agg(pl.col("ts").min().alias("first_ne"))
        seeded = (part.filter(pl.col("is_empty")).join(first_ne, on=SERIES, how="left")
                  .filter(pl.col("first_ne").is_null() | (pl.col("ts") < pl.col("first_ne")))
                  .sort("ts").group_by(SERIES).agg(pl.col("ts").first(), pl.col("close").first().alias("seed_close")))
        bounds = part.group_by(SERIES).agg(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
        grid = (_epoch_grid(tf) if calendar == "crypto" else _session_grid(tf))(bounds)
        out = grid.join(nonempty, on=[*SERIES, "ts"], how="left").join(
            seeded, on=[*SERIES, "ts"], how="left").sort([*SERIES, "ts"])
        # an empty candle before any non-empty one keeps the close it was stored with (its seed)
        out = out.with_columns(pl.col("open").is_null().alias("is_empty"),
                               pl.coalesce("close", "seed_close").forward_fill().over(SERIES).alias("_prev"))
        out = out.with_columns(**{c: pl.coalesce(c, "_prev") for c in ("open", "high", "low", "close")},
                               volume=pl.col("volume").fill_null(0.0), trades=pl.col("trades").fill_null(0))
        parts.append(_finish(out.filter(pl.col("close").is_not_null()), timeframe))
    return pl.concat(parts) if parts else ex


def apply_late_trades(existing, trades, late_trades, timeframe: str) -> pl.DataFrame:
    """Merge late ``crypto_trades`` into stored candles of ``timeframe``.

    ``trades`` must hold the stored trades of every bucket a late trade falls in (e.g. the UTC-day
    partitions involved); the union is deduplicated on the trades' key (``TRADE_KEY``), the affected
    buckets are recomputed from it and upserted (last write wins), and the empty candles that
    follow re-carry the new close.
    """
    tf = timeframe_us(timeframe)
    late = to_polars(late_trades, TRADE_COLUMNS, "late trades")
    stored = to_polars(trades, TRADE_COLUMNS, "stored trades").select(late.columns)
    bucket = (((pl.col("event_time").dt.epoch("us") - 1) // tf + 1) * tf).alias("ts")
    affected = late.select(*SERIES, bucket).unique()
    union = pl.concat([stored, late])
    if "trade_id" in union.columns:
        union = union.unique(list(TRADE_KEY), keep="last", maintain_order=True)
    union = union.with_columns(bucket).join(affected, on=[*SERIES, "ts"], how="semi").drop("ts")
    fresh = candles(union, timeframe).filter(~pl.col("is_empty"))
    return upsert_candles(existing, fresh, "crypto")
