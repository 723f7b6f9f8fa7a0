"""Live publication to a real redis-server (started here on a free loopback port)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from datetime import datetime, timezone

import pytest
import redis

from archive_platform.crypto.live import RedisPublisher
from archive_platform.crypto.service import CaptureService
from archive_platform_tests.fakes.binance_ws import FakeBinanceFutures
from archive_platform_tests.test_crypto_capture import drain_and_stop, make_settings, until

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
T0 = int(datetime(2026, 11, 29, tzinfo=timezone.utc).timestamp()) * 1_000_000


@pytest.fixture
def redis_url(tmp_path):
    if not shutil.os.path.exists(REDIS):
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        end = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > end or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def subscriber(url, *channels):
    ps = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    ps.subscribe(*channels)
    return ps


def collect(ps, n, timeout=20.0):
    out, end = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        m = ps.get_message(timeout=0.1)
        if m:
            out.append((m["channel"].decode(), json.loads(m["data"])))
    return out


def trade(tid, t, price, size=1.0):
    return {"exchange": "binance", "symbol": "BTCUSDT", "trade_id": tid, "event_time": t, "price": price, "size": size,
            "side": "buy", "receive_time": t, "source": "binance"}


def test_closed_candles_and_top_of_book_are_published_as_json(redis_url):
    ps = subscriber(redis_url, "market:binance:BTCUSDT")

    async def go():
        pub = RedisPublisher(redis_url, grace_us=1_000_000)
        pub.on_row("crypto_trades", trade(1, T0 + 1_000, 100.0, 2.0))
        pub.on_row("crypto_trades", trade(2, T0 + 30_000_000, 101.5, 1.0))
        pub.on_row("orderbook_l2", {"exchange": "binance", "symbol": "BTCUSDT", "event_time": T0 + 59_000_000,
                                    "bid_px": [101.4], "bid_sz": [3.0], "ask_px": [101.5], "ask_sz": [1.0]})
        assert await pub.publish_once(now_us=T0 + 60_500_000) == 1  # candle still in its grace
        assert await pub.publish_once(now_us=T0 + 61_000_001) == 1
        await pub.close()
        return pub

    pub = asyncio.run(go())
    msgs = collect(ps, 2)
    assert pub.errors == 0 and [m[1]["type"] for m in msgs] == ["top", "candle"]
    top, candle = msgs[0][1], msgs[1][1]
    assert (top["bid"], top["ask"], top["mid"], top["time"]) == (101.4, 101.5, 101.45, "2026-11-29T00:00:59Z")
    assert {k: candle[k] for k in ("open", "high", "low", "close", "volume", "trades", "end")} == {
        "open": 100.0, "high": 101.5, "low": 100.0, "close": 101.5, "volume": 3.0, "trades": 2,
        "end": "2026-11-29T00:01:00Z"}


@pytest.mark.slow
def test_capture_service_publishes_top_of_book_each_second(redis_url, tmp_path):
    ps = subscriber(redis_url, "market:binance:BTCUSDT", "market:binance:ETHUSDT")
    with FakeBinanceFutures(["BTCUSDT", "ETHUSDT"], seed=21) as bz:
        settings = make_settings(tmp_path, binance=bz, REDIS_URL=redis_url)
        assert settings.redis_url == redis_url

        async def go():
            pub = RedisPublisher(settings.redis_url)
            svc = CaptureService(settings, publisher=pub)
            task = asyncio.create_task(svc.run(handle_signals=False))
            await until(lambda: pub.published >= 4, "two seconds of summaries")
            await drain_and_stop(svc, task, [bz])

        asyncio.run(go())
        msgs = [m for m in collect(ps, 4) if m[1]["type"] == "top"]
    assert {m[0] for m in msgs} == {"market:binance:BTCUSDT", "market:binance:ETHUSDT"}
    sent = {(d["s"], float(d["b"][0][0]), float(d["a"][0][0])) for d in bz.sent_books}
    assert all((m[1]["symbol"], m[1]["bid"], m[1]["ask"]) in sent for m in msgs)


def test_redis_outage_does_not_stop_publishing_attempts(tmp_path, caplog):
    book = {"exchange": "binance", "symbol": "X", "event_time": T0, "bid_px": [1.0],
            "bid_sz": [1.0], "ask_px": [2.0], "ask_sz": [1.0]}

    async def go():
        pub = RedisPublisher("redis://127.0.0.1:1/0")
        attempted = []
        for i in range(3):  # each second's summary is tried again, not given up after a failure
            pub.on_row("orderbook_l2", {**book, "event_time": T0 + i * 1_000_000})
            attempted.append(await pub.publish_once(now_us=T0 + i * 1_000_000))
            assert (pub.errors, pub.published) == (i + 1, 0)
            assert pub.pending == [] and pub.tops == {}  # the failed batch is dropped, not piled up
        await pub.client.aclose()
        return pub, attempted

    with caplog.at_level("WARNING"):
        pub, attempted = asyncio.run(go())
    assert attempted == [1, 1, 1]  # one top-of-book message each time
    assert pub.errors == 3 and pub.published == 0
    failed = [r.getMessage() for r in caplog.records if "redis publish of" in r.getMessage()]
    assert len(failed) == 3 and all(m.startswith("redis publish of 1 messages failed: ") for m in failed), failed
