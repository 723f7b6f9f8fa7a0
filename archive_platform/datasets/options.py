"""``options``: option-chain snapshots with greeks on the session's snapshot grid."""

from datetime import timedelta

import polars as pl
import pyarrow as pa

from archive_platform.datasets import common as c
from archive_platform.datasets.base import (
    TS, Dataset, Rule, grid_count, make_schema, nonneg, one_of, snapshot_completeness,
)

SCHEMA = make_schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("snapshot_time", TS, nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("expiry", pa.date32(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("right", pa.string(), nullable=False),  # C | P
        pa.field("bid", pa.float64()),
        pa.field("ask", pa.float64()),
        pa.field("last", pa.float64()),
        pa.field("volume", pa.int64()),
        pa.field("open_interest", pa.int64()),
        pa.field("iv", pa.float64()),
        pa.field("delta", pa.float64()),
        pa.field("gamma", pa.float64()),
        pa.field("theta", pa.float64()),
        pa.field("vega", pa.float64()),
        pa.field("underlying_price", pa.float64(), nullable=False),
    ],
    "One row per option contract per snapshot.",
)

_DELTA = pl.col("delta").is_null() | pl.when(pl.col("right") == "C").then(
    pl.col("delta").is_between(-1e-9, 1 + 1e-9)
).otherwise(pl.col("delta").is_between(-1 - 1e-9, 1e-9))

DATASET = Dataset(
    name="options",
    schema=SCHEMA,
    dedup_key=("snapshot_time", "symbol", "strike", "expiry", "right"),
    sort_key=("symbol", "snapshot_time", "expiry", "strike", "right"),
    grain="one row per option contract per snapshot",
    description="Option-chain snapshots with greeks, one row per contract per snapshot "
    "(every 15 minutes from the open to the close inclusive; 27 on a full day, 15 on a half day).",
    units={
        "timestamp": "UTC instant of the vendor's quote", "snapshot_time": c.SNAPSHOT_TIME,
        "symbol": c.SYMBOL, "expiry": "contract expiry date", "strike": "USD",
        "right": "C (call) or P (put)", "bid": "USD per share", "ask": "USD per share",
        "last": "USD per share, last trade", "volume": "contracts traded so far that day",
        "open_interest": "contracts (previous day's close)",
        "iv": "annualised implied volatility, 0.25 = 25 %", "delta": "per 1 USD of underlying",
        "gamma": "delta change per 1 USD of underlying", "theta": "USD per calendar day",
        "vega": "USD per 1 volatility point", "underlying_price": "USD",
        "et_offset": c.ET_OFFSET, "source": c.SOURCE,
    },
    group="options_market",
    sources=("sim", "thetadata", "polygon", "ib"),
    backfill_sources=frozenset({"sim", "thetadata"}),
    cadence="grid",
    rules=(
        Rule("bid <= ask", "bid", pl.col("bid").is_null() | pl.col("ask").is_null()
             | (pl.col("bid") <= pl.col("ask"))),
        Rule("bid >= 0", "bid", nonneg("bid"), hard=True),
        Rule("ask >= 0", "ask", nonneg("ask"), hard=True),
        Rule("last >= 0", "last", nonneg("last"), hard=True),
        Rule("volume >= 0", "volume", nonneg("volume"), hard=True),
        Rule("open_interest >= 0", "open_interest", nonneg("open_interest"), hard=True),
        Rule("iv >= 0", "iv", nonneg("iv"), hard=True),
        Rule("0 < iv < 5", "iv", pl.col("iv").is_null() | pl.col("iv").is_between(0, 5, closed="none")),
        Rule("call delta in [0,1], put delta in [-1,0]", "delta", _DELTA),
        Rule("gamma >= 0", "gamma", nonneg("gamma")),
        Rule("vega >= 0", "vega", nonneg("vega")),
        Rule("right is C or P", "right", one_of("right", ["C", "P"]), hard=True),
        Rule("strike > 0", "strike", pl.col("strike") > 0, hard=True),
        Rule("underlying_price > 0", "underlying_price", pl.col("underlying_price") > 0),
    ),
    completeness=snapshot_completeness(grid_count),
    freshness=("30 21 * * 1-5", timedelta(hours=12)),
)
