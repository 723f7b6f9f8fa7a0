"""``market_regime``: per symbol per NYSE session, IV rank and percentile over 60 sessions (with
the IB option-snapshot collector's rules), VIX close, SMA20/SMA50 and the trend label, 20-session realised volatility,
and the first session of every window, derived from ``daily_bars``, ``daily_iv`` and ``vix``."""

from datetime import timedelta

import polars as pl

from archive_platform import regime
from archive_platform.datasets.base import (
    CompletenessContext, Dataset, Rule, make_schema, symbols_present,
)
from archive_platform.regime_schemas import stored_fields, stored_units

SCHEMA = make_schema(stored_fields("market_regime"),
                     "One row per symbol per NYSE session with a bar or an IV: trend, volatility, "
                     "IV rank, VIX.")


def derive(input_store, day, symbols, instants):
    """The day's regime from the stored daily_bars and daily_iv of the 60 sessions ending on
    ``day`` and the day's vix (all read from ``input_store``)."""
    from archive_platform.regime_derive import derive_market_regime

    return derive_market_regime(input_store, day, symbols, instants)


def complete(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """Every configured symbol has its day's regime row."""
    return symbols_present(df, ctx.symbols)


def _pct(col: str) -> pl.Expr:
    return pl.col(col).is_null() | pl.col(col).is_between(0, 100)


_iv, _rank, _pct_col = pl.col("iv"), pl.col("iv_rank"), pl.col("iv_percentile")
_close, _s20, _s50, _trend = pl.col("close"), pl.col("sma20"), pl.col("sma50"), pl.col("trend")
_SHORT = _iv.is_not_null() & (pl.col("iv_sessions") < regime.IV_MIN_HISTORY)
_TREND = (
    pl.when(_close.is_null() | _s20.is_null() | _s50.is_null()).then(_trend.is_null())
    .when((_close > _s20) & (_s20 > _s50)).then(_trend == "uptrend")
    .when((_close < _s20) & (_s20 < _s50)).then(_trend == "downtrend")
    .otherwise(_trend == "neutral")
)

DATASET = Dataset(
    name="market_regime",
    schema=SCHEMA,
    dedup_key=("symbol", "timestamp"),
    sort_key=("symbol", "timestamp"),
    grain="one row per symbol per NYSE session",
    description="Per symbol per NYSE session: IV rank and IV percentile of the 30-day ATM IV over "
    "the 60 sessions ending on the day (50 with fewer than 30 sessions of history or a flat "
    "history), VIX close, SMA20, SMA50, trend label, 20-session realised volatility, and the "
    "first session of each window so every value can be traced.",
    units=stored_units("market_regime"),
    group="derived_daily",
    sources=("sim", "derived"),
    backfill_sources=frozenset({"sim", "derived"}),
    derived_from=("daily_bars", "daily_iv", "vix"),
    derive=derive,
    derive_under_sim=True,
    rules=(
        Rule("iv_rank in [0,100]", "iv_rank", _pct("iv_rank"), hard=True),
        Rule("iv_percentile in [0,100]", "iv_percentile", _pct("iv_percentile"), hard=True),
        Rule("no iv, no rank", "iv_rank", _iv.is_not_null() | (_rank.is_null() & _pct_col.is_null()),
             hard=True),
        Rule("under 30 sessions of iv history: rank and percentile 50", "iv_rank",
             ~_SHORT | ((_rank == 50) & (_pct_col == 50)), hard=True),
        Rule("0 <= iv_sessions <= 60", "iv_sessions",
             pl.col("iv_sessions").is_null() | pl.col("iv_sessions").is_between(0, regime.IV_WINDOW),
             hard=True),
        Rule("trend agrees with close, sma20, sma50", "trend", _TREND.fill_null(False), hard=True),
        Rule("rv20 >= 0", "rv20", pl.col("rv20").is_null() | (pl.col("rv20") >= 0), hard=True),
        Rule("vix_close present", "vix_close", pl.col("vix_close").is_not_null()),
    ),
    completeness=complete,
    freshness=("30 21 * * 1-5", timedelta(hours=6)),
)
