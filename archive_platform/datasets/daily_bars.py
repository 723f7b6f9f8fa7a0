"""``daily_bars``: per symbol per NYSE session, the day's OHLC, volume, VWAP and trade count,
derived from the session's one-minute bars (``stocks_1m``; see archive_platform/regime.py)."""

from datetime import timedelta

import polars as pl

from archive_platform.datasets.base import (
    CompletenessContext, Dataset, Rule, make_schema, nonneg, symbols_present,
)
from archive_platform.regime_schemas import stored_fields, stored_units

SCHEMA = make_schema(stored_fields("daily_bars"),
                     "One row per symbol per NYSE session, from the session's one-minute bars.")


def derive(input_store, day, symbols, instants):
    """The day's bars from the stored ``stocks_1m`` of ``day``."""
    from archive_platform.regime_derive import derive_daily_bars

    return derive_daily_bars(input_store, day, symbols, instants)


def complete(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """Every configured symbol has its day's bar."""
    return symbols_present(df, ctx.symbols)


DATASET = Dataset(
    name="daily_bars",
    schema=SCHEMA,
    dedup_key=("symbol", "timestamp"),
    sort_key=("symbol", "timestamp"),
    grain="one row per symbol per NYSE session",
    description="Daily OHLC, volume, VWAP and trade count per symbol per NYSE session, derived "
    "from the session's one-minute bars (stocks_1m); half days have 210 bars.",
    units=stored_units("daily_bars"),
    group="derived_daily",
    sources=("sim", "derived"),
    backfill_sources=frozenset({"sim", "derived"}),
    derived_from=("stocks_1m",),
    derive=derive,
    derive_under_sim=True,
    rules=(
        Rule("low <= open,close <= high", "high",
             (pl.col("low") <= pl.min_horizontal("open", "close"))
             & (pl.max_horizontal("open", "close") <= pl.col("high")), hard=True),
        # as in stocks_1m: a zero low is suspicious (soft) but storable there, so refusing it
        # here would block the whole day's bars, every symbol's, for one bad print
        Rule("low >= 0", "low", pl.col("low") >= 0, hard=True),
        Rule("low > 0", "low", pl.col("low") > 0),
        Rule("volume >= 0", "volume", nonneg("volume"), hard=True),
        Rule("1 <= bars <= session_minutes", "bars",
             (pl.col("bars") >= 1) & (pl.col("bars") <= pl.col("session_minutes")), hard=True),
        Rule("vwap within [low, high]", "vwap", pl.col("vwap").is_null()
             | pl.col("vwap").is_between(pl.col("low") - 1e-9, pl.col("high") + 1e-9)),
        Rule("a bar for every session minute", "bars", pl.col("bars") == pl.col("session_minutes")),
    ),
    completeness=complete,
    freshness=("30 21 * * 1-5", timedelta(hours=6)),
)
