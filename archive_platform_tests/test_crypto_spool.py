"""Spool files, compaction, coverage, the simulated venue and live candles (pure or file-level)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import numpy as np
import pyarrow.compute as pc
import pytest

from archive_platform.crypto import spool
from archive_platform.crypto.candles import CandleAggregator, top_of_book
from archive_platform.crypto.coverage import coverage
from archive_platform.crypto.sim_venue import day_tables, format_price, simulate

DAY = date(2026, 11, 29)  # a Sunday: crypto days include weekends
T0 = int(datetime(2026, 11, 29, tzinfo=timezone.utc).timestamp()) * 1_000_000


def trade(tid, t, price=100.0, size=1.0, side="buy", exchange="binance"):
    return {"exchange": exchange, "symbol": "BTCUSDT", "trade_id": tid, "event_time": t, "price": price, "size": size,
            "side": side, "receive_time": t + 5, "source": exchange}


def book(t, uid, bid=100.0, ask=100.1):
    return {"exchange": "hyperliquid" if uid is None else "binance", "symbol": "BTC", "event_time": t,
            "receive_time": t, "update_id": uid, "prev_update_id": None, "bid_px": [bid], "bid_sz": [1.0],
            "ask_px": [ask], "ask_sz": [2.0], "bid_n": None, "ask_n": None, "source": "x"}


def test_spool_splits_by_utc_day_and_compaction_keeps_the_last_row(tmp_path):
    spool.write_spool(tmp_path, "crypto_trades", [trade(1, T0 - 1), trade(2, T0 + 10, price=1.0)])
    spool.write_spool(tmp_path, "crypto_trades", [trade(2, T0 + 10, price=2.0), trade(3, T0 + 5)])
    (tmp_path / "_spool/crypto_trades/date=2026-11-29/.part-x.parquet.1.tmp").write_bytes(b"torn")
    assert spool.spool_days(tmp_path, "crypto_trades") == [date(2026, 11, 28), DAY]
    out = spool.compact_spool(tmp_path, "crypto_trades", DAY)
    assert out.column("trade_id").to_pylist() == [3, 2]  # sorted by event time
    assert out.column("price").to_pylist() == [100.0, 2.0]  # last write wins
    assert spool.compact_spool(tmp_path, "crypto_trades", date(2026, 11, 28)).column("trade_id").to_pylist() == [1]


def test_compaction_treats_null_update_ids_as_one_key(tmp_path):
    spool.write_spool(tmp_path, "orderbook_l2", [book(T0, None, bid=1.0), book(T0, None, bid=2.0), book(T0, 7)])
    out = spool.compact_spool(tmp_path, "orderbook_l2", DAY)
    assert out.num_rows == 2
    assert sorted(r["bid_px"][0] for r in out.to_pylist()) == [2.0, 100.0]


def test_coverage_counts_slots_gaps_crossed_locked_and_out_of_order():
    rows = [book(T0 + i * 100_000, i) for i in range(50)]
    rows += [book(T0 + i * 100_000, i) for i in range(80, 100)]  # 3 s gap
    rows[5] = book(T0 + 500_000, 5, bid=100.2, ask=100.1)  # crossed
    rows[6] = book(T0 + 600_000, 6, bid=100.1, ask=100.1)  # locked
    rows[7] = book(T0 + 700_000, 3)  # id goes backwards
    table = spool.rows_to_table("orderbook_l2", rows)
    (c,) = coverage(table, DAY)
    assert (c.expected_slots, c.present_slots) == (864_000, 70)
    assert (c.crossed, c.locked, c.out_of_order) == (1, 1, 1)
    assert c.gaps[0] == (T0 + 5_000_000, T0 + 8_000_000)
    assert c.gaps[-1] == (T0 + 10_000_000, T0 + 86_400_000_000)
    assert c.missing_runs == 2 and abs(c.ratio - 70 / 864_000) < 1e-12


def test_sim_venue_is_deterministic_realistic_and_exact():
    a = simulate("BTCUSDT", T0, T0 + 600_000_000, seed=3, book_ms=100)
    b = simulate("BTCUSDT", T0, T0 + 600_000_000, seed=3, book_ms=100)
    assert np.array_equal(a.bid_ticks, b.bid_ticks) and np.array_equal(a.trade_ticks, b.trade_ticks)
    assert len(a.book_time) == 6000
    spread = a.ask_ticks[:, 0] - a.bid_ticks[:, 0]
    assert spread.min() >= 1 and np.median(spread) == 1  # one tick most of the time
    assert (np.diff(a.bid_ticks, axis=1) < 0).all() and (np.diff(a.ask_ticks, axis=1) > 0).all()
    assert a.bid_lots[:, 10:].mean() > a.bid_lots[:, :3].mean()  # depth grows away from the touch
    rate = len(a.trade_time) / 600
    assert 2.0 < rate < 6.0  # Poisson arrivals at BTC's ~4 per second
    # price impact: the signed volume traded between two books moves the mid from one to the
    # next (the flow after a book must not: the venue once showed trades' impact before them)
    mid = (a.bid_ticks[:, 0] + a.ask_ticks[:, 0]) / 2
    signed = np.bincount(np.searchsorted(a.book_time, a.trade_time, "right") - 1,
                         weights=np.where(a.trade_buy, 1, -1) * np.sqrt(a.trade_lots), minlength=6000)
    assert np.corrcoef(signed[:-1], np.diff(mid))[0, 1] > 0.1
    assert abs(np.corrcoef(signed[1:], np.diff(mid))[0, 1]) < 0.05
    assert format_price(650001, 1) == "65000.1" and format_price(5, 3) == "0.005"
    prices = a.price(a.bid_ticks[:100, 0])
    assert all(Decimal(repr(float(p))) == Decimal(format_price(int(t), 1)) for p, t in zip(prices, a.bid_ticks[:100, 0]))


@pytest.mark.slow
def test_sim_day_tables_cover_a_whole_weekend_day():
    trades, books = day_tables(DAY, ["BTCUSDT", "ETH"], seed=1, book_ms=1000)
    assert books.num_rows == 2 * 86_400
    assert pc.min(books["event_time"]).as_py() == datetime(2026, 11, 29, tzinfo=timezone.utc)
    assert trades.num_rows > 100_000 and set(trades["side"].to_pylist()) == {"buy", "sell"}
    keys = trades.select(["symbol", "trade_id"]).group_by(["symbol", "trade_id"]).aggregate([])
    assert keys.num_rows == trades.num_rows
    (c_btc,) = [c for c in coverage(books, DAY, cadence_ms=1000) if c.symbol == "BTCUSDT"]
    assert c_btc.ratio == 1.0 and c_btc.crossed == 0 and c_btc.out_of_order == 0


def test_candles_are_right_aligned_complete_and_top_of_book_is_summarised():
    agg = CandleAggregator(grace_us=2_000_000)
    m = 60_000_000
    assert agg.on_trade(trade(1, T0 + 1, price=10.0, size=1.0)) == []
    agg.on_trade(trade(2, T0 + 30_000_000, price=12.0, size=2.0))
    agg.on_trade(trade(3, T0 + 59_000_000, price=11.0, size=0.5))
    closed = agg.on_trade(trade(4, T0 + 3 * m + 5, price=9.0))
    msgs = [c.message() for c in closed]
    assert [(x["open"], x["high"], x["low"], x["close"], x["volume"], x["trades"]) for x in msgs] == [
        (10.0, 12.0, 10.0, 11.0, 3.5, 3), (11.0, 11.0, 11.0, 11.0, 0.0, 0), (11.0, 11.0, 11.0, 11.0, 0.0, 0)]
    assert msgs[0]["end"] == "2026-11-29T00:01:00Z" and msgs[0]["start"] == "2026-11-29T00:00:00Z"
    assert [c.start for c in agg.close_due(T0 + 4 * m + 1_000_000)] == []  # inside the grace
    (due,) = agg.close_due(T0 + 4 * m + 2_000_001)
    assert (due.open, due.close, due.trades) == (9.0, 9.0, 1)
    top = top_of_book(book(T0, 1, bid=100.0, ask=100.5))
    assert top["mid"] == 100.25 and top["spread"] == 0.5 and abs(top["imbalance"] - (1 - 2) / 3) < 1e-12


def test_capture_problems_from_the_heartbeat(tmp_path):
    from archive_platform.crypto.health import capture_problems, read_heartbeat

    now = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    assert read_heartbeat(tmp_path) is None
    assert "never run" in capture_problems(None, now)[0]
    beat = {"pid": 7, "written_at": "2026-11-29T11:59:50.000000Z", "streams": {
        "binance:aggTrade:BTCUSDT": {"last_event": "2026-11-29T11:59:49Z", "last_receive": "2026-11-29T11:59:49Z"},
        "hyperliquid:l2Book:BTC": {"last_event": "2026-11-29T11:50:00Z", "last_receive": "2026-11-29T11:50:00Z"}}}
    spool.write_json_atomic(spool.heartbeat_path(tmp_path), beat)
    assert read_heartbeat(tmp_path) == beat
    assert capture_problems(beat, now) == ["stream hyperliquid:l2Book:BTC: no message for 600 s"]
    late = datetime(2026, 11, 29, 12, 5, tzinfo=timezone.utc)
    assert capture_problems(beat, late, stream_stale_seconds=3600) == [
        "capture heartbeat is 310 s old (pid 7): the service is not running"]


def test_a_capture_that_never_received_anything_is_not_healthy():
    # offline, a refused subscription, a wrong URL: the heartbeat is fresh but no stream ever spoke
    from archive_platform.crypto.health import capture_problems

    now = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    beat = {"pid": 7, "written_at": "2026-11-29T11:59:59Z", "started": "2026-11-29T11:50:00Z", "streams": {
        "binance:aggTrade:BTCUSDT": {"last_event": "2026-11-29T11:59:49Z", "last_receive": "2026-11-29T11:59:49Z"}},
        "expected_streams": ["binance:aggTrade:BTCUSDT", "binance:depth20@100ms:BTCUSDT"]}
    assert capture_problems(beat, now) == [
        "stream binance:depth20@100ms:BTCUSDT: nothing received since the service started 600 s ago"]
    assert capture_problems(beat, datetime(2026, 11, 29, 11, 52, tzinfo=timezone.utc)) == []  # just started
    older = {k: v for k, v in beat.items() if k != "expected_streams"} | {"streams": {}}  # an older service
    assert capture_problems(older, now) == [
        "no stream has delivered anything since the service started 600 s ago"]


def test_a_failed_spool_write_keeps_the_rows_for_the_next_flush(tmp_path):
    import asyncio

    from archive_platform.crypto.config import CaptureSettings
    from archive_platform.crypto.service import CaptureService

    blocker = tmp_path / "root"
    blocker.write_text("a file where the spool folder should be")
    svc = CaptureService(CaptureSettings(root=blocker))
    svc.buffers["crypto_trades"] = [trade(1, T0), trade(2, T0 + 1)]
    with pytest.raises(NotADirectoryError, match="Not a directory"):  # the spool folder is a file
        asyncio.run(svc.flush())
    assert len(svc.buffers["crypto_trades"]) == 2 and svc.rows_written == 0
    blocker.unlink()
    assert asyncio.run(svc.flush()) == 2
    assert spool.compact_spool(blocker, "crypto_trades", DAY).column("trade_id").to_pylist() == [1, 2]
