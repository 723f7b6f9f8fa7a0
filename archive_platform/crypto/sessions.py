"""WebSocket sessions of the capture service: open, subscribe, read, keep alive, reconnect.

``CaptureService`` mixes ``WebSocketSessions`` in; it supplies ``settings`` and ``handle``
(every message read goes to ``handle``). The supervisor that decides when to open, roll over
and replace sessions stays in ``service.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect

from archive_platform.crypto.routes import StreamGroup

# the logger of crypto/service.py, where this code came from, so log filters keep matching
log = logging.getLogger("archive_platform.crypto.service")


@dataclass
class Session:
    ws: ClientConnection
    opened: float
    first_data: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    cause: str = ""


class WebSocketSessions:
    """The session half of ``CaptureService`` (uses its ``settings`` and ``handle``)."""

    async def _open(self, group: StreamGroup) -> Session:
        ws = await connect(group.url, open_timeout=10, ping_interval=20, ping_timeout=20, close_timeout=2,
                           max_size=2**23)
        for msg in group.subscribe:
            await ws.send(msg)
        session = Session(ws=ws, opened=time.monotonic())
        session.task = asyncio.create_task(self._read(group, session), name=f"read-{group.name}")
        return session

    async def _read(self, group: StreamGroup, session: Session) -> None:
        ws = session.ws
        # a trades-only connection may rightly be quiet: there, a dead peer is found by the
        # WebSocket pings (no pong within ping_timeout closes the connection)
        silence = None if group.quiet_ok else self.settings.silence_seconds
        pinger = asyncio.create_task(self._app_ping(group, ws)) if group.app_ping else None
        pending: asyncio.Future | None = None
        try:
            while True:
                # a recv() that outlives the wait, never cancelled mid-message: Python 3.11's
                # wait_for can drop a message that completes as the timeout fires
                if pending is None:
                    pending = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait({pending}, timeout=silence)
                if not done:
                    session.cause = f"silence: no message for {silence:g} s"
                    ws.transport.abort()  # a silent peer would not answer a close handshake either
                    return
                text, pending = pending.result(), None
                await self.handle(group, text)
                if not session.first_data.is_set() and self._is_data(text):
                    session.first_data.set()
        except Exception as exc:  # ConnectionClosed, OSError: the supervisor reconnects
            session.cause = f"disconnect: {type(exc).__name__}: {exc}"[:300]
        finally:
            if pinger:
                pinger.cancel()
            if pending is not None:
                pending.cancel()
            await _close(ws)

    @staticmethod
    def _is_data(text: str | bytes) -> bool:
        t = text if isinstance(text, str) else text.decode("utf-8", "replace")
        return '"data"' in t and '"subscriptionResponse"' not in t

    async def _app_ping(self, group: StreamGroup, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.settings.hyperliquid_ping_seconds)
            await ws.send(group.app_ping)

    async def _connect_with_backoff(self, group: StreamGroup) -> Session:
        attempt = 0
        while True:
            try:
                return await self._open(group)
            except Exception as exc:
                attempt += 1
                # the exponent is bounded: 2 ** 1024 no longer converts to a float, and a night of
                # failed connects must not end the retries with an OverflowError
                cap = min(self.settings.backoff_max, self.settings.backoff_initial * 2 ** min(attempt, 20))
                delay = random.uniform(0, cap)
                log.warning("%s: connect failed (%s); retry %d in %.1f s", group.name, exc, attempt, delay)
                await asyncio.sleep(delay)


async def _close(ws: ClientConnection) -> None:
    try:
        await asyncio.wait_for(ws.close(), timeout=2)
    except Exception:
        pass
