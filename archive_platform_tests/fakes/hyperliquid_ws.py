"""Loopback fake of the Hyperliquid WebSocket API (``/ws``), driven by the simulated crypto venue.

Real message formats: the greeting text, ``subscribe`` -> ``subscriptionResponse``, ``l2Book``
snapshots (levels ``{"px","sz","n"}``) and ``trades`` lists (``side`` "B"/"A" of the aggressor,
``tid``), ``{"method":"ping"}`` -> ``{"channel":"pong"}``. Like the exchange, it replays the last
trades on a (re)subscription, and closes a connection that sent nothing for ``idle_timeout``
seconds (so a client that forgets the ping loses it). Faults as in ``binance_ws``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from typing import Any

from websockets.asyncio.server import ServerConnection

from archive_platform.crypto.sim_venue import SimWindow, format_price
from archive_platform_tests.fakes.binance_ws import LoopbackVenueServer

GREETING = "Websocket connection established."


class FakeHyperliquid(LoopbackVenueServer):
    """``symbols`` are Hyperliquid coins (``BTC``)."""

    def __init__(self, symbols: list[str], *, idle_timeout: float = 60.0, replay: int = 5, **kw) -> None:
        super().__init__(symbols, **kw)
        self.idle_timeout, self.replay = idle_timeout, replay
        self.pings = 0
        self._tid = itertools.count(900_000_000)
        self._recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=replay))
        self._last_heard: dict[ServerConnection, float] = {}

    def accept(self, path: str) -> bool:
        return path == "/ws"

    async def on_open(self, ws: ServerConnection) -> None:
        self._last_heard[ws] = time.monotonic()
        self.background.add(asyncio.get_running_loop().create_task(self._idle_watch(ws)))
        await ws.send(GREETING)

    async def _idle_watch(self, ws: ServerConnection) -> None:
        while ws in self.connections:
            await asyncio.sleep(self.idle_timeout / 4)
            if time.monotonic() - self._last_heard.get(ws, 0) > self.idle_timeout:
                await ws.close(1000, "idle")
                return

    async def on_message(self, ws: ServerConnection, message: str | bytes) -> None:
        self._last_heard[ws] = time.monotonic()
        msg = json.loads(message)
        if msg.get("method") == "ping":
            self.pings += 1
            await ws.send(json.dumps({"channel": "pong"}))
            return
        if msg.get("method") == "subscribe":
            sub = msg["subscription"]
            self.connections[ws].add(f"{sub['type']}:{sub['coin']}")
            await ws.send(json.dumps({"channel": "subscriptionResponse", "data": msg}))
            recent = list(self._recent[sub["coin"]])
            if sub["type"] == "trades" and recent:
                await ws.send(json.dumps({"channel": "trades", "data": recent}))

    async def emit(self, symbol: str, t_ms: int, w: SimWindow, i: int, trades: range) -> None:
        bids, asks = self.levels(symbol, w, i)
        data: dict[str, Any] = {"coin": symbol, "time": t_ms, "levels": [
            [{"px": p, "sz": q, "n": n} for p, q, n in bids], [{"px": p, "sz": q, "n": n} for p, q, n in asks]]}
        if await self.broadcast(f"l2Book:{symbol}", json.dumps({"channel": "l2Book", "data": data})):
            self.sent_books.append(data)
        if not len(trades):
            return
        td, sd = w.inst.tick_decimals, w.inst.size_decimals
        rows = [{"coin": symbol, "side": "B" if w.trade_buy[k] else "A",
                 "px": format_price(int(w.trade_ticks[k]), td), "sz": format_price(int(w.trade_lots[k]), sd),
                 "hash": f"0x{k:064x}", "time": int(w.trade_time[k]) // 1000, "tid": next(self._tid),
                 "users": ["0x" + "1" * 40, "0x" + "2" * 40]} for k in trades]
        if await self.broadcast(f"trades:{symbol}", json.dumps({"channel": "trades", "data": rows})):
            self.sent_trades.extend(rows)
            self._recent[symbol].extend(rows)
