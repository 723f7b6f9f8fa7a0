"""``crypto_daily_bars``: per exchange and crypto symbol per UTC day, the day's OHLC, volume, VWAP
and trade count, derived from ``crypto_trades`` (``regime.daily_bars_crypto``)."""

import polars as pl
import pyarrow as pa

from archive_platform.crypto import declare as c
from archive_platform.datasets.base import TS, CompletenessContext, Dataset, Rule, make_schema, nonneg
from archive_platform.regime_schemas import SCHEMAS, UNITS

NAME = "crypto_daily_bars"
_REGIME = "daily_bars_crypto"
_KEYS = {"exchange", "symbol"}

SCHEMA = make_schema(
    [pa.field("timestamp", TS, nullable=False)]
    + [pa.field(f.name, f.type, nullable=f.name not in _KEYS) for f in SCHEMAS[_REGIME] if f.name != "date"],
    "One row per exchange and symbol per UTC day, from the day's trades.",
    et_offset=False,
)


def derive(input_store, day, symbols=(), instants=None):
    from archive_platform.analysis.crypto_days import derive_crypto_daily_bars

    return derive_crypto_daily_bars(input_store, day)


def complete(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """One bar per series, stamped at the day's UTC midnight."""
    from archive_platform.analysis.crypto_checks import daily_bar_problems

    return daily_bar_problems(df, ctx.day)


def _unit(col: str) -> str:
    unit, meaning = UNITS[_REGIME][col]
    unit = unit.replace("USD (quote currency)", "quote currency per base unit")
    return f"{unit}; {meaning}" if unit else meaning


DATASET = Dataset(
    name=NAME,
    schema=SCHEMA,
    dedup_key=("exchange", "symbol", "timestamp"),
    sort_key=("exchange", "symbol", "timestamp"),
    grain="one row per exchange and symbol per UTC day",
    description="Daily OHLC, volume, VWAP and trade count per exchange and crypto symbol per UTC "
    "day, derived from the day's crypto_trades: the trades with D 00:00 <= event_time < D+1 00:00 "
    "(left-closed, unlike the right-aligned 1d candle of crypto_candles).",
    units={"timestamp": "UTC instant; the midnight opening the UTC day (its date is the "
           "partition); the bar covers [timestamp, timestamp + 1 day)",
           **{col: _unit(col) for col in SCHEMAS[_REGIME].names if col != "date"},
           "exchange": c.EXCHANGE, "symbol": c.SYMBOL,
           "source": "sim when derived from the simulated archive, else derived"},
    derived_from=("crypto_trades",),
    **c.DERIVED_DAY,
    derive=derive,
    rules=(
        Rule("low <= open,close <= high", "high",
             (pl.col("low") <= pl.min_horizontal("open", "close"))
             & (pl.max_horizontal("open", "close") <= pl.col("high")),
             hard=True),
        Rule("low > 0", "low", pl.col("low") > 0, hard=True),
        Rule("volume >= 0, trade_count >= 1", "volume", nonneg("volume") & (pl.col("trade_count") >= 1), hard=True),
        Rule("vwap within [low, high]", "vwap", pl.col("vwap").is_null()
             | pl.col("vwap").is_between(pl.col("low") - 1e-9, pl.col("high") + 1e-9), hard=True),
        Rule("first_trade <= last_trade", "first_trade", pl.col("first_trade") <= pl.col("last_trade"), hard=True),
    ),
    completeness=complete,
)
