"""Pure normalisers: one exchange WebSocket message (text) -> rows of the contract schemas.

``normalise_binance(text, receive_us)`` takes a combined-stream message of a USD-M futures
``<symbol>@depth20@100ms`` or ``<symbol>@aggTrade`` stream; ``normalise_hyperliquid`` takes an
``l2Book`` or ``trades`` subscription message. Both return a ``Parsed`` (possibly with no rows:
acks, pongs, greetings) or raise ``MalformedMessage`` saying what is wrong; the service counts
and skips those and never dies on them. Times are microseconds since the epoch (UTC).

Decimal strings become float64 with ``float(s)``: the nearest double, whose ``repr`` is the
shortest decimal that round-trips, so ``Decimal(repr(v)) == Decimal(s)`` for <= 15 digits.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

MAX_LEVELS = 20
#: stream names per (exchange, dataset), as recorded in capture_gaps and the heartbeat
STREAMS = {
    ("binance", "orderbook_l2"): "depth20@100ms",
    ("binance", "crypto_trades"): "aggTrade",
    ("hyperliquid", "orderbook_l2"): "l2Book",
    ("hyperliquid", "crypto_trades"): "trades",
}


class MalformedMessage(ValueError):
    """A message that is not what the exchange documents; the text says which part."""


@dataclass
class Parsed:
    books: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    control: str | None = None  # "ack", "pong", "greeting", "error"
    error: str | None = None  # the exchange's own error text (control "error")


def _num(value: Any, what: str, *, positive: bool) -> float:
    if not isinstance(value, str):
        raise MalformedMessage(f"{what}: expected a decimal string, got {type(value).__name__}")
    try:
        v = float(value)
    except ValueError:
        raise MalformedMessage(f"{what}: {value!r} is not a decimal") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise MalformedMessage(f"{what}: {value!r} out of range")
    return v


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedMessage(f"{what}: expected an integer, got {value!r}")
    return value


def _ms(value: Any, what: str) -> int:
    v = _int(value, what)
    if not 0 < v < 10**14:
        raise MalformedMessage(f"{what}: {v} is not an epoch time in milliseconds")
    return v * 1000


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None


def _best_first(px: list[float], *others: list, bids: bool) -> None:
    """Put a side's levels best first (bids by falling, asks by rising price), in place, with
    their sizes and counts. Both exchanges send them so, which costs one pass to check; a
    message in another order is reordered rather than stored with a worse level as level 0."""
    if all((a >= b) if bids else (a <= b) for a, b in zip(px, px[1:])):
        return
    order = sorted(range(len(px)), key=px.__getitem__, reverse=bids)
    for col in (px, *others):
        col[:] = [col[i] for i in order]


def _binance_side(levels: Any, what: str) -> tuple[list[float], list[float]]:
    if not isinstance(levels, list):
        raise MalformedMessage(f"{what}: expected a list of [price, qty]")
    px, sz = [], []
    for i, lvl in enumerate(levels[:MAX_LEVELS]):
        if not isinstance(lvl, list) or len(lvl) < 2:
            raise MalformedMessage(f"{what}[{i}]: expected [price, qty]")
        px.append(_num(lvl[0], f"{what}[{i}] price", positive=True))
        sz.append(_num(lvl[1], f"{what}[{i}] qty", positive=False))
    return px, sz


def normalise_binance(text: str | bytes, receive_us: int) -> Parsed:
    """A Binance USD-M futures combined-stream message -> rows (see module doc)."""
    msg = _loads(text)
    if not isinstance(msg, dict):
        raise MalformedMessage("expected a JSON object")
    if "result" in msg and "id" in msg:
        return Parsed(control="ack")
    data = msg.get("data")
    if not isinstance(data, dict):
        raise MalformedMessage("combined-stream message without a 'data' object")
    event = data.get("e")
    symbol = data.get("s")
    if not isinstance(symbol, str) or not symbol:
        raise MalformedMessage("missing symbol 's'")
    if event == "depthUpdate":
        bid_px, bid_sz = _binance_side(data.get("b"), "b")
        ask_px, ask_sz = _binance_side(data.get("a"), "a")
        _best_first(bid_px, bid_sz, bids=True)
        _best_first(ask_px, ask_sz, bids=False)
        row = {
            "exchange": "binance", "symbol": symbol, "event_time": _ms(data.get("E"), "E"),
            "receive_time": receive_us, "update_id": _int(data.get("u"), "u"),
            "prev_update_id": _int(data.get("pu"), "pu"), "bid_px": bid_px, "bid_sz": bid_sz,
            "ask_px": ask_px, "ask_sz": ask_sz, "bid_n": None, "ask_n": None, "source": "binance",
        }
        return Parsed(books=[row])
    if event == "aggTrade":
        maker = data.get("m")
        if not isinstance(maker, bool):
            raise MalformedMessage("aggTrade 'm' must be true or false")
        row = {
            "exchange": "binance", "symbol": symbol, "trade_id": _int(data.get("a"), "a"),
            "event_time": _ms(data.get("T"), "T"), "price": _num(data.get("p"), "p", positive=True),
            # zero-quantity aggregate trades exist (Binance's own daily aggTrades files hold them):
            # archived as sent, here and by the backfill
            "size": _num(data.get("q"), "q", positive=False),
            # m = the buyer is the maker, so the aggressor sold
            "side": "sell" if maker else "buy", "receive_time": receive_us, "source": "binance",
        }
        return Parsed(trades=[row])
    raise MalformedMessage(f"unexpected event type {event!r}")


def _hl_side(levels: Any, what: str) -> tuple[list[float], list[float], list[int]]:
    if not isinstance(levels, list):
        raise MalformedMessage(f"{what}: expected a list of levels")
    px, sz, n = [], [], []
    for i, lvl in enumerate(levels[:MAX_LEVELS]):
        if not isinstance(lvl, dict):
            raise MalformedMessage(f"{what}[{i}]: expected {{px, sz, n}}")
        px.append(_num(lvl.get("px"), f"{what}[{i}].px", positive=True))
        sz.append(_num(lvl.get("sz"), f"{what}[{i}].sz", positive=False))
        count = _int(lvl.get("n"), f"{what}[{i}].n")
        if not 0 <= count < 2**31:
            raise MalformedMessage(f"{what}[{i}].n out of range")
        n.append(count)
    return px, sz, n


def normalise_hyperliquid(text: str | bytes, receive_us: int) -> Parsed:
    """A Hyperliquid WebSocket message -> rows (see module doc)."""
    if text == "Websocket connection established.":
        return Parsed(control="greeting")
    msg = _loads(text)
    if not isinstance(msg, dict):
        raise MalformedMessage("expected a JSON object")
    channel = msg.get("channel")
    data = msg.get("data")
    if channel == "pong":
        return Parsed(control="pong")
    if channel == "subscriptionResponse":
        return Parsed(control="ack")
    if channel == "error":  # e.g. a refused subscription: the exchange's answer, not a malformed message
        return Parsed(control="error", error=str(data)[:300])
    if channel == "l2Book":
        if not isinstance(data, dict) or not isinstance(data.get("coin"), str):
            raise MalformedMessage("l2Book without data.coin")
        levels = data.get("levels")
        if not isinstance(levels, list) or len(levels) != 2:
            raise MalformedMessage("l2Book levels must be [bids, asks]")
        bid_px, bid_sz, bid_n = _hl_side(levels[0], "levels[0]")
        ask_px, ask_sz, ask_n = _hl_side(levels[1], "levels[1]")
        _best_first(bid_px, bid_sz, bid_n, bids=True)
        _best_first(ask_px, ask_sz, ask_n, bids=False)
        row = {
            "exchange": "hyperliquid", "symbol": data["coin"], "event_time": _ms(data.get("time"), "time"),
            "receive_time": receive_us, "update_id": None, "prev_update_id": None,
            "bid_px": bid_px, "bid_sz": bid_sz, "ask_px": ask_px, "ask_sz": ask_sz,
            "bid_n": bid_n, "ask_n": ask_n, "source": "hyperliquid",
        }
        return Parsed(books=[row])
    if channel == "trades":
        if not isinstance(data, list):
            raise MalformedMessage("trades data must be a list")
        rows = []
        for i, t in enumerate(data):
            if not isinstance(t, dict) or not isinstance(t.get("coin"), str):
                raise MalformedMessage(f"trades[{i}] without coin")
            side = t.get("side")
            if side not in ("B", "A"):
                raise MalformedMessage(f"trades[{i}].side must be 'B' or 'A', got {side!r}")
            rows.append({
                "exchange": "hyperliquid", "symbol": t["coin"], "trade_id": _int(t.get("tid"), f"trades[{i}].tid"),
                "event_time": _ms(t.get("time"), f"trades[{i}].time"),
                "price": _num(t.get("px"), f"trades[{i}].px", positive=True),
                "size": _num(t.get("sz"), f"trades[{i}].sz", positive=False),
                "side": "buy" if side == "B" else "sell", "receive_time": receive_us, "source": "hyperliquid",
            })
        return Parsed(trades=rows)
    raise MalformedMessage(f"unexpected channel {channel!r}")


def book_key(row: dict[str, Any]) -> tuple:
    """The dedup key of a book row (contract: exchange, symbol, event_time, update_id)."""
    return (row["exchange"], row["symbol"], row["event_time"], row["update_id"])


def trade_key(row: dict[str, Any]) -> tuple:
    """The dedup key of a trade row (exchange, symbol, trade_id, event_time): Hyperliquid's
    ``tid`` is a hash of the two order ids, unique only with the block time and coin."""
    return (row["exchange"], row["symbol"], row["trade_id"], row["event_time"])
