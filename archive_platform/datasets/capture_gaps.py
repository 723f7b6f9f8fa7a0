"""``capture_gaps``: one row per interruption of one stream of the crypto capture service.

Partitioned by the UTC date of ``start``. The service records each gap (start = event time of
the last row before the loss, end = of the first row after it, cause); every row of that stream
missing from the archive lies inside one. The daily coverage checks of ``crypto_trades`` and
``orderbook_l2`` read it. The simulated venue drops nothing: its days are empty.
"""

import polars as pl

from archive_platform.crypto import declare as c
from archive_platform.crypto.schemas import CAPTURE_GAPS, DEDUP_KEYS, SORT_KEYS
from archive_platform.datasets.base import Rule, one_of

NAME = "capture_gaps"

DATASET = c.CapturedDataset(
    name=NAME,
    schema=CAPTURE_GAPS,
    dedup_key=DEDUP_KEYS[NAME],
    sort_key=SORT_KEYS[NAME],
    grain="one row per capture gap per exchange, stream and symbol",
    description="Interruptions of the crypto capture (disconnects, silence, shutdowns): "
    "no row of the stream was received between start and end.",
    units={
        "exchange": "binance or hyperliquid",
        "stream": "the exchange's stream: depth20@100ms, aggTrade, l2Book or trades",
        "symbol": c.SYMBOL,
        "start": "UTC event time of the last row received before the loss (partition day)",
        "end": "UTC event time of the first row received after it",
        "cause": "why: disconnect, silence, error text; '(still open at shutdown)' when the service stopped",
        "source": "the exchange the stream belongs to",
    },
    group="crypto",
    sources=("sim",),
    backfill_sources=frozenset({"sim"}),
    calendar_name="utc",
    window="day",
    rules=(
        Rule("end >= start", "end", pl.col("end") >= pl.col("start"), hard=True),
        Rule("exchange is known", "exchange", one_of("exchange", ["binance", "hyperliquid", "sim"]), hard=True),
    ),
    freshness=c.FRESHNESS,
    simulate=c.simulate(NAME),
    time_column="start",
)
