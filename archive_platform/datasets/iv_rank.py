"""``iv_rank``: IV, IV rank and IV percentile per symbol at configured times of the day."""

from datetime import timedelta

import polars as pl
import pyarrow as pa

from archive_platform.datasets import common as c
from archive_platform.datasets.base import TS, Dataset, Rule, make_schema, snapshot_completeness

SCHEMA = make_schema(
    [
        pa.field("timestamp", TS, nullable=False),
        pa.field("snapshot_time", TS, nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("iv", pa.float64(), nullable=False),  # annualised, 0.25 = 25 %
        pa.field("iv_rank", pa.float64(), nullable=False),  # 0..100
        pa.field("iv_percentile", pa.float64()),  # 0..100
    ],
    "One row per symbol per IV-rank snapshot (twice a day).",
)

def derive(options_store, day, symbols, instants):
    """IV rank computed from the options archive (see archive_platform.derived)."""
    from archive_platform.derived import derive_iv_rank

    return derive_iv_rank(options_store, day, symbols, instants)


DATASET = Dataset(
    name="iv_rank",
    schema=SCHEMA,
    dedup_key=("snapshot_time", "symbol"),
    sort_key=("symbol", "snapshot_time"),
    grain="one row per symbol per IV-rank snapshot",
    description="IV, IV rank and IV percentile, one row per symbol per snapshot (twice a day, "
    "07:00 and 19:00 ET by default).",
    units={
        "timestamp": "UTC instant the vendor computed the values",
        "snapshot_time": c.SNAPSHOT_TIME, "symbol": c.SYMBOL,
        "iv": "annualised implied volatility, 0.25 = 25 %",
        "iv_rank": "0-100: where today's IV sits between the lookback's low (0) and high (100)",
        "iv_percentile": "0-100: share of lookback days with a lower IV",
        "et_offset": c.ET_OFFSET, "source": c.SOURCE,
    },
    group="options_market",
    sources=("sim", "barchart", "unusual_whales", "derived"),
    backfill_sources=frozenset({"sim", "barchart", "unusual_whales", "derived"}),
    window="day",
    cadence="times",
    derived_from=("options",),
    derive=derive,
    rules=(
        Rule("iv >= 0", "iv", pl.col("iv") >= 0, hard=True),
        Rule("0 < iv < 5", "iv", pl.col("iv").is_between(0, 5, closed="none")),
        # a 0-1 fraction stored here would read as "almost never high": refused, not stored
        Rule("iv_rank in [0,100]", "iv_rank", pl.col("iv_rank").is_between(0, 100), hard=True),
        Rule("iv_percentile in [0,100]", "iv_percentile", pl.col("iv_percentile").is_null()
             | pl.col("iv_percentile").is_between(0, 100), hard=True),
    ),
    # two snapshots a day unless told how many are due (ARCHIVE_IV_RANK_TIMES)
    completeness=snapshot_completeness(lambda ctx: 2),
    freshness=("30 19 * * 1-5", timedelta(hours=13)),
)
