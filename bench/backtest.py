"""Backtest over a year of 1-minute candles (525,600 bars): SMA crossover, fees and metrics.

Times ``sma_cross_signal`` + ``run_backtest`` (equity, trades, metrics) against the 1 s target and
against a baseline measured in the same run: the same model written as a per-bar Python loop (the
seed document's style), whose final equity is asserted equal to ours. The loop computes only the equity; ours also builds
the trade list and all metrics. Best of --repeat runs.

    ./run python bench/backtest.py [--bars 525600] [--fast 240] [--slow 1440] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from archive_platform.analysis.backtest import run_backtest, sma_cross_signal
from archive_platform.analysis.metrics import periods_per_year

START_US = 1_767_225_600 * 1_000_000  # 2026-01-01 00:00 UTC


def synthetic_candles(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 40000 * np.exp(np.cumsum(rng.normal(0, 8e-4, n)))
    opens = np.concatenate([[40000.0], close[:-1]]) * (1 + rng.normal(0, 1e-4, n))
    return pl.DataFrame({"timestamp": START_US + 60_000_000 * np.arange(1, n + 1), "open": opens, "close": close}
                        ).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))


def loop_backtest(opens, closes, signal, fee: float) -> float:
    """The same model, one bar at a time in Python (baseline)."""
    equity, pos, prev_close = 1.0, 0.0, opens[0]
    for t in range(len(opens)):
        target = signal[t - 1] if t else 0.0
        equity *= 1 + pos * (opens[t] / prev_close - 1)
        equity *= 1 - abs(target - pos) * fee
        pos = target
        equity *= 1 + pos * (closes[t] / opens[t] - 1)
        prev_close = closes[t]
    return equity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=525_600)
    ap.add_argument("--fast", type=int, default=240)
    ap.add_argument("--slow", type=int, default=1440)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = ap.parse_args()
    bars = synthetic_candles(args.bars)
    took, loop = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        signal = sma_cross_signal(bars["close"].to_numpy(), args.fast, args.slow)
        res = run_backtest(bars, signal, periods_per_year=periods_per_year("1m", "crypto"), fee=0.001)
        took.append(time.perf_counter() - t0)
    o, c, sig = bars["open"].to_list(), bars["close"].to_list(), signal.tolist()
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        final = loop_backtest(o, c, sig, 0.001)
        loop.append(time.perf_counter() - t0)
    took, loop = min(took), min(loop)
    assert abs(final / res.metrics["final_equity"] - 1) < 1e-9, (final, res.metrics["final_equity"])
    m = res.metrics
    print(f"{args.bars:,} 1m bars, SMA {args.fast}/{args.slow}: {int(m['trades']):,} trades, "
          f"sharpe {m['sharpe']:.2f}, max drawdown {m['max_drawdown']:.1%}; final equity equal to the loop's")
    print(f"  run_backtest (vectorised)   {took:7.3f} s  (target <= 1 s)")
    print(f"  per-bar Python loop         {loop:7.3f} s  ours is {loop / took:5.1f}x faster")


if __name__ == "__main__":
    main()
