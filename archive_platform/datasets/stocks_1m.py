"""``stocks_1m``: regular-session one-minute bars, fetched after the close."""

from datetime import timedelta

import polars as pl
import pyarrow as pa

from archive_platform import calendar
from archive_platform.datasets import common as c
from archive_platform.datasets.base import (
    TS, CompletenessContext, Dataset, Rule, count_per_symbol, make_schema, nonneg, symbols_present,
)

SCHEMA = make_schema(
    [
        pa.field("timestamp", TS, nullable=False),  # bar start
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.int64(), nullable=False),
        pa.field("vwap", pa.float64()),
        pa.field("trade_count", pa.int64()),
    ],
    "One row per symbol per regular-session minute (bar start time).",
)


def complete(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """Every symbol with one bar per regular-session minute (390, or 210 on a 13:00 close)."""
    problems, meta = symbols_present(df, ctx.symbols)
    want = calendar.session(ctx.day).minutes
    meta["expected_bars_per_symbol"] = want
    more, extra = count_per_symbol(df, want, "one-minute bars", pl.len())
    meta.update(extra)
    # the count alone passes a day of bars stamped at their end (09:31..16:00) or with a 16:00
    # bar in place of 09:30: every bar must start on a minute of the session, open .. close - 1
    s = calendar.session(ctx.day)
    if df.height and "timestamp" in df.columns:
        ts = pl.col("timestamp")
        off = df.filter((ts < s.open_utc) | (ts >= s.close_utc) | (ts.dt.truncate("1m") != ts))
        if off.height:
            last = s.close_utc - timedelta(minutes=1)
            more.append(f"{off.height} bars not starting on a minute of the session "
                        f"({s.open_utc:%H:%M}-{last:%H:%M} UTC, the bar's start time)")
            meta["bars_off_session_minutes"] = off.height
            meta["off_session_examples"] = [
                f"{r['symbol']} {r['timestamp'].isoformat()}"
                for r in off.select("symbol", "timestamp").sort("timestamp", "symbol").head(5).to_dicts()]
    return problems + more, meta


DATASET = Dataset(
    name="stocks_1m",
    schema=SCHEMA,
    dedup_key=("symbol", "timestamp"),
    sort_key=("symbol", "timestamp"),
    grain="one row per symbol per one-minute bar",
    description="One-minute OHLCV + VWAP + trade count, one row per symbol per regular-session "
    "minute (390 on a full day, 210 on a 13:00 close), archived after the close.",
    units={
        "timestamp": "UTC instant the bar starts", "symbol": c.SYMBOL,
        "open": "USD", "high": "USD", "low": "USD", "close": "USD",
        "volume": "shares", "vwap": "USD, volume-weighted average price",
        "trade_count": "trades in the bar", "et_offset": c.ET_OFFSET, "source": c.SOURCE,
    },
    group="equities",
    sources=("sim", "polygon", "thetadata", "ib"),
    backfill_sources=frozenset({"sim", "polygon", "thetadata", "ib"}),
    directory="stocks",  # the original archive design: stocks_1m lives in stocks/
    rules=(
        Rule("high >= low", "high", pl.col("high") >= pl.col("low"), hard=True),
        Rule("low <= open,close <= high", "open",
             (pl.col("low") <= pl.min_horizontal("open", "close"))
             & (pl.max_horizontal("open", "close") <= pl.col("high"))),
        Rule("low >= 0", "low", pl.col("low") >= 0, hard=True),
        # "low <= open, close" is soft (vendors' condition codes can put them outside), so a
        # negative open or close needs its own hard rule: no price of a share is below zero
        Rule("open >= 0", "open", nonneg("open"), hard=True),
        Rule("close >= 0", "close", nonneg("close"), hard=True),
        Rule("vwap >= 0", "vwap", nonneg("vwap"), hard=True),
        Rule("trade_count >= 0", "trade_count", nonneg("trade_count"), hard=True),
        Rule("low > 0", "low", pl.col("low") > 0),
        Rule("volume >= 0", "volume", nonneg("volume"), hard=True),
        Rule("vwap within [low, high]", "vwap", pl.col("vwap").is_null()
             | pl.col("vwap").is_between(pl.col("low") - 1e-9, pl.col("high") + 1e-9)),
    ),
    completeness=complete,
    freshness=("30 21 * * 1-5", timedelta(hours=6)),
)
