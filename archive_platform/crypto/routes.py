"""Which WebSocket connections the service opens for a symbol list (pure).

Binance USD-M futures split its WebSocket addresses in 2026 (the official "WebSocket Change
Notice"; the plain ``/ws`` and ``/stream`` paths were retired on 2026-04-23): high-frequency
public data such as partial book depth lives under ``<base>/public``, regular market data such
as aggTrade under ``<base>/market``. The service opens one combined stream on each:
``<base>/public/stream?streams=btcusdt@depth20@100ms/...`` and
``<base>/market/stream?streams=btcusdt@aggTrade/...``. Hyperliquid has one endpoint,
``<base>/ws``, with one ``subscribe`` message per coin and channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from archive_platform.crypto.config import CaptureSettings
from archive_platform.crypto.symbols import stream_name

BINANCE_BOOK_STREAM = "depth20@100ms"
BINANCE_TRADE_STREAM = "aggTrade"
#: Binance allows at most 1024 streams per connection
BINANCE_MAX_STREAMS = 1024


@dataclass(frozen=True)
class StreamGroup:
    """One WebSocket connection: its URL, what to send after opening, the streams it carries."""

    name: str
    exchange: str
    url: str
    subscribe: tuple[str, ...]
    streams: tuple[tuple[str, str], ...]  # (stream, symbol)
    rollover: bool  # the exchange closes connections after 24 h: overlap a successor first
    app_ping: str | None = None  # an application-level heartbeat message
    #: carries only streams that may rightly send nothing for a while (trades: no trade, no
    #: message), so silence does not mean a dead connection; the WebSocket pings tell that
    quiet_ok: bool = False


def stream_groups(settings: CaptureSettings) -> list[StreamGroup]:
    groups: list[StreamGroup] = []
    binance = [s for s in settings.symbols if s.exchange == "binance"]
    for start in range(0, len(binance), BINANCE_MAX_STREAMS):
        chunk = binance[start:start + BINANCE_MAX_STREAMS]
        for path, stream in (("public", BINANCE_BOOK_STREAM), ("market", BINANCE_TRADE_STREAM)):
            names = "/".join(stream_name(s, stream) for s in chunk)
            groups.append(StreamGroup(
                name=f"binance-{path}-{start // BINANCE_MAX_STREAMS}", exchange="binance",
                url=f"{settings.binance_url}/{path}/stream?streams={names}", subscribe=(),
                streams=tuple((stream, s.symbol) for s in chunk), rollover=True,
                quiet_ok=stream == BINANCE_TRADE_STREAM,
            ))
    coins = [s for s in settings.symbols if s.exchange == "hyperliquid"]
    if coins:
        subs = tuple(
            json.dumps({"method": "subscribe", "subscription": {"type": kind, "coin": s.symbol}})
            for s in coins for kind in ("l2Book", "trades")
        )
        groups.append(StreamGroup(
            name="hyperliquid", exchange="hyperliquid", url=f"{settings.hyperliquid_url}/ws", subscribe=subs,
            streams=tuple((kind, s.symbol) for s in coins for kind in ("l2Book", "trades")), rollover=False,
            app_ping=json.dumps({"method": "ping"}),
        ))
    return groups
