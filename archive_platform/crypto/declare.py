"""What the three crypto dataset declarations share (pure; imported by ``archive_platform.datasets``).

``CapturedDataset`` is a ``Dataset`` whose partition column is declared (``event_time`` for
trades and books, ``start`` for gaps) instead of the US datasets' ``timestamp``; the store and
the checks ask ``partition_column``. Its rows come from the capture service's spool (live) or
the simulated venue (sim), and ``archive_platform/defs/crypto.py`` builds its daily asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from archive_platform.datasets.base import Dataset

EXCHANGE = "binance, hyperliquid, or sim (the simulated venue)"
SYMBOL = "the exchange's own name: Binance BTCUSDT, Hyperliquid coin BTC (sim: BTC, ETH)"
SOURCE = "binance, hyperliquid or sim (a backfilled trade: binance)"
RECEIVE = "UTC instant the capture service received the message (sim: = event_time)"
#: every UTC day is closed at 00:00 UTC; the daily run starts at 00:30 (docs/crypto.md)
FRESHNESS = ("0 3 * * *", timedelta(hours=27))
#: the declaration fields every dataset derived from a UTC day of crypto data shares
#: (crypto_candles, crypto_daily_bars, orderbook_features): derived under sim and live alike
DERIVED_DAY = dict(
    group="analysis",
    sources=("sim", "derived"),
    backfill_sources=frozenset({"sim", "derived"}),
    calendar_name="utc",
    window="day",
    derive_under_sim=True,
    freshness=FRESHNESS,
)


@dataclass(frozen=True)
class CapturedDataset(Dataset):
    """A dataset filled by the capture service, partitioned by the UTC date of ``time_column``."""

    time_column: str = "event_time"

    @property
    def partition_column(self) -> str:  # the store and the in_session check read this
        return self.time_column


def levels_ok(col: str, *, positive: bool) -> pl.Expr:
    """Every level of list column ``col`` is finite and > 0 (prices) or >= 0 (sizes)."""
    el = pl.element()
    ok = el.is_finite() & ((el > 0) if positive else (el >= 0))
    return pl.col(col).is_null() | pl.col(col).list.eval(ok).list.all()


def simulate(dataset: str):
    """The ``simulate`` hook of a declaration: a whole UTC day of the simulated venue."""

    def run(market, day, symbols, instants, **_):
        from archive_platform.crypto.daily import simulated_day

        return simulated_day(dataset, day, seed=getattr(market, "seed", 0)).table

    return run
