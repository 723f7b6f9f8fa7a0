"""``crypto_trades``: one row per trade of a crypto exchange (Binance USD-M futures, Hyperliquid).

UTC-day partitions (the date of ``event_time``), every day of the year. Rows come from the
capture service's spool, or, for a Binance day the capture missed, from Binance's public daily
aggTrades files (``archive_platform.crypto.daily``); the simulated venue in the demo and tests.
"""

import polars as pl

from archive_platform.crypto import declare as c
from archive_platform.crypto.schemas import CRYPTO_TRADES, DEDUP_KEYS, SORT_KEYS
from archive_platform.datasets.base import Rule, one_of

NAME = "crypto_trades"

DATASET = c.CapturedDataset(
    name=NAME,
    schema=CRYPTO_TRADES,
    dedup_key=DEDUP_KEYS[NAME],
    sort_key=SORT_KEYS[NAME],
    grain="one row per trade per exchange and symbol",
    description="Crypto trades, one row per (aggregate) trade: Binance USD-M futures aggTrade "
    "and Hyperliquid trades, captured live around the clock; side is the aggressor's.",
    units={
        "exchange": c.EXCHANGE, "symbol": c.SYMBOL,
        "trade_id": "the exchange's trade id (Binance aggregate id `a`, Hyperliquid `tid`, a hash unique "
                    "only with the trade's time)",
        "event_time": "UTC instant of the trade (Binance `T`, Hyperliquid `time`; partition day)",
        "price": "quote currency per unit of base (USDT, USDC or USD)",
        "size": "base units (>= 0: the exchanges publish a few zero-quantity trades)",
        "side": "the aggressor's side, buy or sell (Binance m=true: the buyer was the maker, so sell)",
        "receive_time": c.RECEIVE, "source": c.SOURCE,
    },
    group="crypto",
    sources=("sim",),
    backfill_sources=frozenset({"sim"}),
    calendar_name="utc",
    window="day",
    rules=(
        Rule("price > 0", "price", pl.col("price") > 0, hard=True),
        # zero-quantity aggregate trades occur in Binance's own aggTrades files: kept, counted
        Rule("size >= 0", "size", pl.col("size") >= 0, hard=True),
        Rule("size > 0", "size", pl.col("size") > 0),
        Rule("side is buy or sell", "side", one_of("side", ["buy", "sell"]), hard=True),
        Rule("exchange is known", "exchange", one_of("exchange", ["binance", "hyperliquid", "sim"]), hard=True),
    ),
    freshness=c.FRESHNESS,
    simulate=c.simulate(NAME),
)
