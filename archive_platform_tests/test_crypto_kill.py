"""The capture service as a real process: SIGKILL mid-batch loses exactly the unflushed buffer,
within the documented bound (2 x ARCHIVE_CRYPTO_MAX_BUFFER_ROWS rows plus one message), never
duplicates or tears a file; SIGTERM flushes everything received, then exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from archive_platform.crypto import spool
from archive_platform_tests.fakes.binance_ws import (FakeBinanceFutures, archived_book_rows, archived_trade_rows,
                                                     sent_book_rows, sent_trade_rows)
from archive_platform_tests.test_crypto_capture import archived

MAX_ROWS = 40


def start(root, server, **env):
    full = {**os.environ, "ARCHIVE_CRYPTO_SYMBOLS": "BTCUSDT,ETHUSDT", "BINANCE_FUTURES_WS_URL": server.url,
            "ARCHIVE_CRYPTO_HEARTBEAT_SECONDS": "0.2", **env}
    full.pop("REDIS_URL", None)
    code = "from archive_platform.crypto.cli import capture; capture()"
    return subprocess.Popen([sys.executable, "-c", code, "--root", str(root)], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(pred, what, proc, timeout=60):
    end = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"capture exited early: {proc.stdout.read().decode()[-2000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def spool_parts(root):
    return sorted((root / spool.SPOOL_DIR).rglob("part-*.parquet")) if (root / spool.SPOOL_DIR).exists() else []


def heartbeat(root):
    try:
        return json.loads(spool.heartbeat_path(root).read_text())
    except (FileNotFoundError, ValueError):
        return None


@pytest.mark.slow
def test_sigkill_mid_batch_loses_only_the_unflushed_buffer(tmp_path):
    with FakeBinanceFutures(["BTCUSDT", "ETHUSDT"], seed=11) as bz:
        proc = start(tmp_path, bz, ARCHIVE_CRYPTO_MAX_BUFFER_ROWS=str(MAX_ROWS), ARCHIVE_CRYPTO_FLUSH_SECONDS="3600")
        try:
            wait_for(lambda: len([p for p in spool_parts(tmp_path) if "orderbook" in str(p)]) >= 4, "four batches", proc)
            # pause the feed until the heartbeat shows every sent row received and some of them
            # still buffered (mid-batch), so the loss can be checked exactly, with nothing in flight
            for _ in range(50):
                bz.stop_producing()
                sent = lambda: len(bz.sent_books) + len(bz.sent_trades)  # noqa: E731
                wait_for(lambda: (b := heartbeat(tmp_path)) is not None and b["rows_written"] + b["buffered_rows"]
                         == sent(), "the heartbeat to account for every sent row", proc)
                time.sleep(0.3)  # one more heartbeat: the state is settled
                beat = heartbeat(tmp_path)
                if beat["buffered_rows"] > 0 and beat["rows_written"] + beat["buffered_rows"] == sent():
                    break
                bz.producing.set()
                time.sleep(0.15)
            buffered = beat["buffered_rows"]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        for part in spool_parts(tmp_path):  # every file complete: footer and all row groups readable
            pq.read_table(part)
        books, trades = archived(tmp_path, "orderbook_l2"), archived(tmp_path, "crypto_trades")
        got_b, got_t = archived_book_rows(books), archived_trade_rows(trades)
        raw = sum(pq.read_metadata(p).num_rows for p in spool_parts(tmp_path) if "_gaps" not in str(p))
        assert raw == len(got_b) + len(got_t), "a row was spooled twice"
        assert len(got_b) == len(set(got_b)) and len(got_t) == len(set(got_t))
        sent_b, sent_t = sent_book_rows(bz), sent_trade_rows(bz)
        assert set(got_b) <= sent_b and set(got_t) <= sent_t
        lost = len(sent_b - set(got_b)) + len(sent_t - set(got_t))
        assert lost == buffered and 0 < lost <= 2 * MAX_ROWS + 1


@pytest.mark.slow
def test_sigterm_flushes_everything_received_then_exits(tmp_path):
    with FakeBinanceFutures(["BTCUSDT", "ETHUSDT"], seed=12) as bz:
        proc = start(tmp_path, bz, ARCHIVE_CRYPTO_FLUSH_SECONDS="3600")
        beat = spool.heartbeat_path(tmp_path)

        def buffered():
            try:
                return json.loads(beat.read_text())["buffered_rows"]
            except (FileNotFoundError, ValueError):
                return 0

        try:
            wait_for(lambda: buffered() >= 30, "rows buffered", proc)
            bz.stop_producing()
            time.sleep(0.2)
            total = len(bz.sent_books) + len(bz.sent_trades)
            wait_for(lambda: buffered() == total, "every sent row to be buffered", proc)
            assert spool_parts(tmp_path) == []  # nothing flushed yet
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        books, trades = archived(tmp_path, "orderbook_l2"), archived(tmp_path, "crypto_trades")
        assert set(archived_book_rows(books)) == sent_book_rows(bz)
        assert set(archived_trade_rows(trades)) == sent_trade_rows(bz)
        assert json.loads(beat.read_text())["buffered_rows"] == 0
