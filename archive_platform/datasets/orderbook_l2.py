"""``orderbook_l2``: one row per order-book snapshot (top 20 levels) of a crypto exchange.

UTC-day partitions (the date of ``event_time``), every day of the year. Rows come only from the
capture service's spool: no exchange publishes past books, so a day the capture missed cannot be
backfilled. The simulated venue serves the demo and tests at 1 s (the exchanges: 100 ms).
"""

import polars as pl

from archive_platform.crypto import declare as c
from archive_platform.crypto.schemas import DEDUP_KEYS, ORDERBOOK_L2, SORT_KEYS, WRITER_OPTIONS
from archive_platform.datasets.base import Rule, one_of

NAME = "orderbook_l2"
_best_bid = pl.col("bid_px").list.first()
_best_ask = pl.col("ask_px").list.first()
_both = _best_bid.is_null() | _best_ask.is_null()

DATASET = c.CapturedDataset(
    name=NAME,
    schema=ORDERBOOK_L2,
    dedup_key=DEDUP_KEYS[NAME],
    sort_key=SORT_KEYS[NAME],
    # zstd 9, no dictionary on the level lists, delta-encoded times and ids: 0.60x the bytes of
    # zstd JSON lines against 0.94x with Parquet's defaults (docs/performance.md, issue 13)
    parquet_options=WRITER_OPTIONS[NAME],
    grain="one row per order-book snapshot per exchange and symbol",
    description="Crypto order books, one row per snapshot of the top 20 levels per side: "
    "Binance USD-M futures depth20@100ms and Hyperliquid l2Book, captured live around the clock.",
    units={
        "exchange": c.EXCHANGE, "symbol": c.SYMBOL,
        "event_time": "UTC instant of the book (Binance `E`, Hyperliquid `time`; partition day)",
        "receive_time": c.RECEIVE,
        "update_id": "Binance last update id `u` (null for Hyperliquid)",
        "prev_update_id": "Binance previous update id `pu` (null for Hyperliquid)",
        "bid_px": "bid prices, best first, up to 20 (quote currency per base unit)",
        "bid_sz": "bid sizes per level, base units",
        "ask_px": "ask prices, best first, up to 20 (quote currency per base unit)",
        "ask_sz": "ask sizes per level, base units",
        "bid_n": "orders per bid level (Hyperliquid `n`; null for Binance)",
        "ask_n": "orders per ask level (Hyperliquid `n`; null for Binance)",
        "source": c.SOURCE,
    },
    group="crypto",
    sources=("sim",),
    backfill_sources=frozenset({"sim"}),
    calendar_name="utc",
    window="day",
    rules=(
        Rule("bid prices finite and > 0", "bid_px", c.levels_ok("bid_px", positive=True), hard=True),
        Rule("ask prices finite and > 0", "ask_px", c.levels_ok("ask_px", positive=True), hard=True),
        Rule("bid sizes finite and >= 0", "bid_sz", c.levels_ok("bid_sz", positive=False), hard=True),
        Rule("ask sizes finite and >= 0", "ask_sz", c.levels_ok("ask_sz", positive=False), hard=True),
        Rule("one size per bid price", "bid_sz", pl.col("bid_sz").list.len() == pl.col("bid_px").list.len(), hard=True),
        Rule("one size per ask price", "ask_sz", pl.col("ask_sz").list.len() == pl.col("ask_px").list.len(), hard=True),
        Rule("exchange is known", "exchange", one_of("exchange", ["binance", "hyperliquid", "sim"]), hard=True),
        # a real market shows these for an instant: stored, counted by the values check
        Rule("book not crossed (best bid <= best ask)", "bid_px", _both | (_best_bid <= _best_ask)),
        Rule("book not locked (best bid != best ask)", "ask_px", _both | (_best_bid != _best_ask)),
    ),
    freshness=c.FRESHNESS,
    simulate=c.simulate(NAME),
)
