"""Order-book features for one symbol-day: 864,000 L2 snapshots (10 a second, 20 levels a side).

Times ``orderbook_features`` on synthetic books (a random-walk mid, 20 levels with random sizes,
roughly a third of the levels changing per update) plus 200,000 trades, against the target of
10 s, and against a baseline measured in the same run: the seed document's per-snapshot Python
functions (spread, 5-level imbalance, weighted mid, walls) on a sample of the snapshots,
extrapolated to the day.

    ./run python bench/features.py [--snapshots 864000] [--trades 200000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from archive_platform.analysis.features import orderbook_features

START_US = 1_772_323_200 * 1_000_000  # 2026-03-01 00:00 UTC
LEVELS = 20


def synthetic_books(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t = START_US + np.arange(n, dtype=np.int64) * (86_400_000_000 // n) + 1
    mid = np.round(60000 + np.cumsum(rng.choice([-0.5, 0, 0.5], n, p=[0.1, 0.8, 0.1])), 1)
    steps = np.arange(LEVELS) * 0.1
    bid_px = (mid - 0.05)[:, None] - steps
    ask_px = (mid + 0.05)[:, None] + steps
    sizes = rng.exponential(1.0, (n, 2 * LEVELS))
    keep = rng.random((n, 2 * LEVELS)) < 0.67  # a third of the sizes change each update
    keep[0] = False
    idx = np.maximum.accumulate(np.where(keep, 0, 1) * np.arange(n)[:, None], axis=0)  # last change
    sizes = np.take_along_axis(sizes, idx, axis=0)
    sizes[rng.random(n) < 0.001, 7] *= 40  # occasional walls
    df = pl.DataFrame({
        "exchange": "binance", "symbol": "BTCUSDT", "event_time": t,
        "update_id": np.arange(n, dtype=np.int64),
        "bid_px": bid_px.round(1), "bid_sz": sizes[:, :LEVELS].round(4),
        "ask_px": ask_px.round(1), "ask_sz": sizes[:, LEVELS:].round(4),
    })
    return df.with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")),
                           *(pl.col(c).arr.to_list() for c in ("bid_px", "bid_sz", "ask_px", "ask_sz")))


def synthetic_trades(n: int, books: pl.DataFrame, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.sort(START_US + rng.integers(0, 86_400_000_000, n))
    mids = books.select(((pl.col("bid_px").list.first() + pl.col("ask_px").list.first()) / 2)).to_series().to_numpy()
    at = np.minimum((t - START_US) // (86_400_000_000 // len(mids)), len(mids) - 1)
    side = rng.choice(["buy", "sell"], n)
    price = mids[at] + np.where(side == "buy", 0.05, -0.05)
    return pl.DataFrame({"exchange": "binance", "symbol": "BTCUSDT", "trade_id": np.arange(n),
                         "event_time": t, "price": price, "size": rng.exponential(0.05, n), "side": side}
                        ).with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))


def seed_style(books: pl.DataFrame, sample: int) -> float:
    """The order-book proposal's OrderBookFeatures methods, one snapshot at a time (seconds per snapshot)."""
    rows = books.head(sample).select("bid_px", "bid_sz", "ask_px", "ask_sz").rows()
    t0 = time.perf_counter()
    for bp, bs, ap, asz in rows:
        bids, asks = list(zip(bp, bs)), list(zip(ap, asz))
        _spread = asks[0][0] - bids[0][0]
        b5, a5 = sum(b[1] for b in bids[:5]), sum(a[1] for a in asks[:5])
        _imb = (b5 - a5) / (b5 + a5)
        _wmid = (bids[0][0] * asks[0][1] + asks[0][0] * bids[0][1]) / (bids[0][1] + asks[0][1])
        avg = np.mean([o[1] for o in bids[:10] + asks[:10]])
        _walls = ([(p, s) for p, s in bids if s > avg * 10], [(p, s) for p, s in asks if s > avg * 10])
    return (time.perf_counter() - t0) / len(rows)  # head() gives fewer rows than sample on small runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--snapshots", type=int, default=864_000)
    ap.add_argument("--trades", type=int, default=200_000)
    args = ap.parse_args()
    books = synthetic_books(args.snapshots)
    trades = synthetic_trades(args.trades, books)
    t0 = time.perf_counter()
    out = orderbook_features(books, trades)
    took = time.perf_counter() - t0
    sample = min(20_000, args.snapshots)
    per = seed_style(books, sample)
    seed_day = per * args.snapshots
    print(f"{args.snapshots:,} snapshots x {LEVELS} levels + {args.trades:,} trades -> {out.height:,} 1 s rows, "
          f"{len(out.columns) - 3} features")
    print(f"  orderbook_features          {took:8.2f} s  (target <= 10 s)")
    print(f"  seed per-snapshot Python    {seed_day:8.2f} s  (4 of the features, extrapolated from {sample:,} "
          f"snapshots); ours is {seed_day / took:5.1f}x faster")
    assert out.height == 86_400 or args.snapshots != 864_000


if __name__ == "__main__":
    main()
