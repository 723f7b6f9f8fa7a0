"""Live publication to Redis pub/sub (when REDIS_URL is set): closed 1-minute candles and one
top-of-book summary per symbol per second, as JSON on channel ``market:<exchange>:<symbol>``.

A Redis outage never stops the capture: failed publishes are counted and logged, and the next
second tries again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from archive_platform.crypto.candles import CandleAggregator, top_of_book

log = logging.getLogger(__name__)


def channel(exchange: str, symbol: str) -> str:
    return f"market:{exchange}:{symbol}"


class RedisPublisher:
    def __init__(self, url: str, *, grace_us: int = 2_000_000, every_s: float = 1.0) -> None:
        self.client = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.candles = CandleAggregator(grace_us)
        self.every_s = every_s
        self.tops: dict[tuple[str, str], dict[str, Any]] = {}
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.published = self.errors = 0

    def on_row(self, dataset: str, row: dict[str, Any]) -> None:
        if dataset == "crypto_trades":
            for c in self.candles.on_trade(row):
                self.pending.append((channel(c.exchange, c.symbol), c.message()))
        elif dataset == "orderbook_l2":
            top = top_of_book(row)
            if top is not None:
                self.tops[(row["exchange"], row["symbol"])] = top

    async def publish_once(self, now_us: int | None = None) -> int:
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        for c in self.candles.close_due(now_us):
            self.pending.append((channel(c.exchange, c.symbol), c.message()))
        batch = self.pending + [(channel(*k), v) for k, v in sorted(self.tops.items())]
        self.pending, self.tops = [], {}
        if not batch:
            return 0
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for ch, msg in batch:
                    pipe.publish(ch, json.dumps(msg))
                await pipe.execute()
            self.published += len(batch)
        except Exception as exc:  # Redis down: count it, keep capturing
            self.errors += 1
            log.warning("redis publish of %d messages failed: %s", len(batch), exc)
        return len(batch)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.publish_once()

    async def close(self) -> None:
        await self.publish_once()
        await self.client.aclose()
