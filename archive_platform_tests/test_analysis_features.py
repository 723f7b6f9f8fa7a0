"""Order-book features on small books computed by hand (issue 10)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest

from archive_platform.analysis.features import FEATURE_DICTIONARY, kyle_lambda, orderbook_features, vpin

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)  # a UTC midnight


def book(snaps, exchange="binance", symbol="BTCUSDT") -> pl.DataFrame:
    """snaps: (seconds after T0, bids [(px, sz)...], asks [(px, sz)...])."""
    return pl.DataFrame({
        "exchange": [exchange] * len(snaps), "symbol": [symbol] * len(snaps),
        "event_time": [T0 + timedelta(seconds=s) for s, _, _ in snaps],
        "receive_time": [T0 + timedelta(seconds=s) for s, _, _ in snaps],
        "update_id": list(range(1, len(snaps) + 1)), "prev_update_id": [None] * len(snaps),
        "bid_px": [[p for p, _ in b] for _, b, _ in snaps], "bid_sz": [[q for _, q in b] for _, b, _ in snaps],
        "ask_px": [[p for p, _ in a] for _, _, a in snaps], "ask_sz": [[q for _, q in a] for _, _, a in snaps],
        "bid_n": [None] * len(snaps), "ask_n": [None] * len(snaps), "source": ["sim"] * len(snaps),
    }).with_columns(pl.col("event_time", "receive_time").cast(pl.Datetime("us", "UTC")))


def trades(rows, exchange="binance", symbol="BTCUSDT") -> pl.DataFrame:
    """rows: (seconds after T0, price, size, side)."""
    return pl.DataFrame({
        "exchange": [exchange] * len(rows), "symbol": [symbol] * len(rows),
        "trade_id": list(range(len(rows))),
        "event_time": [T0 + timedelta(seconds=r[0]) for r in rows],
        "price": [float(r[1]) for r in rows], "size": [float(r[2]) for r in rows], "side": [r[3] for r in rows],
    }).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))


# 12 bid and 12 ask levels, 0.1 apart around 100; bids 1..12 in size, asks 2 each
BIDS = [(round(99.95 - 0.1 * i, 2), float(i + 1)) for i in range(12)]
ASKS = [(round(100.05 + 0.1 * i, 2), 2.0) for i in range(12)]


def test_spread_imbalance_mids_on_a_hand_book():
    f = orderbook_features(book([(0.5, BIDS, ASKS)])).row(0, named=True)
    assert f["timestamp"] == T0 + timedelta(seconds=1)  # the 0.5 s snapshot is the book as of 1 s
    assert (f["best_bid"], f["best_ask"]) == (99.95, 100.05)
    assert f["mid"] == pytest.approx(100.0) and f["spread"] == pytest.approx(0.1)
    assert f["spread_bps"] == pytest.approx(10.0)
    assert f["imbalance_1"] == pytest.approx((1 - 2) / 3)
    assert f["imbalance_5"] == pytest.approx((15 - 10) / 25)         # bids 1+..+5, asks 5*2
    assert f["imbalance_10"] == pytest.approx((55 - 20) / 75)
    assert f["weighted_mid"] == pytest.approx((99.95 * 2 + 100.05 * 1) / 3)
    assert f["micro_price"] == pytest.approx(100.0 + 0.05 * 0.2)


def test_liquidity_within_bps_of_the_mid():
    f = orderbook_features(book([(1, BIDS, ASKS)])).row(0, named=True)
    # 10 bps of 100 = 0.10: bid 99.95 / ask 100.05 only; 25 bps: 99.95, 99.85, 99.75; 50 bps: 5 levels
    assert (f["depth_bid_10bps"], f["depth_ask_10bps"], f["liquidity_10bps"]) == (1.0, 2.0, 3.0)
    assert (f["depth_bid_25bps"], f["depth_ask_25bps"]) == (6.0, 6.0)
    assert (f["depth_bid_50bps"], f["depth_ask_50bps"], f["liquidity_50bps"]) == (15.0, 10.0, 25.0)


def test_walls_are_levels_above_ten_times_the_top_ten_mean():
    bids = [(100.0 - i, 1.0) for i in range(10)] + [(89.0, 50.0)]   # mean of top 10+10 = 1
    asks = [(101.0 + i, 1.0) for i in range(9)] + [(110.0, 30.0), (111.0, 10.0)]
    f = orderbook_features(book([(1, bids, asks)])).row(0, named=True)
    mean = (10 + 9 + 30) / 20  # 2.45 -> walls are sizes > 24.5
    assert mean * 10 < 30
    assert (f["bid_wall_price"], f["bid_wall_size"], f["bid_walls"]) == (89.0, 50.0, 1)
    assert (f["ask_wall_price"], f["ask_wall_size"], f["ask_walls"]) == (110.0, 30.0, 1)
    none = orderbook_features(book([(1, BIDS, ASKS)])).row(0, named=True)
    assert none["bid_wall_price"] is None and none["bid_walls"] == 0


def test_velocity_and_ofi_between_snapshots():
    s1 = ([(100.0, 2.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 5.0)])
    s2 = ([(100.0, 3.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 5.0)])   # best bid size 2 -> 3
    s3 = ([(100.5, 1.0), (100.0, 3.0)], [(101.0, 2.0), (102.0, 5.0)])  # new best bid, ask size 1 -> 2
    f = orderbook_features(book([(0.5, *s1), (1.0, *s2), (3.2, *s3)]))
    assert f["timestamp"].to_list() == [T0 + timedelta(seconds=s) for s in (1, 2, 3, 4)]
    assert f["updates"].to_list() == [2, 0, 0, 1]
    assert f["book_velocity"].to_list() == [1.0, 0.0, 0.0, 5.0]
    # OFI: s2 vs s1: bid same price -> +3 - 2; s3 vs s2: bid up -> +1; ask same -> -2 + 1
    assert f["ofi"].to_list() == [1.0, 0.0, 0.0, 0.0]
    assert f["best_bid"].to_list() == [100.0, 100.0, 100.0, 100.5]  # state carried through seconds 2, 3


def test_kyle_lambda_recovers_a_known_impact():
    q = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.0])
    dm = 0.01 * q + 0.002
    lam = kyle_lambda(dm, q, window=3)
    assert np.isnan(lam[:2]).all()
    assert lam[2:] == pytest.approx([0.01] * 4)
    # through the grid: mid moves 0.01 per unit of signed volume, window 3 s
    snaps, rows, mid = [], [], 100.0
    for s, (qq, side) in enumerate([(1, "buy"), (2, "sell"), (1, "buy"), (3, "buy"), (1, "sell")], start=1):
        rows.append((s - 0.5, mid, qq, side))
        mid += 0.01 * qq * (1 if side == "buy" else -1)
        snaps.append((s - 0.2, [(mid - 0.5, 1.0)], [(mid + 0.5, 1.0)]))
    f = orderbook_features(book([(0.1, [(99.5, 1.0)], [(100.5, 1.0)]), *snaps]), trades(rows), kyle_window=3)
    assert f["signed_volume"].to_list() == [1.0, -2.0, 1.0, 3.0, -1.0]
    # the first second has no previous mid, so the first full 3 s window ends at the 4th second
    assert f["kyle_lambda"].to_list()[:3] == [None, None, None]
    assert f["kyle_lambda"].to_list()[3:] == pytest.approx([0.01] * 2)


def test_vpin_buckets_straddle_bars_with_bulk_classification():
    dp = np.array([2.0, 0.0, -1.0])
    sigma = float(np.std(dp, ddof=1))
    phi = [NormalDist().cdf(x / sigma) for x in dp]
    done, values = vpin(np.array([10, 11, 12]), np.array([3.0, 4.0, 3.0]), dp, 5.0, n_buckets=1)
    buy1, buy2 = 3 * phi[0] + 2 * phi[1], 2 * phi[1] + 3 * phi[2]
    assert done.tolist() == [11, 12]
    assert values == pytest.approx([abs(2 * buy1 - 5) / 5, abs(2 * buy2 - 5) / 5])
    done2, values2 = vpin(np.array([10, 11, 12]), np.array([3.0, 4.0, 3.0]), dp, 5.0, n_buckets=2)
    assert done2.tolist() == [12]
    assert values2 == pytest.approx([(abs(2 * buy1 - 5) + abs(2 * buy2 - 5)) / 10])


def test_vpin_on_the_grid_is_the_latest_completed_bucket():
    snaps = [(s, [(99.0, 1.0)], [(101.0, 1.0)]) for s in (0.5, 1.5, 2.5, 3.5)]
    rows = [(0.7, 100.0, 3.0, "buy"), (1.7, 102.0, 4.0, "buy"), (2.7, 101.0, 3.0, "sell")]
    f = orderbook_features(book(snaps), trades(rows), vpin_buckets=1, vpin_bucket_volume=5.0)
    dp = np.array([0.0, 2.0, -1.0])
    sigma = float(np.std(dp, ddof=1))
    phi = [NormalDist().cdf(x / sigma) for x in dp]
    b1 = 3 * phi[0] + 2 * phi[1]
    b2 = 2 * phi[1] + 3 * phi[2]
    assert f["vpin"].to_list()[0] is None
    assert f["vpin"].to_list()[1:] == pytest.approx([abs(2 * b1 - 5) / 5, abs(2 * b2 - 5) / 5, abs(2 * b2 - 5) / 5])


def test_effective_and_realized_spread_against_the_book():
    snaps = [(0.5, [(99.95, 1.0)], [(100.05, 1.0)]),     # mid 100
             (4.0, [(99.75, 1.0)], [(99.85, 1.0)]),      # mid 99.8 from 4 s on
             (10.0, [(99.75, 1.0)], [(99.85, 1.0)])]
    rows = [(0.8, 99.9, 1.0, "sell"), (0.9, 100.05, 3.0, "buy")]
    f = orderbook_features(book(snaps), trades(rows)).row(0, named=True)
    eff = (1 * 2 * -1 * (99.9 - 100) / 100 + 3 * 2 * (100.05 - 100) / 100) / 4 * 1e4
    real = (1 * 2 * -1 * (99.9 - 99.8) / 100 + 3 * 2 * (100.05 - 99.8) / 100) / 4 * 1e4
    assert f["effective_spread_bps"] == pytest.approx(eff) and f["effective_spread_bps"] == pytest.approx(12.5)
    assert f["realized_spread_bps"] == pytest.approx(real)
    assert (f["volume"], f["signed_volume"]) == (4.0, 2.0)


def test_series_kept_apart_and_dictionary_covers_every_column():
    both = pl.concat([book([(1, BIDS, ASKS)]), book([(2, BIDS, ASKS)], symbol="ETHUSDT")])
    f = orderbook_features(both)
    assert f.group_by("symbol").len().sort("symbol").rows() == [("BTCUSDT", 1), ("ETHUSDT", 1)]
    assert set(f.columns) - {"exchange", "symbol"} == set(FEATURE_DICTIONARY)
    assert all(unit and meaning for unit, meaning in FEATURE_DICTIONARY.values())
    with pytest.raises(ValueError, match="missing column.*ask_sz"):
        orderbook_features(both.drop("ask_sz"))
    with pytest.raises(ValueError, match="side must be 'buy' or 'sell'"):
        orderbook_features(both, trades([(1, 100, 1, "BUY")]))
    assert math.isclose(f["spread_bps"][0], 10.0)


def test_ragged_books_and_unsorted_input():
    s1 = ([(100.0, 1.0), (99.0, 2.0), (98.0, 3.0)], [(101.0, 4.0)])          # 3 bids, 1 ask
    s2 = ([(100.0, 1.0)], [(101.0, 4.0), (102.0, 1.0)])                      # 1 bid, 2 asks
    sorted_books = book([(0.5, *s1), (1.5, *s2)])
    f = orderbook_features(sorted_books[::-1])  # reversed rows: sorted internally
    assert f["imbalance_5"].to_list() == pytest.approx([(6 - 4) / 10, (1 - 5) / 6])
    # velocity of s2 vs s1: bid levels 2, 3 vanish (px+sz each = 4 slots), ask level 2 appears (2 slots)
    assert f["book_velocity"].to_list() == [0.0, 6.0]
    assert f.equals(orderbook_features(sorted_books))
