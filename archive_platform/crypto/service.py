"""The capture service: asyncio WebSocket sessions -> normalise -> dedup -> spool (see docs/crypto.md).

One supervisor per ``StreamGroup`` keeps a session open: it reconnects with exponential backoff
and full jitter, treats ``silence_seconds`` without any message as a dead connection, and for
exchanges that close connections after 24 h (Binance) opens the successor ``rollover_seconds``
after the current one opened, waits for its first data message, then closes the old one; rows
both sessions deliver meanwhile are dropped by key (a bounded recent-key set), so there is no gap.

Every interruption of a stream is recorded in ``capture_gaps``: ``start`` is the exchange event
time of the last row received on that stream before the loss (the loss time when there was none),
``end`` the event time of the first new row after it; rows of that stream missing from the
archive all lie in [start, end] (inclusive: several trades can share a millisecond).

Rows are spooled by ``flush`` every ``flush_seconds`` or as soon as ``max_buffer_rows`` are
buffered (the reader then waits for the write), so a SIGKILL loses at most
2 x max_buffer_rows rows plus one message, and rows younger than flush_seconds plus one write.

While the spool cannot be written (a full disk), rows stay buffered and the periodic flush retries;
the buffer is bounded by ``max_unspooled_rows`` book and trade rows: beyond it the oldest are
dropped (per stream, its oldest) and each stream's dropped span is buffered as a capture gap, so
a long outage costs the oldest rows, recorded, instead of an out-of-memory kill that loses all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from typing import Any

import pyarrow as pa

from archive_platform.crypto import spool
from archive_platform.crypto.candles import iso
from archive_platform.crypto.config import CaptureSettings
from archive_platform.crypto.normalise import (STREAMS, MalformedMessage, Parsed, book_key, normalise_binance,
                                               normalise_hyperliquid, trade_key)
from archive_platform.crypto.dedup import RecentKeys
from archive_platform.crypto.routes import StreamGroup, stream_groups
from archive_platform.crypto.schemas import TS
from archive_platform.crypto.sessions import Session, WebSocketSessions

log = logging.getLogger(__name__)
NORMALISERS = {"binance": normalise_binance, "hyperliquid": normalise_hyperliquid}
#: a session lost after this long counts as having worked even without data (a quiet aggTrade
#: connection): the reconnect backoff starts again from ``backoff_initial``
HEALTHY_SESSION_S = 60.0


def now_us() -> int:
    return time.time_ns() // 1000


class CaptureService(WebSocketSessions):
    def __init__(self, settings: CaptureSettings, *, publisher: Any = None) -> None:
        self.settings = settings
        self.root = settings.root
        self.groups = stream_groups(settings)
        self.buffers: dict[str, list[dict]] = {"orderbook_l2": [], "crypto_trades": [], "capture_gaps": []}
        self.recent = RecentKeys()
        self.last_event: dict[tuple[str, str, str], int] = {}
        self.last_receive: dict[tuple[str, str, str], int] = {}
        self.open_gaps: dict[tuple[str, str, str], tuple[int, str]] = {}
        #: last Binance book update id ``u`` per stream: the next message's ``pu`` must equal it
        self.last_update: dict[tuple[str, str, str], int] = {}
        self.sequence_gaps = 0
        #: the spool cannot be written (a full disk, say): rows stay buffered; only the periodic
        #: flush retries, not every message (each try re-encodes the whole growing buffer)
        self.spool_error: str | None = None
        self.spool_errors = 0
        #: book and trade rows dropped (oldest first) because the spool failed and the buffer
        #: reached ``max_unspooled_rows``; each stream's dropped span is a capture gap
        self.dropped_rows = 0
        #: the cause of the gaps of the current drop episode (None: not dropping); an episode ends
        #: when a flush succeeds
        self._drop_cause: str | None = None
        self._episode_dropped = 0
        #: the drop gap row each stream last buffered in this episode: later drops extend it
        #: while it is still in the buffer (not yet being written) and on the same UTC day
        self._drop_gap: dict[tuple[str, str, str], dict] = {}
        self.reconnects = self.malformed = self.rows_written = self.messages = 0
        self.last_malformed: str | None = None
        self.exchange_errors = 0  # error replies of the exchange (e.g. a refused subscription)
        self.last_exchange_error: str | None = None
        self.publisher = publisher
        self.stop_event = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._inflight: set[asyncio.Future] = set()
        self._started = now_us()

    # ---- rows ---------------------------------------------------------------------------
    def buffered_rows(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    async def handle(self, group: StreamGroup, text: str | bytes) -> None:
        self.messages += 1
        receive = now_us()
        try:
            parsed: Parsed = NORMALISERS[group.exchange](text, receive)
        except MalformedMessage as exc:
            self.malformed += 1
            self.last_malformed = str(exc)[:200]
            if self.malformed <= 20 or self.malformed % 1000 == 0:
                log.warning("%s: refused malformed message #%d: %s", group.name, self.malformed, exc)
            return
        if parsed.control == "error":
            self.exchange_errors += 1
            self.last_exchange_error = f"{group.name}: {parsed.error}"
            log.error("%s: the exchange answered with an error: %s", group.name, parsed.error)
            return
        for dataset, rows, keyf in (("orderbook_l2", parsed.books, book_key), ("crypto_trades", parsed.trades, trade_key)):
            for row in rows:
                stream = (row["exchange"], STREAMS[(row["exchange"], dataset)], row["symbol"])
                self.last_receive[stream] = receive
                if not self.recent.add(keyf(row)):
                    continue
                gap = self.open_gaps.pop(stream, None)
                if gap is not None:
                    self._record_gap(stream, gap[0], max(gap[0], row["event_time"]), gap[1])
                elif dataset == "orderbook_l2":
                    self._check_sequence(stream, row)
                if dataset == "orderbook_l2" and row.get("update_id") is not None:
                    self.last_update[stream] = max(self.last_update.get(stream, row["update_id"]), row["update_id"])
                self.last_event[stream] = max(self.last_event.get(stream, 0), row["event_time"])
                self.buffers[dataset].append(row)
                if self.publisher is not None:
                    self.publisher.on_row(dataset, row)
        if self.spool_error is not None:
            self.bound_buffer()
        if self.buffered_rows() >= self.settings.max_buffer_rows and self.spool_error is None:
            try:
                await self._tracked(self.flush())  # the reader waits: memory and SIGKILL loss stay bounded
            except OSError as exc:
                log.error("spool write failed (%s); rows stay buffered", exc)

    def _check_sequence(self, stream: tuple[str, str, str], row: dict) -> None:
        """Binance books: ``pu`` is the ``u`` of the stream's previous message. A ``pu`` above the
        last ``u`` received means messages were lost (a server-side drop, a slow consumer): the
        snapshots between are missing, which is a capture gap. Each depth20 message is a whole
        top-20 snapshot, so the book itself is resynced by this very message (nothing to rebuild);
        what must not happen is the loss going unrecorded. (A ``pu`` below it is an older message
        of an overlapping session: nothing was lost.)"""
        pu, last = row.get("prev_update_id"), self.last_update.get(stream)
        if pu is None or last is None or pu <= last:
            return
        self.sequence_gaps += 1
        start = self.last_event.get(stream, row["event_time"])
        self._record_gap(stream, min(start, row["event_time"]), row["event_time"],
                         f"sequence gap: pu {pu} after u {last} ({pu - last} update ids missed)")

    def _record_gap(self, stream: tuple[str, str, str], start: int, end: int, cause: str) -> None:
        """Buffer a gap, one row per UTC day it touches: a row lives in the partition of its
        ``start``, and each day's coverage reads only that day's gaps, so a gap across midnight
        must have a row in the later day too (the part from 00:00)."""
        exchange, name, symbol = stream
        while True:
            day_end = (start // spool.US_PER_DAY + 1) * spool.US_PER_DAY
            last = end < day_end
            self.buffers["capture_gaps"].append({
                "exchange": exchange, "stream": name, "symbol": symbol, "start": start,
                "end": end if last else day_end - 1, "cause": cause if last else f"{cause} (continues after 00:00 UTC)",
                "source": exchange})
            if last:
                return
            start = day_end

    def bound_buffer(self) -> int:
        """While the spool fails, keep at most ``max_unspooled_rows`` book and trade rows: drop the
        oldest (by arrival, across both datasets, so each stream loses its oldest rows) down to
        the bound less 1 % (a drop then happens once per 1 % of the bound, not on every message,
        as each one moves the whole list) and buffer each stream's dropped span as a capture gap
        [first dropped row's event time, last one's]. ``capture_gaps`` rows are never dropped.
        Returns the number of rows dropped."""
        bound = self.settings.max_unspooled_rows
        books, trades = self.buffers["orderbook_l2"], self.buffers["crypto_trades"]
        excess = len(books) + len(trades) - bound
        if excess <= 0:
            return 0
        drop = excess + bound // 100
        i = j = 0  # both lists are in arrival order: merge their heads, oldest first
        while i + j < drop:
            if j >= len(trades) or (i < len(books) and books[i]["receive_time"] <= trades[j]["receive_time"]):
                i += 1
            else:
                j += 1
        if self._drop_cause is None:
            self._drop_cause = (f"spool not writable ({self.spool_error}): buffer bound of {bound} rows "
                                "(ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS) reached, oldest rows dropped")
            log.error("spool not writable (%s) and %d book and trade rows buffered: dropping the oldest, "
                      "recorded as capture gaps, until a flush succeeds (ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS=%d)",
                      self.spool_error, bound + excess, bound)
        spans: dict[tuple[str, str, str], list[int]] = {}
        for dataset, rows, cut in (("orderbook_l2", books, i), ("crypto_trades", trades, j)):
            for row in rows[:cut]:
                stream = (row["exchange"], STREAMS[(row["exchange"], dataset)], row["symbol"])
                span = spans.setdefault(stream, [row["event_time"], row["event_time"]])
                span[0], span[1] = min(span[0], row["event_time"]), max(span[1], row["event_time"])
            del rows[:cut]
        for stream, (start, end) in spans.items():
            self._record_drop(stream, start, end)
        self.dropped_rows += drop
        self._episode_dropped += drop
        return drop

    def _record_drop(self, stream: tuple[str, str, str], start: int, end: int) -> None:
        """One gap per stream, episode and UTC day where possible: extend the stream's last drop
        gap while it is still buffered (a flush taking it for a write hands it back if the write
        fails), up to the end of its UTC day; the rest is a new gap (split at midnight)."""
        cause = self._drop_cause or "spool not writable: oldest rows dropped"
        gaps = self.buffers["capture_gaps"]
        row = self._drop_gap.get(stream)
        if row is not None and start >= row["start"] and any(r is row for r in gaps):
            day_end = (row["start"] // spool.US_PER_DAY + 1) * spool.US_PER_DAY
            if end < day_end:
                row["end"] = max(row["end"], end)
                return
            if start < day_end:  # this span crosses the gap's midnight: close the gap at its day's end
                row["end"], row["cause"] = day_end - 1, f"{cause} (continues after 00:00 UTC)"
                start = day_end
        self._record_gap(stream, start, end, cause)
        self._drop_gap[stream] = gaps[-1]

    def roll_open_gaps(self, now: int) -> None:
        """Record the part before today (UTC) of every gap still open, and keep the rest open: the
        daily asset of a closed day must see a gap that began that day even while it lasts."""
        today = now // spool.US_PER_DAY * spool.US_PER_DAY
        for stream, (start, cause) in list(self.open_gaps.items()):
            if start < today:
                self._record_gap(stream, start, today - 1, cause)
                self.open_gaps[stream] = (today, cause)

    async def open_restart_gaps(self) -> int:
        """On start, open a gap on every stream from the last row of it that reached the spool:
        the rows a SIGKILL lost, and whatever the venue sent while no capture ran, are missing
        and must show as a capture gap (closed by the stream's first new row)."""
        wanted = [(g.exchange, name, sym) for g in self.groups for name, sym in g.streams]
        last = await asyncio.to_thread(spool.last_spooled_events, self.root, wanted)
        for key, at in last.items():
            self.open_gaps.setdefault(key, (at, "capture not running: between the last spooled row and a restart"))
        return len(last)

    def open_gap(self, group: StreamGroup, cause: str) -> None:
        at = now_us()
        for stream_name, symbol in group.streams:
            key = (group.exchange, stream_name, symbol)
            if key not in self.open_gaps:
                self.open_gaps[key] = (self.last_event.get(key, at), cause)

    async def flush(self) -> int:
        """Write every buffered row to the spool (one atomic file per dataset and UTC day)."""
        async with self._flush_lock:
            self.roll_open_gaps(now_us())
            # one file per dataset and UTC day, each dropped from the buffer once renamed: a
            # failure on the second day of a batch must not spool the first day's rows twice
            taken = {k: list(spool.split_by_day(k, v).values()) for k, v in self.buffers.items() if v}
            for k in taken:
                self.buffers[k] = []
            written = 0
            try:
                for dataset, chunks in taken.items():
                    while chunks:
                        await asyncio.to_thread(spool.write_spool, self.root, dataset, chunks[0])
                        written += len(chunks.pop(0))
                self.spool_error = None
                if self._drop_cause is not None:
                    log.warning("spool writable again: %d rows had been dropped and are recorded as capture gaps",
                                self._episode_dropped)
                    self._drop_cause, self._episode_dropped = None, 0
            except OSError as exc:
                self.spool_errors += 1
                self.spool_error = f"{type(exc).__name__}: {exc}"[:300]
                raise
            finally:  # a failed write keeps its rows buffered for the next flush
                for dataset, chunks in taken.items():
                    rest = [r for c in chunks for r in c]
                    if rest:
                        self.buffers[dataset] = rest + self.buffers[dataset]
                self.rows_written += written
                if written:  # rows after an earlier drop gap reached the spool: no longer extend it
                    self._drop_gap.clear()
                if self.spool_error is not None:  # rows the readers added during the write count too
                    self.bound_buffer()
            return written

    def heartbeat(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "started": iso(self._started), "written_at": iso(now_us()),
            "streams": {":".join(k): {"last_event": iso(self.last_event[k]), "last_receive": iso(v)}
                        for k, v in sorted(self.last_receive.items()) if k in self.last_event},
            "buffered_rows": self.buffered_rows(), "reconnects": self.reconnects, "malformed": self.malformed,
            "last_malformed": self.last_malformed, "exchange_errors": self.exchange_errors,
            "last_exchange_error": self.last_exchange_error, "messages": self.messages, "rows_written": self.rows_written,
            "sequence_gaps": self.sequence_gaps, "spool_errors": self.spool_errors, "spool_error": self.spool_error,
            "dropped_rows": self.dropped_rows, "dropping_rows": self._episode_dropped,
            "max_unspooled_rows": self.settings.max_unspooled_rows,
            "open_gaps": sorted(":".join(k) for k in self.open_gaps),
            # every stream the service subscribed to: one that never delivered is a problem too
            "expected_streams": sorted(f"{g.exchange}:{name}:{sym}" for g in self.groups for name, sym in g.streams),
        }

    def write_heartbeat(self) -> None:
        spool.write_json_atomic(spool.heartbeat_path(self.root), self.heartbeat())

    # ---- sessions -----------------------------------------------------------------------
    async def supervise(self, group: StreamGroup) -> None:
        live: list[Session] = []
        try:
            await self._supervise(group, live)
        finally:
            for s in live:
                if s.task is not None:
                    s.task.cancel()
            await asyncio.gather(*(s.task for s in live if s.task is not None), return_exceptions=True)

    async def _session(self, group: StreamGroup, live: list[Session]) -> Session:
        session = await self._connect_with_backoff(group)
        live[:] = [s for s in live if s.task is not None and not s.task.done()] + [session]
        return session

    async def _supervise(self, group: StreamGroup, live: list[Session]) -> None:
        session = await self._session(group, live)
        dropped = 0  # consecutive sessions lost before they delivered anything
        while True:
            waits = {session.task}
            timer = None
            if group.rollover:
                left = self.settings.rollover_seconds - (time.monotonic() - session.opened)
                timer = asyncio.create_task(asyncio.sleep(max(0.0, left)))
                waits.add(timer)
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if timer is not None and not session.task.done():
                # planned rollover: the successor must deliver before the old session goes
                successor = await self._session(group, live)
                first = asyncio.create_task(successor.first_data.wait())
                await asyncio.wait({first, successor.task, session.task}, timeout=max(30.0, self.settings.silence_seconds),
                                   return_when=asyncio.FIRST_COMPLETED)
                first.cancel()
                # a quiet trades-only successor that is still connected has missed nothing
                ready = successor.first_data.is_set() or (group.quiet_ok and not successor.task.done())
                if ready or session.task.done():
                    if session.task.done() and not ready:
                        self.open_gap(group, session.cause or "rollover: old session ended first")
                    session.task.cancel()
                    await asyncio.gather(session.task, return_exceptions=True)
                    session = successor
                    self.reconnects += 1
                else:
                    successor.task.cancel()
                    await asyncio.gather(successor.task, return_exceptions=True)
                    session.opened = time.monotonic() - self.settings.rollover_seconds + 1.0  # retry soon
                continue
            if timer is not None:
                timer.cancel()
            log.warning("%s: session lost (%s); reconnecting", group.name, session.cause)
            self.open_gap(group, session.cause or "disconnect")
            # a server that accepts and drops us at once (over its limits, say) must not be
            # hammered: Binance may ban an IP that is disconnected again and again. Back off
            # across such sessions; one that delivered data (or lived a while) resets it.
            worked = session.first_data.is_set() or time.monotonic() - session.opened >= HEALTHY_SESSION_S
            dropped = 0 if worked else dropped + 1
            cap = min(self.settings.backoff_max, self.settings.backoff_initial * 2 ** min(max(0, dropped - 1), 20))
            await asyncio.sleep(random.uniform(0, cap))
            session = await self._session(group, live)
            self.reconnects += 1

    # ---- main ---------------------------------------------------------------------------
    def _tracked(self, coro) -> asyncio.Future:
        """Run a write as its own task that a shutdown waits for instead of cancelling half-way
        (a cancelled await would leave its thread writing while the final flush writes again)."""
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return asyncio.shield(task)

    async def _every(self, seconds: float, fn) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self._tracked(fn())
            except Exception:  # a full disk, say: keep capturing and retry at the next tick
                log.exception("%s failed; retrying in %g s", getattr(fn, "__name__", fn), seconds)

    async def _heartbeat_async(self) -> None:
        beat = self.heartbeat()  # built on the loop: the readers mutate these dicts
        await asyncio.to_thread(spool.write_json_atomic, spool.heartbeat_path(self.root), beat)

    async def run(self, seconds: float | None = None, *, handle_signals: bool = True) -> dict[str, Any]:
        """Capture until ``seconds`` pass, ``stop_event`` is set, or SIGTERM/SIGINT; then flush."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop_event.set)
        # pyarrow imports pandas on its first tz-aware array (seconds on a busy machine): pay it
        # before connecting, not inside the first flush while messages queue up
        await asyncio.to_thread(spool.rows_to_table, "capture_gaps", [])
        await asyncio.to_thread(pa.array([0], pa.int64()).cast, TS)
        await self.open_restart_gaps()
        tasks = [asyncio.create_task(self.supervise(g), name=f"supervise-{g.name}") for g in self.groups]
        tasks.append(asyncio.create_task(self._every(self.settings.flush_seconds, self.flush)))
        tasks.append(asyncio.create_task(self._every(self.settings.heartbeat_seconds, self._heartbeat_async)))
        if self.publisher is not None:
            tasks.append(asyncio.create_task(self.publisher.run()))
        try:
            await asyncio.wait_for(self.stop_event.wait(), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            for t in tasks:
                t.cancel()
            for r in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(r, Exception):
                    log.error("capture task failed: %r", r)
            await asyncio.gather(*self._inflight, return_exceptions=True)
            end = now_us()
            for stream, (start, cause) in sorted(self.open_gaps.items()):
                self._record_gap(stream, start, max(start, end), cause + " (still open at shutdown)")
            self.open_gaps.clear()
            await self.flush()
            if self.publisher is not None:
                await self.publisher.close()
            self.write_heartbeat()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        return self.heartbeat()
