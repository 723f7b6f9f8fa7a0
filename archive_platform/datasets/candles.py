"""``candles``: right-aligned, session-anchored 5-minute, 15-minute and 1-hour candles of NYSE
equities, derived from ``stocks_1m`` (definitions: archive_platform/analysis/candles.py)."""

from datetime import timedelta

import polars as pl

from archive_platform.analysis.candles import CANDLES_SCHEMA
from archive_platform.datasets import common as c
from archive_platform.datasets.base import (
    CompletenessContext, Dataset, Rule, make_schema, nonneg, one_of, symbols_present,
)

TIMEFRAMES = ("5m", "15m", "1h")  # = analysis.equity_candles.TIMEFRAMES (a test keeps them equal)

SCHEMA = make_schema(list(CANDLES_SCHEMA),
                     "One row per symbol per timeframe per candle of an NYSE session (close time).")


def derive(input_store, day, symbols, instants):
    """The day's candles of every timeframe from the stored ``stocks_1m`` of ``day``."""
    from archive_platform.analysis.equity_candles import derive_candles

    return derive_candles(input_store, day, symbols, instants)


def complete(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """No gaps: every configured symbol has every candle of the session in every timeframe."""
    from archive_platform.analysis.equity_candles import expected_per_day

    problems, meta = symbols_present(df, ctx.symbols)
    want = {tf: expected_per_day(ctx.day, tf) for tf in TIMEFRAMES}
    meta["expected_per_symbol"] = want
    got = df.group_by("symbol", "timeframe").agg(pl.len().alias("n")) if df.height else None
    have = {(s, tf): n for s, tf, n in got.iter_rows()} if got is not None else {}
    short = [f"{s} {tf}: {have.get((s, tf), 0)} of {n}" for s in sorted(set(ctx.symbols))
             for tf, n in want.items() if have.get((s, tf), 0) != n]
    if short:
        problems.append(f"{len(short)} symbol/timeframe series without exactly the session's candles")
        meta["examples"] = short[:10]
    return problems, meta


_o, _h, _l, _c = (pl.col(x) for x in ("open", "high", "low", "close"))


def candle_rules(timeframes: tuple[str, ...], *, vwap_hard: bool) -> tuple[Rule, ...]:
    """The value rules of a candles dataset (equity ``candles`` and ``crypto_candles``)."""
    return (
        Rule("low <= open,close <= high", "high",
             (_l <= pl.min_horizontal("open", "close")) & (pl.max_horizontal("open", "close") <= _h),
             hard=True),
        Rule("low > 0", "low", _l > 0, hard=True),
        Rule("volume, trades >= 0", "volume", nonneg("volume") & nonneg("trades"), hard=True),
        Rule("empty candle: no volume, no trades, no range", "is_empty",
             ~pl.col("is_empty") | ((pl.col("volume") == 0) & (pl.col("trades") == 0)
                                    & (_o == _c) & (_h == _l) & (_o == _h)), hard=True),
        Rule("timeframe known", "timeframe", one_of("timeframe", timeframes), hard=True),
        Rule("vwap within [low, high]", "vwap", pl.col("vwap").is_null()
             | pl.col("vwap").is_between(_l - 1e-9, _h + 1e-9), hard=vwap_hard),
    )

DATASET = Dataset(
    name="candles",
    schema=SCHEMA,
    dedup_key=("exchange", "symbol", "timeframe", "timestamp"),
    sort_key=("exchange", "symbol", "timeframe", "timestamp"),
    grain="one row per symbol per timeframe per candle (close time)",
    description="OHLCV candles of NYSE equities at 5 minutes, 15 minutes and 1 hour, derived from "
    "the one-minute bars. Right-aligned: a candle's timestamp is its close and it holds the bars "
    "ending after the previous close up to it; anchored at the open, the last candle ends at the "
    "close (13:00 on a half day). A bucket without volume is an empty candle carrying the "
    "previous close.",
    units={
        "exchange": "nyse (the calendar the candles are anchored to)", "symbol": c.SYMBOL,
        "timeframe": "5m | 15m | 1h",
        "timestamp": "UTC instant of the candle's close (right-aligned)",
        "open": "USD; first bar's open (empty: previous close)", "high": "USD; highest bar high",
        "low": "USD; lowest bar low", "close": "USD; last bar's close",
        "volume": "shares; sum of the bars' volumes", "vwap": "USD; volume-weighted mean of the "
        "bars' VWAPs (null when empty)", "trades": "trades; sum of the bars' trade counts",
        "is_empty": "true when no bar with volume fell in the bucket",
        "et_offset": c.ET_OFFSET, "source": "sim when derived from the simulated archive, else derived",
    },
    group="analysis",
    sources=("sim", "derived"),
    backfill_sources=frozenset({"sim", "derived"}),
    derived_from=("stocks_1m",),
    derive=derive,
    derive_under_sim=True,
    rules=candle_rules(TIMEFRAMES, vwap_hard=False),
    completeness=complete,
    freshness=("30 21 * * 1-5", timedelta(hours=6)),
)
