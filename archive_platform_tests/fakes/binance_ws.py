"""Loopback fake of Binance USD-M futures market streams, driven by the simulated crypto venue.

Speaks the real combined-stream format on the 2026 routing: ``/public/stream?streams=
<symbol>@depth20@100ms/...`` (partial book depth) and ``/market/stream?streams=<symbol>@aggTrade/...``;
the retired ``/ws`` and ``/stream`` paths and streams on the wrong base are refused (HTTP 404).
Every book snapshot and trade that reached at least one connection is logged in ``sent_books``
/ ``sent_trades`` (the ``data`` objects, exactly as sent), so tests compare archived rows with
them. Scripted faults: ``disconnect_all`` (abrupt TCP abort), ``go_silent``, ``quiet_trades``, ``send_malformed``,
``send_crossed``, and ``max_connection_age`` (the 24 h limit, shortened) after which the
server aborts a connection. ``LoopbackVenueServer`` is the shared machinery (also used by the
Hyperliquid fake): a websockets server on 127.0.0.1 on a free port in its own thread and loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from archive_platform.crypto.sim_venue import LEVELS, SimWindow, format_price, simulate

CHUNK_S = 30


class LoopbackVenueServer:
    """Shared machinery: thread + loop, connections, a tick producer, scripted faults."""

    def __init__(self, symbols: list[str], *, seed: int = 0, book_ms: int = 100,
                 max_connection_age: float | None = None) -> None:
        self.symbols, self.seed, self.book_ms = list(symbols), seed, book_ms
        self.max_connection_age = max_connection_age
        self.connections: dict[ServerConnection, set[str]] = {}
        self.paths: list[str] = []
        self.sent_books: list[dict[str, Any]] = []
        self.sent_trades: list[dict[str, Any]] = []
        self.sent_raw: list[str] = []
        self.producing = threading.Event()
        self.producing.set()
        self.silent_until = 0.0
        self.no_trades_until = 0.0
        self._crossed: set[str] = set()
        self._windows: dict[str, tuple[int, SimWindow]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0
        self.background: set[asyncio.Task] = set()

    # ---- lifecycle ----------------------------------------------------------------------
    def __enter__(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._route, ping_interval=None)
        self.port = self._server.sockets[0].getsockname()[1]
        self._producer = asyncio.create_task(self._produce())

    async def _stop(self) -> None:
        self._producer.cancel()
        for task in self.background:
            task.cancel()
        self._server.close()
        for ws in list(self.connections):
            ws.transport.abort()
        await asyncio.gather(self._producer, return_exceptions=True)

    def _call(self, fn, *args) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    # ---- faults (thread-safe) -----------------------------------------------------------
    def disconnect_all(self) -> None:
        """Abort every connection's TCP transport (no close frame), as a dropped network does."""
        self._call(lambda: [ws.transport.abort() for ws in list(self.connections)])

    def go_silent(self, seconds: float) -> None:
        """Send nothing (data is not produced) for ``seconds``; connections stay open."""
        self.silent_until = time.monotonic() + seconds

    def quiet_trades(self, seconds: float) -> None:
        """Books go on, but nothing trades (no trade message is sent) for ``seconds``."""
        self.no_trades_until = time.monotonic() + seconds

    def send_malformed(self, text: str) -> None:
        self._call(lambda: [asyncio.ensure_future(ws.send(text)) for ws in list(self.connections)])

    def send_crossed(self, symbol: str) -> None:
        """The next book snapshot of ``symbol`` has its best bid above its best ask."""
        self._crossed.add(symbol)

    def stop_producing(self) -> None:
        self.producing.clear()

    def open_connections(self) -> int:
        return len(self.connections)

    # ---- internals ----------------------------------------------------------------------
    def _route(self, connection: ServerConnection, request) -> Response | None:
        self.paths.append(request.path)
        if self.accept(request.path):
            return None
        return Response(404, "Not Found", Headers({"Content-Type": "text/plain"}), b"unknown path\n")

    def accept(self, path: str) -> bool:
        raise NotImplementedError

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections[ws] = self.initial_streams(ws.request.path)
        killer = None
        if self.max_connection_age:
            killer = asyncio.get_running_loop().call_later(self.max_connection_age, ws.transport.abort)
        try:
            await self.on_open(ws)
            async for message in ws:
                await self.on_message(ws, message)
        except Exception:
            pass
        finally:
            self.connections.pop(ws, None)
            if killer:
                killer.cancel()

    def initial_streams(self, path: str) -> set[str]:
        return set()

    async def on_open(self, ws: ServerConnection) -> None:
        pass

    async def on_message(self, ws: ServerConnection, message: str | bytes) -> None:
        pass

    def window(self, symbol: str, t_us: int) -> tuple[int, SimWindow]:
        start = t_us - t_us % (CHUNK_S * 1_000_000)
        cached = self._windows.get(symbol)
        if cached is None or cached[0] != start:
            cached = (start, simulate(symbol, start, start + CHUNK_S * 1_000_000, seed=self.seed, book_ms=self.book_ms))
            self._windows[symbol] = cached
        return cached

    async def _produce(self) -> None:
        step = self.book_ms / 1000
        t = (time.time() // step + 1) * step
        while True:
            await asyncio.sleep(max(0.0, t - time.time()))
            if self.producing.is_set() and time.monotonic() >= self.silent_until:
                t_us = int(round(t * 1e6))
                for symbol in self.symbols:
                    start, w = self.window(symbol, t_us)
                    i = (t_us - start) // (self.book_ms * 1000)
                    lo = w.trade_time.searchsorted(t_us - self.book_ms * 1000)
                    hi = w.trade_time.searchsorted(t_us) if time.monotonic() >= self.no_trades_until else lo
                    await self.emit(symbol, t_us // 1000, w, int(i), range(int(lo), int(hi)))
            t += step

    def levels(self, symbol: str, w: SimWindow, i: int) -> tuple[list, list]:
        """((px, sz, n) bids, asks) as decimal strings; crossed when a test asked for it."""
        td, sd = w.inst.tick_decimals, w.inst.size_decimals
        bid_t, ask_t = w.bid_ticks[i], w.ask_ticks[i]
        if symbol in self._crossed:
            self._crossed.discard(symbol)
            bid_t = bid_t + (ask_t[0] - bid_t[0]) + 2  # best bid 2 ticks above the best ask
        bids = [(format_price(int(bid_t[k]), td), format_price(int(w.bid_lots[i, k]), sd), int(w.bid_n[i, k]))
                for k in range(LEVELS)]
        asks = [(format_price(int(ask_t[k]), td), format_price(int(w.ask_lots[i, k]), sd), int(w.ask_n[i, k]))
                for k in range(LEVELS)]
        return bids, asks

    async def broadcast(self, stream: str, text: str) -> int:
        n = 0
        for ws, streams in list(self.connections.items()):
            if stream in streams:
                try:
                    await ws.send(text)
                    n += 1
                except Exception:
                    pass
        return n

    async def emit(self, symbol: str, t_ms: int, w: SimWindow, i: int, trades: range) -> None:
        raise NotImplementedError


class FakeBinanceFutures(LoopbackVenueServer):
    """USD-M futures: ``symbols`` are Binance symbols (``BTCUSDT``)."""

    def __init__(self, symbols: list[str], **kw) -> None:
        super().__init__(symbols, **kw)
        self._update_id = defaultdict(lambda: 1_000_000)
        self._agg_id = defaultdict(lambda: 5_000_000)

    def _streams(self, path: str) -> tuple[str, list[str]]:
        parts = urlsplit(path)
        return parts.path, parse_qs(parts.query).get("streams", [""])[0].split("/")

    def accept(self, path: str) -> bool:
        base, streams = self._streams(path)
        if base == "/public/stream":
            return all(s.endswith("@depth20@100ms") for s in streams)
        if base == "/market/stream":
            return all(s.endswith("@aggTrade") for s in streams)
        return False  # /ws and /stream were retired on 2026-04-23

    def initial_streams(self, path: str) -> set[str]:
        return set(self._streams(path)[1])

    async def emit(self, symbol: str, t_ms: int, w: SimWindow, i: int, trades: range) -> None:
        lower = symbol.lower()
        bids, asks = self.levels(symbol, w, i)
        pu = self._update_id[symbol]
        u = pu + 3 + i % 5
        data = {"e": "depthUpdate", "E": t_ms, "T": t_ms - 1, "s": symbol, "U": pu + 1, "u": u, "pu": pu,
                "b": [[p, q] for p, q, _ in bids], "a": [[p, q] for p, q, _ in asks]}
        stream = f"{lower}@depth20@100ms"
        if await self.broadcast(stream, json.dumps({"stream": stream, "data": data})):
            self._update_id[symbol] = u
            self.sent_books.append(data)
        td, sd = w.inst.tick_decimals, w.inst.size_decimals
        stream = f"{lower}@aggTrade"
        for k in trades:
            agg = self._agg_id[symbol] + 1
            data = {"e": "aggTrade", "E": t_ms, "s": symbol, "a": agg,
                    "p": format_price(int(w.trade_ticks[k]), td), "q": format_price(int(w.trade_lots[k]), sd),
                    "f": agg * 3, "l": agg * 3 + 2, "T": int(w.trade_time[k]) // 1000, "m": not bool(w.trade_buy[k])}
            if await self.broadcast(stream, json.dumps({"stream": stream, "data": data})):
                self._agg_id[symbol] = agg
                self.sent_trades.append(data)


# ---- comparing what was sent with what was archived (exact decimals) -----------------------
def _d(s: str) -> Decimal:
    return Decimal(s)


def _f(v: float) -> Decimal:
    return Decimal(repr(v))


def sent_book_rows(server: LoopbackVenueServer) -> set[tuple]:
    """The server's sent book snapshots as canonical tuples (see ``archived_book_rows``)."""
    out = set()
    for d in server.sent_books:
        if "levels" in d:  # Hyperliquid
            bids = tuple((_d(x["px"]), _d(x["sz"]), x["n"]) for x in d["levels"][0])
            asks = tuple((_d(x["px"]), _d(x["sz"]), x["n"]) for x in d["levels"][1])
            out.add(("hyperliquid", d["coin"], d["time"] * 1000, None, None, bids, asks))
        else:
            bids = tuple((_d(p), _d(q), None) for p, q in d["b"])
            asks = tuple((_d(p), _d(q), None) for p, q in d["a"])
            out.add(("binance", d["s"], d["E"] * 1000, d["u"], d["pu"], bids, asks))
    return out


def archived_book_rows(table) -> list[tuple]:
    """Archived orderbook_l2 rows as canonical tuples: floats back to decimals via repr."""
    out = []
    for r in table.to_pylist():
        bn = r["bid_n"] or [None] * len(r["bid_px"])
        an = r["ask_n"] or [None] * len(r["ask_px"])
        out.append((r["exchange"], r["symbol"], _us(r["event_time"]), r["update_id"], r["prev_update_id"],
                    tuple((_f(p), _f(q), n) for p, q, n in zip(r["bid_px"], r["bid_sz"], bn)),
                    tuple((_f(p), _f(q), n) for p, q, n in zip(r["ask_px"], r["ask_sz"], an))))
    return out


def sent_trade_rows(server: LoopbackVenueServer) -> set[tuple]:
    out = set()
    for d in server.sent_trades:
        if "tid" in d:
            out.add(("hyperliquid", d["coin"], d["tid"], d["time"] * 1000, _d(d["px"]), _d(d["sz"]),
                     "buy" if d["side"] == "B" else "sell"))
        else:
            out.add(("binance", d["s"], d["a"], d["T"] * 1000, _d(d["p"]), _d(d["q"]), "sell" if d["m"] else "buy"))
    return out


def archived_trade_rows(table) -> list[tuple]:
    return [(r["exchange"], r["symbol"], r["trade_id"], _us(r["event_time"]), _f(r["price"]), _f(r["size"]), r["side"])
            for r in table.to_pylist()]


def _us(t) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
