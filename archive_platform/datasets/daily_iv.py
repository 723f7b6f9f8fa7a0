"""``daily_iv``: per symbol per NYSE session, OHLC over the day's options snapshots of the front
ATM IV and of the 30-day constant-maturity ATM IV (definitions: archive_platform/regime.py)."""

from datetime import timedelta

import polars as pl

from archive_platform.datasets.base import (
    CompletenessContext, Dataset, Rule, make_schema, symbols_present,
)
from archive_platform.regime_schemas import stored_fields, stored_units

SCHEMA = make_schema(stored_fields("daily_iv"),
                     "One row per symbol per NYSE session: OHLC of front ATM IV and of 30-day ATM IV.")


def derive(input_store, day, symbols, instants):
    """The day's IV bars from the stored ``options`` snapshots of ``day``."""
    from archive_platform.regime_derive import derive_daily_iv

    return derive_daily_iv(input_store, day, symbols, instants)


def complete(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """Every configured symbol has its day's IV bar."""
    return symbols_present(df, ctx.symbols)


def _ohlc_ok(p: str) -> pl.Expr:
    lo, hi = pl.col(f"{p}_low"), pl.col(f"{p}_high")
    inside = [pl.col(f"{p}_{c}").is_between(lo, hi) for c in ("open", "close", "mean")]
    return lo.is_null() | pl.all_horizontal(inside)


DATASET = Dataset(
    name="daily_iv",
    schema=SCHEMA,
    dedup_key=("symbol", "timestamp"),
    sort_key=("symbol", "timestamp"),
    grain="one row per symbol per NYSE session",
    description="Daily OHLC of the front ATM implied volatility and of the 30-day constant-maturity "
    "ATM IV (variance-interpolated between the expiries around 30 days) per symbol per NYSE "
    "session, over the session's options snapshots, with the snapshot counts used.",
    units=stored_units("daily_iv"),
    group="derived_daily",
    sources=("sim", "derived"),
    backfill_sources=frozenset({"sim", "derived"}),
    derived_from=("options",),
    derive=derive,
    derive_under_sim=True,
    rules=(
        Rule("front low <= open,close,mean <= high", "front_close", _ohlc_ok("front"), hard=True),
        Rule("iv30 low <= open,close,mean <= high", "iv30_close", _ohlc_ok("iv30"), hard=True),
        Rule("IVs > 0", "front_low", (pl.col("front_low").is_null() | (pl.col("front_low") > 0))
             & (pl.col("iv30_low").is_null() | (pl.col("iv30_low") > 0)), hard=True),
        Rule("counts <= snapshots", "snapshots",
             (pl.col("front_snapshots") <= pl.col("snapshots"))
             & (pl.col("iv30_snapshots") <= pl.col("snapshots")), hard=True),
        Rule("front_high < 5", "front_high", pl.col("front_high").is_null()
             | (pl.col("front_high") < 5)),
        Rule("an iv30 every snapshot", "iv30_snapshots",
             pl.col("iv30_snapshots") == pl.col("snapshots")),
    ),
    completeness=complete,
    freshness=("30 21 * * 1-5", timedelta(hours=6)),
)
