"""Durability and honesty of the crypto capture, audited as a hostile user: SIGKILL and restart,
a full disk, UTC midnight, venue sequence gaps, torn spool files.

Every assertion is on rows, files, gap records and metadata, never on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import time
from datetime import date, datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest

from archive_platform.crypto import daily, report, spool
from archive_platform.crypto.config import CaptureSettings
from archive_platform.crypto.service import CaptureService
from archive_platform.crypto.symbols import parse_symbols
from archive_platform_tests.fakes.binance_ws import (FakeBinanceFutures, _us, archived_book_rows,
                                                     archived_trade_rows, sent_book_rows, sent_trade_rows)
from archive_platform_tests.test_crypto_capture import archived, drain_and_stop, make_settings, until
from archive_platform_tests.test_crypto_kill import spool_parts, start, wait_for

DAY = date(2026, 11, 28)
MIDNIGHT = int(datetime(2026, 11, 29, tzinfo=timezone.utc).timestamp()) * 1_000_000
S = 1_000_000


def book_msg(symbol: str, t_ms: int, u: int, pu: int) -> str:
    data = {"e": "depthUpdate", "E": t_ms, "T": t_ms - 1, "s": symbol, "U": pu + 1, "u": u, "pu": pu,
            "b": [["100.5", "1.0"], ["100.4", "2.0"]], "a": [["100.6", "1.5"], ["100.7", "3.0"]]}
    return json.dumps({"stream": f"{symbol.lower()}@depth20@100ms", "data": data})


def trade_msg(symbol: str, t_ms: int, agg: int) -> str:
    data = {"e": "aggTrade", "E": t_ms, "s": symbol, "a": agg, "p": "100.5", "q": "0.010", "f": agg, "l": agg,
            "T": t_ms, "m": False}
    return json.dumps({"stream": f"{symbol.lower()}@aggTrade", "data": data})


def service(root, **kw) -> CaptureService:
    return CaptureService(CaptureSettings(root=root, symbols=parse_symbols("BTCUSDT"), **kw))


def book_group(svc: CaptureService):
    return next(g for g in svc.groups if "public" in g.name)


def gaps_of(root) -> list[dict]:
    return [{**g, "start": _us(g["start"]), "end": _us(g["end"])} for g in archived(root, "capture_gaps").to_pylist()]


# ---- Binance sequence gaps (pu != previous u) ------------------------------------------------
def test_a_binance_update_id_gap_is_recorded_as_a_capture_gap(tmp_path):
    svc = service(tmp_path)
    g = book_group(svc)
    t0 = (MIDNIGHT - 3600 * S) // 1000

    async def feed():
        await svc.handle(g, book_msg("BTCUSDT", t0, u=110, pu=100))
        await svc.handle(g, book_msg("BTCUSDT", t0 + 100, u=120, pu=110))  # chained: nothing lost
        await svc.handle(g, book_msg("BTCUSDT", t0 + 500, u=170, pu=150))  # 120 -> 150: messages lost
        await svc.handle(g, book_msg("BTCUSDT", t0 + 600, u=180, pu=170))
        await svc.flush()

    asyncio.run(feed())
    gaps = gaps_of(tmp_path)
    assert len(gaps) == 1, gaps
    assert (gaps[0]["exchange"], gaps[0]["stream"], gaps[0]["symbol"]) == ("binance", "depth20@100ms", "BTCUSDT")
    # the missing snapshots lie between the last one received and the first one after the loss
    assert (gaps[0]["start"], gaps[0]["end"]) == ((t0 + 100) * 1000, (t0 + 500) * 1000)
    assert "sequence gap" in gaps[0]["cause"] and "pu 150 after u 120" in gaps[0]["cause"]
    assert archived(tmp_path, "orderbook_l2").num_rows == 4  # the snapshot after the gap is whole: kept
    assert svc.heartbeat()["sequence_gaps"] == 1


@pytest.mark.slow
def test_a_venue_that_skips_update_ids_gets_a_gap_record_live(tmp_path):
    with FakeBinanceFutures(["BTCUSDT"], seed=21) as bz:
        settings = make_settings(tmp_path, binance=bz, symbols="BTCUSDT")

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: svc.rows_written >= 10, "first rows")
            bz._update_id["BTCUSDT"] += 1000  # the venue's ids move on without us seeing them
            await until(lambda: svc.sequence_gaps >= 1, "the sequence gap to be seen")
            await drain_and_stop(svc, task, [bz])
            return svc

        svc = asyncio.run(scenario())
    gaps = gaps_of(tmp_path)
    assert [g["stream"] for g in gaps] == ["depth20@100ms"] and "sequence gap" in gaps[0]["cause"]
    assert svc.reconnects == 0


# ---- UTC midnight ----------------------------------------------------------------------------
def test_a_gap_across_midnight_is_recorded_in_both_days(tmp_path):
    svc = service(tmp_path)
    svc._record_gap(("binance", "aggTrade", "BTCUSDT"), MIDNIGHT - 10 * S, MIDNIGHT + 20 * S, "disconnect: x")
    asyncio.run(svc.flush())
    before = spool.compact_spool(tmp_path, "capture_gaps", DAY)
    after = spool.compact_spool(tmp_path, "capture_gaps", DAY + timedelta(days=1))
    assert before.num_rows == 1 and after.num_rows == 1
    # the later day's coverage (which reads only its own partition) sees its 20 s of the gap
    missing, n = report.gap_slots(after, DAY + timedelta(days=1), "binance", "aggTrade", "BTCUSDT")
    assert (missing, n) == (200, 1)
    missing, n = report.gap_slots(before, DAY, "binance", "aggTrade", "BTCUSDT")
    assert n == 1 and missing == 99  # 10 s up to 23:59:59.999999


def test_a_gap_still_open_after_midnight_is_recorded_for_the_closed_day(tmp_path, monkeypatch):
    from archive_platform.crypto import service as service_mod

    svc = service(tmp_path)
    key = ("binance", "aggTrade", "BTCUSDT")
    svc.open_gaps[key] = (MIDNIGHT - 60 * S, "disconnect: venue down")
    monkeypatch.setattr(service_mod, "now_us", lambda: MIDNIGHT + 600 * S)  # 00:10, before the 00:30 build
    asyncio.run(svc.flush())
    closed = gaps_of(tmp_path)
    assert [(g["start"], g["end"]) for g in closed] == [(MIDNIGHT - 60 * S, MIDNIGHT - 1)]
    assert svc.open_gaps[key] == (MIDNIGHT, "disconnect: venue down")  # the rest stays open


# ---- a full disk ---------------------------------------------------------------------------
def test_a_failing_spool_is_not_retried_on_every_message(tmp_path, monkeypatch):
    calls = []

    def full(root, dataset, rows):
        calls.append(len(rows))
        raise OSError(errno.ENOSPC, "No space left on device")

    svc = service(tmp_path, max_buffer_rows=5)
    g = next(g for g in svc.groups if "market" in g.name)
    real = spool.write_spool
    monkeypatch.setattr(spool, "write_spool", full)
    t0 = (MIDNIGHT - 3600 * S) // 1000

    async def feed(lo, hi):
        for i in range(lo, hi):
            await svc.handle(g, trade_msg("BTCUSDT", t0 + i, 1000 + i))

    asyncio.run(feed(0, 50))
    # one failed write, then the reader no longer re-encodes the growing buffer per message
    # (the periodic flush retries); nothing received is dropped
    assert len(calls) == 1
    assert len(svc.buffers["crypto_trades"]) == 50
    assert svc.heartbeat()["spool_errors"] == 1 and "No space" in svc.heartbeat()["spool_error"]
    monkeypatch.setattr(spool, "write_spool", real)  # space is back
    assert asyncio.run(svc.flush()) == 50
    assert svc.spool_error is None
    asyncio.run(feed(50, 60))  # and size-triggered flushes work again
    assert svc.rows_written == 60 - len(svc.buffers["crypto_trades"]) and svc.rows_written > 50
    assert archived(tmp_path, "crypto_trades").column("trade_id").to_pylist()[:50] == list(range(1000, 1050))


def test_a_write_failing_on_the_second_day_does_not_spool_the_first_twice(tmp_path, monkeypatch):
    svc = service(tmp_path)
    real, fails = spool.write_spool, [True]

    def flaky(root, dataset, rows):  # writes day by day, as write_spool does; the disk fills on day 2
        paths = []
        for day, day_rows in sorted(spool.split_by_day(dataset, rows).items()) if hasattr(spool, "split_by_day") \
                else [(None, rows)]:
            if fails[0] and any(spool.utc_day(r["event_time"]) == DAY + timedelta(days=1) for r in day_rows):
                raise OSError(errno.ENOSPC, "No space left on device")
            paths += real(root, dataset, day_rows)
        return paths

    monkeypatch.setattr(spool, "write_spool", flaky)
    g = next(g for g in svc.groups if "market" in g.name)

    async def feed():
        for i, t in enumerate((MIDNIGHT - 2 * S, MIDNIGHT - S, MIDNIGHT + S)):
            await svc.handle(g, trade_msg("BTCUSDT", t // 1000, 7000 + i))

    asyncio.run(feed())
    with pytest.raises(OSError):
        asyncio.run(svc.flush())
    fails[0] = False
    asyncio.run(svc.flush())
    raw = sum(pq.read_metadata(p).num_rows for p in spool_parts(tmp_path) if "crypto_trades" in str(p))
    assert raw == 3 and svc.rows_written == 3


def _mount_tmpfs(path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_really_full_disk_keeps_rows_and_resumes_when_space_is_back(tmp_path):
    root = tmp_path / "small"
    if not _mount_tmpfs(root, "4m"):
        pytest.skip("needs root and permission to mount a tmpfs (a real full disk)")
    try:
        with FakeBinanceFutures(["BTCUSDT"], seed=23) as bz:
            settings = make_settings(root, binance=bz, symbols="BTCUSDT", ARCHIVE_CRYPTO_MAX_BUFFER_ROWS="20")

            async def scenario():
                svc = CaptureService(settings)
                task = asyncio.create_task(svc.run(handle_signals=False))
                await until(lambda: svc.rows_written >= 10, "first rows")
                filler = root / "filler"
                with open(filler, "wb", buffering=0) as fh:  # fill the disk to the last byte
                    for chunk in (65536, 1):
                        try:
                            while True:
                                fh.write(b"\0" * chunk)
                        except OSError:
                            pass
                await until(lambda: svc.spool_errors >= 2, "spool writes to fail")
                held = svc.buffered_rows()
                assert held > 0
                filler.unlink()  # space is back
                await until(lambda: svc.spool_error is None and svc.rows_written >= held, "the spool to resume")
                await drain_and_stop(svc, task, [bz])
                return svc

            asyncio.run(scenario())
        # nothing received was lost: every row sent is archived, no file torn, no gap invented
        for part in spool_parts(root):
            pq.read_table(part)
        assert set(archived_book_rows(archived(root, "orderbook_l2"))) == sent_book_rows(bz)
        assert set(archived_trade_rows(archived(root, "crypto_trades"))) == sent_trade_rows(bz)
        assert not list((root / spool.SPOOL_DIR).rglob("*.tmp"))
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


# ---- SIGKILL and restart ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_restart_after_sigkill_records_what_was_lost_as_a_gap(tmp_path):
    with FakeBinanceFutures(["BTCUSDT", "ETHUSDT"], seed=22) as bz:
        proc = start(tmp_path, bz, ARCHIVE_CRYPTO_MAX_BUFFER_ROWS="30", ARCHIVE_CRYPTO_FLUSH_SECONDS="3600")
        try:
            wait_for(lambda: len([p for p in spool_parts(tmp_path) if "orderbook" in str(p)]) >= 2, "batches", proc)

            def in_flight() -> bool:  # books sent and not yet spooled, well short of the next batch of 30
                return 5 <= len(sent_book_rows(bz)) - archived(tmp_path, "orderbook_l2").num_rows <= 20
            # killed with rows in its buffer, so the kill loses some (the fake venue sends only to a
            # connected client: killed right after a flush, nothing was lost and the test had nothing
            # to check, about one run in three)
            wait_for(in_flight, "books received but not yet spooled", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        before = len(spool_parts(tmp_path))
        time.sleep(1.0)  # down for a while (the fake venue logs only what reaches a connected client)
        proc = start(tmp_path, bz, ARCHIVE_CRYPTO_FLUSH_SECONDS="0.3")
        try:
            wait_for(lambda: len(spool_parts(tmp_path)) >= before + 4, "rows after the restart", proc)
            bz.stop_producing()
            # the last messages reach the new process and its spool (flushed every 0.3 s): wait
            # for each symbol's last book, then for the trades to stop growing (a fixed sleep
            # lost the tail on a loaded machine: rows sent, neither archived nor in a gap)
            last = {}
            for row in sent_book_rows(bz):
                last[row[1]] = max(last.get(row[1], row), row, key=lambda r: r[2])
            wait_for(lambda: set(last.values()) <= set(archived_book_rows(archived(tmp_path, "orderbook_l2"))),
                     "the last book of each symbol in the spool", proc)
            seen, still = -1, 0
            while still < 4:
                n = archived(tmp_path, "crypto_trades").num_rows
                still, seen = (still + 1, n) if n == seen else (0, n)
                time.sleep(0.25)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        for part in spool_parts(tmp_path):
            pq.read_table(part)
        gaps = gaps_of(tmp_path)
        restart = [g for g in gaps if "restart" in g["cause"]]
        assert {(g["stream"], g["symbol"]) for g in restart} >= {("depth20@100ms", "BTCUSDT"),
                                                                 ("depth20@100ms", "ETHUSDT")}
        # every book the venue sent and the archive lacks (lost in the buffer, or sent while
        # nothing ran) lies inside a recorded gap of its stream
        got = set(archived_book_rows(archived(tmp_path, "orderbook_l2")))
        missing = sent_book_rows(bz) - got
        assert missing
        for row in missing:
            assert any(g["symbol"] == row[1] and g["stream"] == "depth20@100ms" and g["start"] <= row[2] <= g["end"]
                       for g in gaps), row
        got_t = set(archived_trade_rows(archived(tmp_path, "crypto_trades")))
        for row in sent_trade_rows(bz) - got_t:
            assert any(g["symbol"] == row[1] and g["stream"] == "aggTrade" and g["start"] <= row[3] <= g["end"]
                       for g in gaps), row


def test_restart_gaps_start_at_the_last_spooled_row_of_each_stream(tmp_path):
    first = service(tmp_path)
    g = book_group(first)
    t0 = (MIDNIGHT - 3600 * S) // 1000

    async def feed():
        await first.handle(g, book_msg("BTCUSDT", t0, u=10, pu=5))
        await first.handle(g, book_msg("BTCUSDT", t0 + 100, u=20, pu=10))
        await first.flush()
        await first.handle(g, book_msg("BTCUSDT", t0 + 200, u=30, pu=20))  # buffered: lost to a SIGKILL

    asyncio.run(feed())
    second = service(tmp_path)  # the restarted process
    assert asyncio.run(second.open_restart_gaps()) == 1
    key = ("binance", "depth20@100ms", "BTCUSDT")
    assert second.open_gaps[key][0] == (t0 + 100) * 1000

    async def resume():
        await second.handle(book_group(second), book_msg("BTCUSDT", t0 + 5000, u=90, pu=80))
        await second.flush()

    asyncio.run(resume())
    gaps = gaps_of(tmp_path)
    assert [(g["start"], g["end"]) for g in gaps] == [((t0 + 100) * 1000, (t0 + 5000) * 1000)]
    assert second.sequence_gaps == 0  # one gap, not a second one for the same loss


# ---- torn or emptied spool files ---------------------------------------------------------------
def test_an_unreadable_spool_file_costs_its_rows_not_the_day(tmp_path):
    svc = service(tmp_path)
    g = book_group(svc)
    t0 = (MIDNIGHT - 3600 * S) // 1000

    async def feed():
        for i in range(3):
            await svc.handle(g, book_msg("BTCUSDT", t0 + 100 * i, u=10 * (i + 2), pu=10 * (i + 1)))
            await svc.flush()

    asyncio.run(feed())
    parts = spool.spool_files(tmp_path, "orderbook_l2", DAY)
    assert len(parts) == 3
    data = parts[1].read_bytes()
    parts[1].write_bytes(data[: len(data) // 2])  # a torn file
    (parts[0].parent / "part-9999999999999999999-1-000000.parquet").write_bytes(b"")  # an emptied one
    unreadable: list[str] = []
    table = spool.compact_spool(tmp_path, "orderbook_l2", DAY, unreadable)
    assert table.column("update_id").to_pylist() == [20, 40]
    assert len(unreadable) == 2
    rows = daily.captured_day("orderbook_l2", DAY, root=tmp_path, symbols=parse_symbols("BTCUSDT"),
                              data_url="http://127.0.0.1:9")
    assert rows.table.num_rows == 2
    assert any("2 unreadable spool files" in n for n in rows.notes)


def test_a_new_day_folder_is_made_durable_in_its_parent(tmp_path, monkeypatch):
    synced = []
    real = spool.fsync_dir
    monkeypatch.setattr(spool, "fsync_dir", lambda p: (synced.append(str(p)), real(p)))
    spool.write_spool(tmp_path, "capture_gaps", [{
        "exchange": "binance", "stream": "aggTrade", "symbol": "BTCUSDT", "start": MIDNIGHT - S, "end": MIDNIGHT - S,
        "cause": "x", "source": "binance"}])
    folder = spool.spool_dir(tmp_path, "capture_gaps", DAY)
    assert str(folder.parent) in synced  # the new date= entry, not only the file inside it
    assert str(folder) in synced
