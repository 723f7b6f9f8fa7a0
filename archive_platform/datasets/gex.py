"""``gex``: per-strike gamma exposure, derived from the options snapshot it sits beside."""

from datetime import timedelta

import polars as pl
import pyarrow as pa

from archive_platform.datasets import common as c
from archive_platform.datasets.base import (
    TS, Dataset, Rule, grid_count, make_schema, snapshot_completeness,
)

SCHEMA = make_schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("snapshot_time", TS, nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("underlying_price", pa.float64(), nullable=False),
        pa.field("call_gex", pa.float64(), nullable=False),  # >= 0, dollars per 1% move
        pa.field("put_gex", pa.float64(), nullable=False),  # <= 0
        pa.field("net_gex", pa.float64(), nullable=False),  # call_gex + put_gex
        pa.field("call_open_interest", pa.int64(), nullable=False),
        pa.field("put_open_interest", pa.int64(), nullable=False),
    ],
    "One row per underlying per strike per snapshot (net over expiries).",
)

def derive(options_store, day, symbols, instants):
    """Gamma exposure from the stored options of ``day`` (optionally only some snapshots)."""
    from archive_platform.archiving import derive_gex

    return derive_gex(options_store, day, instants)


DATASET = Dataset(
    name="gex",
    schema=SCHEMA,
    dedup_key=("snapshot_time", "symbol", "strike"),
    sort_key=("symbol", "snapshot_time", "strike"),
    grain="one row per underlying per strike per snapshot",
    description="Gamma-exposure profile, one row per underlying per strike per snapshot, derived "
    "from the options snapshot (call GEX positive, put GEX negative; dollars per 1% move).",
    units={
        "timestamp": "UTC instant of the options quotes it is computed from",
        "snapshot_time": c.SNAPSHOT_TIME, "symbol": c.SYMBOL, "strike": "USD",
        "underlying_price": "USD", "call_gex": "USD of delta change per 1 % move, calls (>= 0)",
        "put_gex": "USD per 1 % move, puts (<= 0)", "net_gex": "call_gex + put_gex",
        "call_open_interest": "contracts, summed over expiries",
        "put_open_interest": "contracts, summed over expiries",
        "et_offset": c.ET_OFFSET, "source": c.SOURCE,
    },
    group="options_market",
    # UW's greek-exposure-by-strike endpoint has no open interest, which the schema requires,
    # so it is not offered; "derived" computes gex from the options archive.
    sources=("sim", "derived"),
    backfill_sources=frozenset({"sim", "derived"}),
    cadence="grid",
    derived_from=("options",),
    derive=derive,
    derive_under_sim=True,
    rules=(
        Rule("call_gex >= 0", "call_gex", pl.col("call_gex") >= 0),
        Rule("put_gex <= 0", "put_gex", pl.col("put_gex") <= 0),
        Rule("net_gex = call_gex + put_gex", "net_gex", (
            pl.col("net_gex") - pl.col("call_gex") - pl.col("put_gex")
        ).abs() <= 1e-6 * (pl.col("call_gex").abs() + pl.col("put_gex").abs() + 1)),
        Rule("open interest >= 0", "call_open_interest",
             (pl.col("call_open_interest") >= 0) & (pl.col("put_open_interest") >= 0), hard=True),
    ),
    completeness=snapshot_completeness(grid_count),
    freshness=("30 21 * * 1-5", timedelta(hours=12)),
)
