"""The capture buffer is bounded while the spool cannot be written (a full disk).

Without a bound a long disk-full outage grows the buffer until the process is OOM-killed and loses
everything it held. With ``max_unspooled_rows`` (ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS) the oldest book
and trade rows are dropped, each stream's dropped span is buffered as a ``capture_gaps`` row, the
heartbeat counts the drops, and when the disk is back the kept rows and the gap rows are spooled.

The service is driven directly (``handle``/``flush``), with a spool made to fail and arrival times
from a counter: no network, no wall clock.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import threading
from collections import Counter
from dataclasses import replace

import pytest

from archive_platform.crypto import service as service_mod
from archive_platform.crypto import spool
from archive_platform.crypto.config import (DEFAULT_MAX_UNSPOOLED_ROWS, CaptureSettings, SettingsError,
                                            capture_settings_from_env)
from archive_platform.crypto.service import CaptureService
from archive_platform.crypto.symbols import parse_symbols
from archive_platform_tests.fakes.binance_ws import _us
from archive_platform_tests.test_audit_capture import MIDNIGHT, S, book_group, book_msg, trade_msg
from archive_platform_tests.test_crypto_capture import archived

BOOKS = ("binance", "depth20@100ms", "BTCUSDT")
TRADES = ("binance", "aggTrade", "BTCUSDT")
T0 = (MIDNIGHT - 3600 * S) // 1000  # 23:00 UTC, in ms
ENOSPC = "No space left on device"


def full(root, dataset, rows):
    raise OSError(errno.ENOSPC, ENOSPC)


@pytest.fixture
def svc_factory(tmp_path, monkeypatch):
    """A service whose arrival times come from a counter (the order rows are fed in)."""
    clock = itertools.count(MIDNIGHT - 7200 * S, 1000)
    monkeypatch.setattr(service_mod, "now_us", lambda: next(clock))

    def make(**kw) -> CaptureService:
        return CaptureService(CaptureSettings(root=tmp_path, symbols=parse_symbols("BTCUSDT"), **kw))

    return make


def trade_group(svc: CaptureService):
    return next(g for g in svc.groups if "market" in g.name)


async def feed_books(svc, ids):
    for i in ids:
        await svc.handle(book_group(svc), book_msg("BTCUSDT", T0 + 100 * i, u=1000 + i, pu=999 + i))


async def feed_trades(svc, ids, t_ms=lambda i: T0 + 100 * i + 50):
    for i in ids:
        await svc.handle(trade_group(svc), trade_msg("BTCUSDT", t_ms(i), 5000 + i))


def book_ids(svc) -> list[int]:
    return [r["update_id"] for r in svc.buffers["orderbook_l2"]]


def trade_ids(svc) -> list[int]:
    return [r["trade_id"] for r in svc.buffers["crypto_trades"]]


def gap_rows(rows) -> list[tuple]:
    return [((r["exchange"], r["stream"], r["symbol"]), r["start"], r["end"]) for r in rows]


def raw_spooled(root, dataset: str) -> list[dict]:
    """Every spooled row, no dedup: a row written twice shows twice."""
    return [r for d in spool.spool_days(root, dataset) for r in spool.read_spool(root, dataset, d).to_pylist()]


# ---- the setting -------------------------------------------------------------------------------
def test_the_setting_is_read_validated_and_named_in_its_errors():
    assert capture_settings_from_env({}).max_unspooled_rows == DEFAULT_MAX_UNSPOOLED_ROWS == 250_000
    assert capture_settings_from_env({"ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS": "120000"}).max_unspooled_rows == 120_000
    # unset, it never falls below the flush batch (a batch waiting to be written is kept whole)
    assert capture_settings_from_env({"ARCHIVE_CRYPTO_MAX_BUFFER_ROWS": "300000"}).max_unspooled_rows == 300_000
    with pytest.raises(SettingsError, match=r"^ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS: 'lots' is not a number"):
        capture_settings_from_env({"ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS": "lots"})
    with pytest.raises(SettingsError, match=r"^ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS: '0' must be >= 1"):
        capture_settings_from_env({"ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS": "0"})
    with pytest.raises(SettingsError, match=r"^ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS: '999' must be >= "
                                            r"ARCHIVE_CRYPTO_MAX_BUFFER_ROWS \(50000\)"):
        capture_settings_from_env({"ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS": "999"})


# ---- the bound -----------------------------------------------------------------------------------
def test_a_failing_spool_keeps_the_newest_rows_records_the_dropped_as_gaps_and_spools_the_rest(
        tmp_path, svc_factory, monkeypatch, caplog):
    svc = svc_factory(max_buffer_rows=5, max_unspooled_rows=10)
    real = spool.write_spool
    monkeypatch.setattr(spool, "write_spool", full)

    async def feed():
        for i in range(10):  # books and trades alternate: 20 rows, twice the bound
            await feed_books(svc, [i])
            await feed_trades(svc, [i])

    with caplog.at_level(logging.ERROR, logger=service_mod.__name__):
        asyncio.run(feed())
    # the newest 10 rows by arrival are kept: each stream lost its oldest five
    assert book_ids(svc) == list(range(1005, 1010))
    assert trade_ids(svc) == list(range(5005, 5010))
    # one gap per stream (later drops extended it), from the first dropped row to the last
    gaps = svc.buffers["capture_gaps"]
    assert gap_rows(gaps) == [(BOOKS, T0 * 1000, (T0 + 400) * 1000), (TRADES, (T0 + 50) * 1000, (T0 + 450) * 1000)]
    assert all(ENOSPC in g["cause"] and "ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS" in g["cause"]
               and "oldest rows dropped" in g["cause"] for g in gaps)
    beat = svc.heartbeat()
    assert beat["dropped_rows"] == 10 and beat["spool_errors"] == 1 and beat["buffered_rows"] == 12
    # one error for the episode, not one per dropped row or per drop
    assert len([r for r in caplog.records if "dropping the oldest" in r.getMessage()]) == 1

    monkeypatch.setattr(spool, "write_spool", real)  # the disk is back
    assert asyncio.run(svc.flush()) == 12
    assert svc.spool_error is None and svc.buffered_rows() == 0
    # every kept row spooled exactly once, and the gaps with them
    assert Counter(r["update_id"] for r in raw_spooled(tmp_path, "orderbook_l2")) == Counter(range(1005, 1010))
    assert Counter(r["trade_id"] for r in raw_spooled(tmp_path, "crypto_trades")) == Counter(range(5005, 5010))
    spooled_gaps = archived(tmp_path, "capture_gaps").to_pylist()
    assert sorted(((g["exchange"], g["stream"], g["symbol"]), _us(g["start"]), _us(g["end"])) for g in spooled_gaps) \
        == sorted(gap_rows(gaps))
    assert svc.heartbeat()["dropped_rows"] == 10 and svc.rows_written == 12


def test_only_the_oldest_rows_go_and_only_streams_that_lost_rows_get_a_gap(svc_factory, monkeypatch):
    svc = svc_factory(max_buffer_rows=1, max_unspooled_rows=10)
    monkeypatch.setattr(spool, "write_spool", full)
    asyncio.run(feed_books(svc, range(8)))  # the book stream is busy ...
    asyncio.run(feed_trades(svc, range(4)))  # ... trades arrive later: 12 rows
    assert book_ids(svc) == list(range(1002, 1008)) and trade_ids(svc) == list(range(5000, 5004))
    assert gap_rows(svc.buffers["capture_gaps"]) == [(BOOKS, T0 * 1000, (T0 + 100) * 1000)]
    assert svc.dropped_rows == 2


def test_capture_gap_rows_are_neither_dropped_nor_counted(svc_factory, monkeypatch):
    svc = svc_factory(max_buffer_rows=1, max_unspooled_rows=4)
    monkeypatch.setattr(spool, "write_spool", full)
    disconnect = (TRADES, MIDNIGHT - 9000 * S, MIDNIGHT - 8000 * S)
    svc._record_gap(disconnect[0], disconnect[1], disconnect[2], "disconnect: earlier")  # already buffered

    async def feed():
        await feed_books(svc, [0, 1])
        await feed_books(svc, [3])  # 1001 -> 1002 missed: a sequence gap, buffered as a gap row
        await feed_books(svc, range(4, 9))

    asyncio.run(feed())
    assert book_ids(svc) == list(range(1005, 1009))  # the bound: 4 book and trade rows
    got = gap_rows(svc.buffers["capture_gaps"])
    # the recorded gaps are all still there, however many rows were dropped after them
    assert got[0] == disconnect
    assert got[1] == (BOOKS, (T0 + 100) * 1000, (T0 + 300) * 1000)
    assert got[2:] == [(BOOKS, T0 * 1000, (T0 + 400) * 1000)]
    assert svc.buffered_rows() == 4 + 3


def test_drops_come_in_steps_of_one_percent_of_the_bound(svc_factory, monkeypatch):
    svc = svc_factory(max_buffer_rows=1, max_unspooled_rows=300)
    monkeypatch.setattr(spool, "write_spool", full)
    asyncio.run(feed_trades(svc, range(301)))
    # 1 over the bound: the oldest 1 + 3 (1 % of 300) go, so the next drop waits for 4 more rows
    assert trade_ids(svc) == list(range(5004, 5301)) and svc.dropped_rows == 4
    asyncio.run(feed_trades(svc, range(301, 304)))
    assert len(trade_ids(svc)) == 300 and svc.dropped_rows == 4
    asyncio.run(feed_trades(svc, [304]))
    assert trade_ids(svc) == list(range(5008, 5305)) and svc.dropped_rows == 8
    assert gap_rows(svc.buffers["capture_gaps"]) == [(TRADES, (T0 + 50) * 1000, (T0 + 750) * 1000)]


def test_a_drop_across_midnight_gives_a_gap_row_in_each_day(svc_factory, monkeypatch):
    svc = svc_factory(max_buffer_rows=1, max_unspooled_rows=100)
    monkeypatch.setattr(spool, "write_spool", full)
    times = [MIDNIGHT // 1000 + k * 1000 for k in (-3, -2, -1, 1, 2, 3)]
    asyncio.run(feed_trades(svc, range(6), t_ms=lambda i: times[i]))
    svc.settings = replace(svc.settings, max_unspooled_rows=2)  # the bound is reached in one drop
    assert svc.bound_buffer() == 4
    assert trade_ids(svc) == [5004, 5005]
    gaps = svc.buffers["capture_gaps"]
    assert gap_rows(gaps) == [(TRADES, MIDNIGHT - 3 * S, MIDNIGHT - 1), (TRADES, MIDNIGHT, MIDNIGHT + S)]
    assert gaps[0]["cause"].endswith("(continues after 00:00 UTC)") and ENOSPC in gaps[1]["cause"]
    # a later drop extends the gap of its own day only
    svc.settings = replace(svc.settings, max_unspooled_rows=1)
    assert svc.bound_buffer() == 1
    assert gap_rows(gaps) == [(TRADES, MIDNIGHT - 3 * S, MIDNIGHT - 1), (TRADES, MIDNIGHT, MIDNIGHT + 2 * S)]


def test_a_gap_extended_past_midnight_is_closed_at_midnight_and_continues_in_the_next_day(svc_factory, monkeypatch):
    svc = svc_factory(max_buffer_rows=1, max_unspooled_rows=100)
    monkeypatch.setattr(spool, "write_spool", full)
    times = [MIDNIGHT // 1000 + k * 1000 for k in (-3, -2, -1, 1, 2, 3)]
    asyncio.run(feed_trades(svc, range(6), t_ms=lambda i: times[i]))
    svc.settings = replace(svc.settings, max_unspooled_rows=4)
    assert svc.bound_buffer() == 2
    gaps = svc.buffers["capture_gaps"]
    assert gap_rows(gaps) == [(TRADES, MIDNIGHT - 3 * S, MIDNIGHT - 2 * S)]
    svc.settings = replace(svc.settings, max_unspooled_rows=2)
    assert svc.bound_buffer() == 2  # -1 s and +1 s: the day's gap ends at midnight, the next day's begins
    assert gap_rows(gaps) == [(TRADES, MIDNIGHT - 3 * S, MIDNIGHT - 1), (TRADES, MIDNIGHT, MIDNIGHT + S)]
    assert gaps[0]["cause"].endswith("(continues after 00:00 UTC)") and ENOSPC in gaps[0]["cause"]
    assert not gaps[1]["cause"].endswith("(continues after 00:00 UTC)")


def test_rows_added_during_a_failing_write_are_bounded_when_it_fails(svc_factory, monkeypatch):
    svc = svc_factory(max_unspooled_rows=6)
    writing, release = threading.Event(), threading.Event()

    def slow_full(root, dataset, rows):
        writing.set()
        release.wait(10)
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(spool, "write_spool", slow_full)

    async def scenario():
        await feed_trades(svc, range(5))
        flush = asyncio.ensure_future(svc.flush())
        await asyncio.to_thread(writing.wait, 10)
        await feed_trades(svc, range(5, 9))  # taken rows are out of the buffer: nothing to bound yet
        assert len(svc.buffers["crypto_trades"]) == 4 and svc.dropped_rows == 0
        release.set()
        with pytest.raises(OSError):
            await flush

    asyncio.run(scenario())
    # the failed write handed its 5 rows back: 9 rows, bounded at once to the newest 6
    assert trade_ids(svc) == list(range(5003, 5009)) and svc.dropped_rows == 3
    assert gap_rows(svc.buffers["capture_gaps"]) == [(TRADES, (T0 + 50) * 1000, (T0 + 250) * 1000)]


def test_a_gap_is_not_extended_over_rows_that_reached_the_spool(tmp_path, svc_factory, monkeypatch):
    svc = svc_factory(max_buffer_rows=1, max_unspooled_rows=3)
    real = spool.write_spool
    monkeypatch.setattr(spool, "write_spool", full)
    asyncio.run(feed_trades(svc, range(5)))  # 5000, 5001 dropped
    assert gap_rows(svc.buffers["capture_gaps"]) == [(TRADES, (T0 + 50) * 1000, (T0 + 150) * 1000)]

    def gaps_full(root, dataset, rows):  # the trades fit on the disk, the gap file does not
        if dataset == "capture_gaps":
            raise OSError(errno.ENOSPC, ENOSPC)
        return real(root, dataset, rows)

    monkeypatch.setattr(spool, "write_spool", gaps_full)
    with pytest.raises(OSError):
        asyncio.run(svc.flush())
    assert [r["trade_id"] for r in raw_spooled(tmp_path, "crypto_trades")] == [5002, 5003, 5004]
    monkeypatch.setattr(spool, "write_spool", full)
    asyncio.run(feed_trades(svc, range(5, 10)))  # 5005, 5006 dropped
    # a new gap: one from 5000 to 5006 would claim the spooled 5002..5004 missing
    assert gap_rows(svc.buffers["capture_gaps"]) == [(TRADES, (T0 + 50) * 1000, (T0 + 150) * 1000),
                                                      (TRADES, (T0 + 550) * 1000, (T0 + 650) * 1000)]


def test_each_outage_is_its_own_episode(tmp_path, svc_factory, monkeypatch, caplog):
    svc = svc_factory(max_buffer_rows=1, max_unspooled_rows=2)
    real = spool.write_spool
    with caplog.at_level(logging.ERROR, logger=service_mod.__name__):
        monkeypatch.setattr(spool, "write_spool", full)
        asyncio.run(feed_trades(svc, range(6)))
        monkeypatch.setattr(spool, "write_spool", real)
        asyncio.run(svc.flush())
        monkeypatch.setattr(spool, "write_spool", full)
        asyncio.run(feed_trades(svc, range(6, 12)))
    assert len([r for r in caplog.records if "dropping the oldest" in r.getMessage()]) == 2
    # the second outage's gap starts at its own first dropped row, not the first outage's
    assert gap_rows(svc.buffers["capture_gaps"]) == [(TRADES, (T0 + 650) * 1000, (T0 + 950) * 1000)]
    assert svc.dropped_rows == 8
    monkeypatch.setattr(spool, "write_spool", real)
    asyncio.run(svc.flush())
    assert Counter(r["trade_id"] for r in raw_spooled(tmp_path, "crypto_trades")) == Counter([5004, 5005, 5010, 5011])
    got = sorted((_us(g["start"]), _us(g["end"])) for g in archived(tmp_path, "capture_gaps").to_pylist())
    assert got == [((T0 + 50) * 1000, (T0 + 350) * 1000), ((T0 + 650) * 1000, (T0 + 950) * 1000)]


# ---- health: a spool that cannot be written is a problem of a live service -----------------------
def test_a_failing_spool_is_a_capture_problem_until_a_flush_succeeds(tmp_path, svc_factory, monkeypatch):
    from datetime import datetime

    from archive_platform.crypto import health
    from archive_platform.defs.crypto import _problem_signature

    def capture_problems(beat):  # as of the heartbeat's own (faked) clock; the streams' ages
        now = datetime.fromisoformat(beat["written_at"].replace("Z", "+00:00"))  # are not this test's
        return [p for p in health.capture_problems(beat, now) if not p.startswith("stream ")]

    svc = svc_factory(max_buffer_rows=5, max_unspooled_rows=10)
    real = spool.write_spool
    monkeypatch.setattr(spool, "write_spool", full)
    asyncio.run(feed_books(svc, range(4)))  # below the bound: held, nothing dropped yet
    assert capture_problems(svc.heartbeat()) == []  # nothing tried to write yet
    with pytest.raises(OSError):
        asyncio.run(svc.flush())
    (held,) = capture_problems(svc.heartbeat())
    assert held.startswith("spool not writable (OSError: ") and ENOSPC in held
    assert "4 rows held in memory (bound 10), none dropped yet" in held

    async def more():
        for i in range(4, 12):
            await feed_books(svc, [i])
            await feed_trades(svc, [i])

    asyncio.run(more())
    beat = svc.heartbeat()
    assert beat["dropping_rows"] == beat["dropped_rows"] == svc.dropped_rows > 0
    (dropping,) = capture_problems(beat)
    assert f"{beat['buffered_rows']:,} rows held in memory (bound 10), {svc.dropped_rows:,} rows dropped so far " \
           "(recorded as capture gaps)" in dropping
    # the counts grow on every tick: the sensor's incident signature must not (one run per incident)
    asyncio.run(feed_trades(svc, [12, 13]))
    assert capture_problems(svc.heartbeat()) != [dropping]
    assert _problem_signature(capture_problems(svc.heartbeat())) == _problem_signature([dropping])

    monkeypatch.setattr(spool, "write_spool", real)  # the disk is back: healthy again
    assert asyncio.run(svc.flush()) > 0
    beat = svc.heartbeat()
    assert capture_problems(beat) == [] and beat["dropping_rows"] == 0 and beat["dropped_rows"] > 0
