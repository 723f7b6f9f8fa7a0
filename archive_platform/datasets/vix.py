"""``vix``: the CBOE Volatility Index level on the options snapshot grid (tutorial dataset).

One row per snapshot-grid instant of an NYSE session. The daily OHLC of VIX is the first, max,
min and last ``level`` of a session's rows ordered by ``snapshot_time``. The simulated market
derives the level from SPY's simulated 30-day at-the-money implied volatility (VIX is, by
construction, 30-day S&P 500 implied volatility in percent), so it moves with the options
archive. See docs/adding-a-dataset.md, which walks through this module.

Vendors (``ARCHIVE_SOURCE_VIX``; ``archive_platform/vendors/vix.py``, docs/vendors.md):
``polygon`` (``I:VIX`` one-minute aggregates), ``ib`` (``Index('VIX', 'CBOE')`` one-minute TRADES
bars) and ``thetadata`` (index price history at a 1-minute interval), all able to backfill. The
level at a grid instant is the latest value known at or before it, at most 5 minutes old: for
bars, a bar's close counts from the bar's end (no look-ahead) and the opening instant takes the
open of the bar starting at the open; ``timestamp`` is the instant that value was known. An
instant without a recent value gets no row, which the ``complete`` check reports.
"""

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import numpy as np
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
        pa.field("level", pa.float64(), nullable=False),
    ],
    "One row per VIX level per snapshot.",
)


def simulate(market, day: date, symbols: Sequence[str], instants: Sequence[datetime],
             **_: object) -> pa.Table:
    """The simulated VIX: 100 x SPY's simulated 30-day ATM IV at each snapshot instant."""
    from archive_platform.sim.day import et_offsets, session_instants
    from archive_platform.sim.trades import iv_rank_at

    t = session_instants(day, instants, "vix")
    (spy,) = market._bundles(day, ["SPY"])
    level = np.round(iv_rank_at(market.seed, spy, t)["iv"] * 100.0, 2)
    ts = pa.array(t, pa.int64()).cast(TS)
    return pa.Table.from_arrays(
        [ts, ts, pa.array(["VIX"] * len(t)), pa.array(level, pa.float64()),
         pa.array(et_offsets(t), pa.int16()), pa.array([market.name] * len(t))],
        schema=SCHEMA,
    )


DATASET = Dataset(
    name="vix",
    schema=SCHEMA,
    dedup_key=("symbol", "snapshot_time"),
    sort_key=("symbol", "snapshot_time"),
    grain="one row per VIX level per snapshot",
    description="CBOE Volatility Index level, one row per options snapshot instant of a session "
    "(every 15 minutes from the open to the close inclusive); daily OHLC = first/max/min/last.",
    units={
        "timestamp": "UTC instant the level was known (vendors: a bar's end, or the open "
                     "for the opening value; sim: the snapshot instant)",
        "snapshot_time": c.SNAPSHOT_TIME, "symbol": "always VIX",
        "level": "index points (annualised 30-day S&P 500 implied volatility in percent)",
        "et_offset": c.ET_OFFSET, "source": c.SOURCE,
    },
    group="options_market",
    sources=("sim", "polygon", "thetadata", "ib"),
    backfill_sources=frozenset({"sim", "polygon", "thetadata", "ib"}),
    cadence="grid",
    rules=(
        Rule("level > 0", "level", pl.col("level") > 0, hard=True),
        Rule("symbol is VIX", "symbol", pl.col("symbol") == "VIX"),
        Rule("level < 150", "level", pl.col("level") < 150),  # above every close since 1990
    ),
    completeness=snapshot_completeness(grid_count),
    freshness=("30 21 * * 1-5", timedelta(hours=12)),
    simulate=simulate,
    fixed_symbols=("VIX",),
)
