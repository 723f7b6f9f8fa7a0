"""``crypto_candles``: right-aligned OHLCV candles of the crypto trades at 1m, 5m, 15m, 1h, 4h and
1d, one UTC day per partition (the UTC date of the close), derived from ``crypto_trades``
(definitions: archive_platform/analysis/candles.py, docs/analysis.md).

A dataset of its own rather than the equity ``candles`` one: that declaration is anchored to
NYSE sessions (session-cut buckets, ``et_offset``, 5m/15m/1h only), while these buckets are
aligned to the UTC epoch around the clock. The columns are the same, without ``et_offset``.
"""

import polars as pl

from archive_platform.analysis.candles import CANDLES_SCHEMA
from archive_platform.crypto import declare as c
from archive_platform.datasets.candles import candle_rules
from archive_platform.datasets.base import CompletenessContext, Dataset, make_schema

NAME = "crypto_candles"
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")  # = analysis.crypto_days.CRYPTO_TIMEFRAMES

SCHEMA = make_schema(list(CANDLES_SCHEMA),
                     "One row per exchange, symbol, timeframe and candle closing in the UTC day.",
                     et_offset=False)


def derive(input_store, day, symbols=(), instants=None):
    from archive_platform.analysis.crypto_days import derive_crypto_candles

    return derive_crypto_candles(input_store, day)


def complete(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """No gap: every series and timeframe runs without a hole to the day's last close, from the
    day's first close (or from its first trade when no earlier price is known)."""
    from archive_platform.analysis.crypto_checks import candle_grid_problems

    return candle_grid_problems(df, ctx.day)


DATASET = Dataset(
    name=NAME,
    schema=SCHEMA,
    dedup_key=("exchange", "symbol", "timeframe", "timestamp"),
    sort_key=("exchange", "symbol", "timeframe", "timestamp"),
    grain="one row per exchange, symbol, timeframe and candle (close time)",
    description="OHLCV candles of the crypto trades at 1m, 5m, 15m, 1h, 4h and 1d, around the "
    "clock. Right-aligned: a candle's timestamp is its close and it holds the trades after the "
    "previous close up to and including it; buckets are aligned to the UTC epoch, so the 1d candle "
    "closes at UTC midnight. A partition holds the candles closing in its UTC day (00:00 .. 23:59 "
    "for 1m; the 1d candle stamped D 00:00 holds the trades of D-1). A bucket without trades is an "
    "empty candle carrying the previous close.",
    units={
        "exchange": c.EXCHANGE, "symbol": c.SYMBOL,
        "timeframe": "1m | 5m | 15m | 1h | 4h | 1d",
        "timestamp": "UTC instant of the candle's close (right-aligned; its UTC date is the partition)",
        "open": "quote currency per base unit; first trade of the bucket (empty: previous close)",
        "high": "quote currency per base unit; highest trade price",
        "low": "quote currency per base unit; lowest trade price",
        "close": "quote currency per base unit; last trade of the bucket (by event_time, trade_id)",
        "volume": "base units; sum of the trades' sizes",
        "vwap": "quote currency per base unit; sum(price * size) / sum(size) (null when empty)",
        "trades": "trades in the bucket", "is_empty": "true when no trade fell in the bucket",
        "source": "sim when derived from the simulated archive, else derived",
    },
    derived_from=("crypto_trades",),
    **c.DERIVED_DAY,
    derive=derive,
    rules=candle_rules(TIMEFRAMES, vwap_hard=True),
    completeness=complete,
)
