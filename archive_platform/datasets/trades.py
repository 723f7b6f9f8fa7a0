"""``trades``: the account's executions, fetched after the extended session."""

from datetime import timedelta

import polars as pl
import pyarrow as pa

from archive_platform.datasets import common as c
from archive_platform.datasets.base import TS, Dataset, Rule, make_schema, nonneg, one_of

SCHEMA = make_schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("exec_id", pa.string(), nullable=False),
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),  # underlying
        pa.field("contract", pa.string(), nullable=False),  # OCC symbol for options, ticker for stock
        pa.field("sec_type", pa.string(), nullable=False),  # STK | OPT
        pa.field("expiry", pa.date32()),
        pa.field("strike", pa.float64()),
        pa.field("right", pa.string()),
        pa.field("side", pa.string(), nullable=False),  # BUY | SELL
        pa.field("quantity", pa.float64(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("commission", pa.float64()),
    ],
    "One row per execution (fill) of the account.",
)

DATASET = Dataset(
    name="trades",
    schema=SCHEMA,
    dedup_key=("exec_id",),
    sort_key=("symbol", "timestamp", "exec_id"),
    grain="one row per execution",
    description="The account's executions, one row per fill, archived after the session.",
    units={
        "timestamp": c.TIMESTAMP, "exec_id": "the broker's execution id (dedup key)",
        "order_id": "the broker's order id", "symbol": c.SYMBOL,
        "contract": "OCC symbol for options, the ticker for stock", "sec_type": "STK or OPT",
        "expiry": "option expiry date (options only)", "strike": "USD (options only)",
        "right": "C or P (options only)", "side": "BUY or SELL",
        "quantity": "shares or contracts (> 0)", "price": "USD per share",
        "commission": "USD", "et_offset": c.ET_OFFSET, "source": c.SOURCE,
    },
    group="account",
    sources=("sim", "ib"),
    backfill_sources=frozenset({"sim"}),
    window="extended",
    rules=(
        Rule("quantity > 0", "quantity", pl.col("quantity") > 0, hard=True),
        Rule("price >= 0", "price", pl.col("price") >= 0, hard=True),
        Rule("side is BUY or SELL", "side", one_of("side", ["BUY", "SELL"]), hard=True),
        Rule("right is C or P", "right", one_of("right", ["C", "P"]), hard=True),
        Rule("commission >= 0", "commission", nonneg("commission")),
    ),
    freshness=("30 21 * * 1-5", timedelta(hours=6)),
)
