"""The capture service against loopback fakes of Binance USD-M futures and Hyperliquid.

Each test runs the real service (websockets client, normalisers, spool) against servers that
speak the exchanges' message formats from the simulated venue, then compares the compacted spool
with what the servers logged as sent: values exact as decimals, trade ids neither lost nor
duplicated, every missing row inside a recorded gap.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pyarrow as pa
import pytest

from archive_platform.crypto import spool
from archive_platform.crypto.config import capture_settings_from_env
from archive_platform.crypto.coverage import coverage
from archive_platform.crypto.service import CaptureService
from archive_platform_tests.fakes.binance_ws import (FakeBinanceFutures, archived_book_rows, archived_trade_rows,
                                                     sent_book_rows, sent_trade_rows)
from archive_platform_tests.fakes.hyperliquid_ws import FakeHyperliquid


def make_settings(root, *, binance=None, hyper=None, symbols="BTCUSDT,ETHUSDT", **extra):
    env = {"ARCHIVE_ROOT": str(root), "ARCHIVE_CRYPTO_SYMBOLS": symbols, "ARCHIVE_CRYPTO_FLUSH_SECONDS": "0.3",
           "ARCHIVE_CRYPTO_HEARTBEAT_SECONDS": "0.2", "ARCHIVE_CRYPTO_SILENCE_SECONDS": "5"}
    if binance:
        env["BINANCE_FUTURES_WS_URL"] = binance.url
    if hyper:
        env["HYPERLIQUID_WS_URL"] = hyper.url
    env.update(extra)
    return capture_settings_from_env(env)


async def until(pred, what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def rows_seen(svc: CaptureService, dataset: str) -> int:
    return svc.rows_written + len(svc.buffers[dataset])


async def drain_and_stop(svc: CaptureService, task: asyncio.Task, servers) -> None:
    """Stop the servers producing, wait until the service holds the last thing each one sent."""
    for s in servers:
        s.stop_producing()
    await asyncio.sleep(0.2)
    last = {}
    for s in servers:
        for row in sent_book_rows(s):
            key = (row[0], "orderbook_l2", row[1])
            last[key] = max(last.get(key, 0), row[2])
        for row in sent_trade_rows(s):
            key = (row[0], "crypto_trades", row[1])
            last[key] = max(last.get(key, 0), row[3])
    streams = {"orderbook_l2": {"binance": "depth20@100ms", "hyperliquid": "l2Book"},
               "crypto_trades": {"binance": "aggTrade", "hyperliquid": "trades"}}
    # each stream has the last row sent, or is interrupted (an open gap accounts for what it lacks)
    await until(lambda: all(svc.last_event.get(k, 0) >= t or k in svc.open_gaps
                            for k, t in ((((ex, streams[ds][ex], sym)), t) for (ex, ds, sym), t in last.items())),
                "the service to receive the last messages sent")
    svc.stop_event.set()
    await task


def archived(root, dataset: str) -> pa.Table:
    days = spool.spool_days(root, dataset)
    tables = [spool.compact_spool(root, dataset, d) for d in days]
    return pa.concat_tables(tables) if tables else spool.SCHEMAS[dataset].empty_table()


def assert_exact(root, servers) -> None:
    books, trades = archived(root, "orderbook_l2"), archived(root, "crypto_trades")
    sent_b = set().union(*(sent_book_rows(s) for s in servers))
    sent_t = set().union(*(sent_trade_rows(s) for s in servers))
    got_b, got_t = archived_book_rows(books), archived_trade_rows(trades)
    assert len(got_b) == len(set(got_b)) and len(got_t) == len(set(got_t)), "duplicates archived"
    assert set(got_b) == sent_b
    assert set(got_t) == sent_t
    ids = Counter((r[0], r[1], r[2]) for r in got_t)
    # a short scenario may see no trade at all (Poisson arrivals): then there is nothing to repeat
    assert max(ids.values(), default=1) == 1


def run(coro):
    return asyncio.run(coro)


@pytest.mark.slow
def test_normal_capture_archives_exactly_what_both_exchanges_sent(tmp_path):
    with FakeBinanceFutures(["BTCUSDT", "ETHUSDT"], seed=1) as bz, FakeHyperliquid(["BTC", "SOL"], seed=2) as hl:
        settings = make_settings(tmp_path, binance=bz, hyper=hl, symbols="BTCUSDT,ethusdt,BTC,hyperliquid:SOL")

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            # every one of the 8 streams must have sent something before the heartbeat is judged:
            # waiting for 10 trades in all once let ETHUSDT's aggTrade stream stay silent (CI flake)
            await until(lambda: rows_seen(svc, "crypto_trades") >= 10 and svc.rows_written >= 40
                        and len(svc.last_event) == 8, "rows from every stream")
            await drain_and_stop(svc, task, [bz, hl])
            return svc

        svc = run(scenario())
        assert sorted(p.split("?")[0] for p in bz.paths) == ["/market/stream", "/public/stream"]
        assert hl.paths == ["/ws"]
        assert_exact(tmp_path, [bz, hl])
        assert archived(tmp_path, "capture_gaps").num_rows == 0
        assert svc.malformed == 0 and svc.reconnects == 0
        beat = json.loads(spool.heartbeat_path(tmp_path).read_text())
        assert set(beat["streams"]) == {"binance:depth20@100ms:BTCUSDT", "binance:depth20@100ms:ETHUSDT",
                                        "binance:aggTrade:BTCUSDT", "binance:aggTrade:ETHUSDT",
                                        "hyperliquid:l2Book:BTC", "hyperliquid:l2Book:SOL",
                                        "hyperliquid:trades:BTC", "hyperliquid:trades:SOL"}
        assert beat["buffered_rows"] == 0 and beat["rows_written"] == svc.rows_written
        books = archived(tmp_path, "orderbook_l2")
        hl_books = books.filter(pa.compute.equal(books["exchange"], "hyperliquid")).to_pylist()
        assert hl_books and all(len(r["bid_n"]) == len(r["bid_px"]) == 20 for r in hl_books)


def _gaps_cover_missing(root, servers, cause_prefix: str) -> list[dict]:
    books, trades = archived(root, "orderbook_l2"), archived(root, "crypto_trades")
    gaps = archived(root, "capture_gaps").to_pylist()
    got_b, got_t = archived_book_rows(books), archived_trade_rows(trades)
    assert len(got_b) == len(set(got_b)) and len(got_t) == len(set(got_t))
    sent_b = set().union(*(sent_book_rows(s) for s in servers))
    sent_t = set().union(*(sent_trade_rows(s) for s in servers))
    assert set(got_b) <= sent_b and set(got_t) <= sent_t, "archived a row nobody sent"
    names = {"binance": ("depth20@100ms", "aggTrade"), "hyperliquid": ("l2Book", "trades")}
    spans = [(g["exchange"], g["stream"], g["symbol"], archived_time(g["start"]), archived_time(g["end"])) for g in gaps]
    for row in sent_b - set(got_b):
        assert any(ex == row[0] and st == names[row[0]][0] and sym == row[1] and a <= row[2] <= b
                   for ex, st, sym, a, b in spans), f"book {row[:4]} missing outside any gap"
    for row in sent_t - set(got_t):
        assert any(ex == row[0] and st == names[row[0]][1] and sym == row[1] and a <= row[3] <= b
                   for ex, st, sym, a, b in spans), f"trade {row[:4]} missing outside any gap"
    assert gaps and all(g["cause"].startswith(cause_prefix) for g in gaps)
    return gaps


def archived_time(t) -> int:
    from archive_platform_tests.fakes.binance_ws import _us

    return _us(t)


@pytest.mark.slow
def test_abrupt_disconnect_reconnects_and_records_the_gap(tmp_path):
    with FakeBinanceFutures(["BTCUSDT"], seed=3) as bz:
        settings = make_settings(tmp_path, binance=bz, symbols="BTCUSDT")

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: svc.rows_written >= 10, "first rows")
            bz.disconnect_all()
            await until(lambda: svc.reconnects >= 2, "both connections to come back")
            n = svc.rows_written
            await until(lambda: svc.rows_written >= n + 10, "rows after the reconnect")
            await drain_and_stop(svc, task, [bz])
            return svc

        svc = run(scenario())
        gaps = _gaps_cover_missing(tmp_path, [bz], "disconnect")
        assert {(g["stream"], g["symbol"]) for g in gaps} == {("depth20@100ms", "BTCUSDT"), ("aggTrade", "BTCUSDT")}
        assert all(g["start"] <= g["end"] for g in gaps)
        assert sum(1 for p in bz.paths if p.startswith("/public/")) == 2


@pytest.mark.slow
def test_silence_is_detected_and_recorded(tmp_path):
    with FakeBinanceFutures(["BTCUSDT"], seed=4) as bz:
        settings = make_settings(tmp_path, binance=bz, symbols="BTCUSDT", ARCHIVE_CRYPTO_SILENCE_SECONDS="0.6")

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: svc.rows_written >= 5, "first rows")
            bz.go_silent(2.0)
            await until(lambda: any(c.startswith("silence") for _, c in svc.open_gaps.values()), "silence detected")
            await until(lambda: not svc.open_gaps, "data again")
            await drain_and_stop(svc, task, [bz])
            return svc

        svc = run(scenario())
        gaps = _gaps_cover_missing(tmp_path, [bz], "silence")
        assert any(g["stream"] == "depth20@100ms" for g in gaps)
        assert svc.reconnects >= 1


@pytest.mark.slow
def test_a_quiet_trade_stream_is_not_a_dead_connection(tmp_path):
    # aggTrade sends nothing while nothing trades: no reconnect, no gap (books are judged by silence)
    with FakeBinanceFutures(["BTCUSDT"], seed=4, max_connection_age=6.0) as bz:
        settings = make_settings(tmp_path, binance=bz, symbols="BTCUSDT", ARCHIVE_CRYPTO_SILENCE_SECONDS="0.6",
                                 ARCHIVE_CRYPTO_ROLLOVER_SECONDS="1.5")

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: svc.rows_written >= 5 and bz.open_connections() == 2, "first rows")
            bz.quiet_trades(4.0)  # rollover at 1.5 s falls inside the quiet spell
            await asyncio.sleep(4.5)
            assert not svc.open_gaps, svc.open_gaps  # (a rollover may have 3 connections open now)
            n = len(sent_trade_rows(bz))
            await until(lambda: len(sent_trade_rows(bz)) > n + 3, "trades again")
            await drain_and_stop(svc, task, [bz])
            return svc

        run(scenario())
        assert archived(tmp_path, "capture_gaps").num_rows == 0
        assert_exact(tmp_path, [bz])
        # only planned rollovers (every 1.5 s) opened /market connections, no silence reconnects
        opened = sum(1 for p in bz.paths if p.startswith("/market/"))
        publics = sum(1 for p in bz.paths if p.startswith("/public/"))
        assert opened <= publics + 1, (opened, publics)


@pytest.mark.slow
def test_malformed_messages_are_refused_counted_and_capture_goes_on(tmp_path):
    with FakeBinanceFutures(["BTCUSDT"], seed=5) as bz:
        settings = make_settings(tmp_path, binance=bz, symbols="BTCUSDT")
        bad = ["not json at all", json.dumps({"stream": "btcusdt@depth20@100ms", "data": {
            "e": "depthUpdate", "E": 1, "s": "BTCUSDT", "u": 1, "pu": 0, "b": [["abc", "1"]], "a": []}}),
            json.dumps({"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "s": "BTCUSDT", "a": 1, "p": "1",
                                                               "q": "-2", "T": 1764500000000, "m": False}})]

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: svc.rows_written >= 5 and bz.open_connections() == 2, "first rows")
            for text in bad:
                bz.send_malformed(text)
            await until(lambda: svc.malformed >= 6, "the malformed messages")
            n = svc.rows_written
            await until(lambda: svc.rows_written > n + 5, "rows after them")
            await drain_and_stop(svc, task, [bz])
            return svc

        svc = run(scenario())
        assert svc.malformed == 6  # three texts on each of the two connections
        assert_exact(tmp_path, [bz])
        beat = json.loads(spool.heartbeat_path(tmp_path).read_text())
        assert beat["malformed"] == 6 and beat["reconnects"] == 0


@pytest.mark.slow
def test_crossed_book_is_archived_as_sent_and_reported(tmp_path):
    with FakeBinanceFutures(["BTCUSDT"], seed=6) as bz:
        settings = make_settings(tmp_path, binance=bz, symbols="BTCUSDT")

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: svc.rows_written >= 5, "first rows")
            bz.send_crossed("BTCUSDT")
            n = svc.rows_written
            await until(lambda: svc.rows_written > n + 5, "rows after it")
            await drain_and_stop(svc, task, [bz])

        run(scenario())
        assert_exact(tmp_path, [bz])
        books = archived(tmp_path, "orderbook_l2")
        crossed = [r for r in books.to_pylist() if r["bid_px"][0] > r["ask_px"][0]]
        assert len(crossed) == 1
        day = spool.spool_days(tmp_path, "orderbook_l2")[0]
        cov = coverage(books.filter(pa.compute.equal(books["symbol"], "BTCUSDT")), day)
        assert sum(c.crossed for c in cov) == 1 and sum(c.out_of_order for c in cov) == 0


@pytest.mark.slow
def test_rollover_before_the_connection_limit_overlaps_without_a_gap(tmp_path):
    # the server enforces a 2.5 s connection lifetime (Binance: 24 h); the service rolls at 1 s
    with FakeBinanceFutures(["BTCUSDT", "ETHUSDT"], seed=7, max_connection_age=2.5) as bz:
        settings = make_settings(tmp_path, binance=bz, ARCHIVE_CRYPTO_ROLLOVER_SECONDS="1.0")

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: svc.reconnects >= 6, "three rollovers per connection")
            await drain_and_stop(svc, task, [bz])
            return svc

        svc = run(scenario())
        assert archived(tmp_path, "capture_gaps").num_rows == 0
        assert_exact(tmp_path, [bz])
        assert sum(1 for p in bz.paths if p.startswith("/public/")) >= 4


@pytest.mark.slow
def test_hyperliquid_ping_keeps_an_idle_connection_and_replays_are_deduplicated(tmp_path):
    with FakeHyperliquid(["ETH"], seed=8, idle_timeout=2.0) as hl:
        settings = make_settings(tmp_path, hyper=hl, symbols="ETH")
        settings = settings.__class__(**{**settings.__dict__, "hyperliquid_ping_seconds": 0.25})

        async def scenario():
            svc = CaptureService(settings)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: hl.pings >= 12, "pings past the idle timeout")
            assert svc.reconnects == 0
            hl.disconnect_all()  # the resubscription replays recent trades
            await until(lambda: svc.reconnects >= 1 and not svc.open_gaps, "reconnect")
            await drain_and_stop(svc, task, [hl])
            return svc

        run(scenario())
        _gaps_cover_missing(tmp_path, [hl], "disconnect")
        trades = archived(tmp_path, "crypto_trades")
        assert trades.num_rows == len(set(trades["trade_id"].to_pylist())) > 0


def test_an_error_reply_of_the_exchange_is_counted_and_shown_not_refused_as_malformed(tmp_path):
    from archive_platform.crypto.routes import stream_groups

    settings = make_settings(tmp_path, symbols="BTC")
    (group,) = stream_groups(settings)
    svc = CaptureService(settings)
    text = json.dumps({"channel": "error", "data": 'Invalid subscription {"type":"l2Book","coin":"NOPE"}'})
    run(svc.handle(group, text))
    beat = svc.heartbeat()
    assert (beat["exchange_errors"], beat["malformed"]) == (1, 0)
    assert beat["last_exchange_error"] == 'hyperliquid: Invalid subscription {"type":"l2Book","coin":"NOPE"}'
    assert svc.buffered_rows() == 0
