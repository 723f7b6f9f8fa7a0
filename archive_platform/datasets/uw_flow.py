"""``uw_flow``: options-flow alerts (Unusual Whales shape), polled while the market is open."""

from datetime import timedelta

import polars as pl
import pyarrow as pa

from archive_platform.datasets import common as c
from archive_platform.datasets.base import TS, Dataset, Rule, make_schema, nonneg, one_of

SCHEMA = make_schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("alert_id", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("option_chain", pa.string(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("expiration", pa.date32(), nullable=False),
        pa.field("option_type", pa.string(), nullable=False),  # CALL | PUT
        pa.field("sentiment", pa.string(), nullable=False),  # BULLISH | BEARISH | NEUTRAL
        pa.field("premium", pa.float64(), nullable=False),
        pa.field("ask_side_premium", pa.float64()),
        pa.field("bid_side_premium", pa.float64()),
        pa.field("price", pa.float64()),
        pa.field("underlying_price", pa.float64()),
        pa.field("volume", pa.int64(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("open_interest", pa.int64()),
        pa.field("volume_oi_ratio", pa.float64()),
        pa.field("trade_count", pa.int64()),
        pa.field("iv", pa.float64()),  # not in UW's REST alert; null when the source lacks it
        pa.field("delta", pa.float64()),
        pa.field("has_sweep", pa.bool_()),
        pa.field("has_floor", pa.bool_()),
        pa.field("alert_rule", pa.string()),
        pa.field("is_unusual", pa.bool_(), nullable=False),
    ],
    "One row per options-flow alert.",
)

DATASET = Dataset(
    name="uw_flow",
    schema=SCHEMA,
    dedup_key=("alert_id",),
    sort_key=("symbol", "timestamp", "alert_id"),
    grain="one row per options-flow alert",
    description="Options-flow alerts (Unusual Whales shape), one row per alert. Polled every "
    "minute from the open to 20:00 ET and appended; each alert stored once (dedup on alert_id). "
    "Every alert whose market date is the session is kept, including those after the close "
    "(ETF and index options trade until 16:15 ET).",
    units={
        "timestamp": c.TIMESTAMP, "alert_id": "the vendor's alert id (dedup key)",
        "symbol": c.SYMBOL, "option_chain": "OCC option symbol of the contract",
        "strike": "USD", "expiration": "contract expiry date",
        "option_type": "CALL or PUT", "sentiment": "BULLISH, BEARISH or NEUTRAL",
        "premium": "USD, total premium of the alert", "ask_side_premium": "USD traded at the ask",
        "bid_side_premium": "USD traded at the bid", "price": "USD per share of the option",
        "underlying_price": "USD", "volume": "contracts traded that day",
        "size": "contracts in the alert", "open_interest": "contracts",
        "volume_oi_ratio": "volume / open interest", "trade_count": "prints in the alert",
        "iv": "annualised implied volatility, 0.25 = 25 %", "delta": "option delta",
        "has_sweep": "alert includes a sweep", "has_floor": "alert includes a floor trade",
        "alert_rule": "the vendor's rule name", "is_unusual": "flagged unusual by the vendor",
        "et_offset": c.ET_OFFSET, "source": c.SOURCE,
    },
    group="options_market",
    sources=("sim", "unusual_whales"),
    backfill_sources=frozenset({"sim", "unusual_whales"}),
    cadence="poll",
    # every alert of the session's market date: ETF and index options trade until 16:15 ET, and
    # a vendor can report an alert after the close; the regular session would cut them
    window="day",
    rules=(
        Rule("premium >= 0", "premium", nonneg("premium"), hard=True),
        Rule("size > 0", "size", pl.col("size") > 0),
        Rule("size >= 0", "size", nonneg("size"), hard=True),
        Rule("volume >= 0", "volume", nonneg("volume"), hard=True),
        Rule("open_interest >= 0", "open_interest", nonneg("open_interest"), hard=True),
        Rule("option_type is CALL or PUT", "option_type", one_of("option_type", ["CALL", "PUT"]), hard=True),
        Rule("strike > 0", "strike", pl.col("strike") > 0),
    ),
    freshness=("30 21 * * 1-5", timedelta(hours=12)),
)
