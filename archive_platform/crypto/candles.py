"""Live 1-minute candles and top-of-book summaries from captured rows (pure, no I/O).

Candles are right-aligned (the candle-collector design): the candle of 12:00:00-12:00:59.999 is stamped ``end``
12:01:00. A candle closes when a trade of a later minute arrives or when its minute ended more
than ``grace_us`` ago; minutes without trades after a traded one give empty candles
(open = high = low = close = the previous close, volume 0), so the live series is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MINUTE_US = 60_000_000


def iso(us: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Candle:
    exchange: str
    symbol: str
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    trades: int = 0

    def message(self) -> dict[str, Any]:
        return {"type": "candle", "interval": "1m", "exchange": self.exchange, "symbol": self.symbol,
                "start": iso(self.start), "end": iso(self.start + MINUTE_US), "open": self.open, "high": self.high,
                "low": self.low, "close": self.close, "volume": self.volume, "trades": self.trades}


class CandleAggregator:
    def __init__(self, grace_us: int = 2_000_000) -> None:
        self.grace_us = grace_us
        self.current: dict[tuple[str, str], Candle] = {}

    def on_trade(self, row: dict[str, Any]) -> list[Candle]:
        """Add a trade; returns the candles it closed (late trades of a closed minute are ignored)."""
        key = (row["exchange"], row["symbol"])
        minute = row["event_time"] - row["event_time"] % MINUTE_US
        closed = self._roll(key, minute)
        c = self.current.get(key)
        if c is None or c.start != minute:
            if c is not None and minute < c.start:
                return closed
            c = self.current[key] = Candle(key[0], key[1], minute, row["price"], row["price"], row["price"],
                                           row["price"])
        if c.trades == 0:  # an empty candle carried the previous close; the first trade opens it
            c.open = c.high = c.low = row["price"]
        c.high, c.low, c.close = max(c.high, row["price"]), min(c.low, row["price"]), row["price"]
        c.volume += row["size"]
        c.trades += 1
        return closed

    def _roll(self, key: tuple[str, str], until_minute: int) -> list[Candle]:
        """Close the current candle and emit empty ones for every full minute before ``until_minute``."""
        c = self.current.get(key)
        out: list[Candle] = []
        while c is not None and c.start + MINUTE_US <= until_minute:
            out.append(c)
            nxt = c.start + MINUTE_US
            c = Candle(key[0], key[1], nxt, c.close, c.close, c.close, c.close) if nxt < until_minute else None
        if out:
            if c is None:
                self.current.pop(key, None)
            else:
                self.current[key] = c
        return out

    def close_due(self, now_us: int) -> list[Candle]:
        """Candles whose minute ended more than ``grace_us`` before ``now_us`` (with empty ones)."""
        out: list[Candle] = []
        minute = (now_us - self.grace_us) - (now_us - self.grace_us) % MINUTE_US
        for key in list(self.current):
            closed = self._roll(key, minute)
            out.extend(closed)
            if closed and key not in self.current:
                last = closed[-1]  # keep the series going with empty candles until trades resume
                self.current[key] = Candle(key[0], key[1], last.start + MINUTE_US, last.close, last.close,
                                           last.close, last.close)
        return out


def top_of_book(row: dict[str, Any]) -> dict[str, Any] | None:
    """The summary published each second for a book row (None for a book with an empty side)."""
    if not row["bid_px"] or not row["ask_px"]:
        return None
    bid, ask = row["bid_px"][0], row["ask_px"][0]
    bsz, asz = row["bid_sz"][0], row["ask_sz"][0]
    total = bsz + asz
    return {"type": "top", "exchange": row["exchange"], "symbol": row["symbol"], "time": iso(row["event_time"]),
            "bid": bid, "bid_size": bsz, "ask": ask, "ask_size": asz, "mid": (bid + ask) / 2, "spread": ask - bid,
            "imbalance": (bsz - asz) / total if total else 0.0,
            "microprice": (bid * asz + ask * bsz) / total if total else (bid + ask) / 2}
