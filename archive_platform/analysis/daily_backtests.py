"""The backtests run after each archived session, over the stored ``candles`` (pure: no Dagster).

``BACKTESTS`` lists them; each reads the candles of its symbol and timeframe over the
``lookback_sessions`` NYSE sessions ending on the day through the ``Storage`` protocol, runs the
SMA-crossover backtest (``analysis.backtest``; fills at the next candle's open, fee per side) and
writes its equity curve and trades to Parquet. ``consistency`` re-derives the metrics' basis from
the curve so the Dagster check can fail when they disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from archive_platform import calendar
from archive_platform.analysis.backtest import BacktestResult, sma_cross_backtest
from archive_platform.storage import Storage


@dataclass(frozen=True)
class BacktestConfig:
    """One configured backtest: SMA crossover on one symbol's session candles."""

    name: str
    symbol: str = "SPY"  # the first configured symbol is used when this one is not archived
    timeframe: str = "5m"
    fast: int = 20
    slow: int = 50
    fee: float = 0.001  # per side, 0.1 %
    slippage_bps: float = 0.0
    lookback_sessions: int = 60

    def describe(self) -> str:
        return (f"SMA({self.fast}) / SMA({self.slow}) crossover, long or flat, on {self.symbol} "
                f"{self.timeframe} candles over the last {self.lookback_sessions} sessions, "
                f"fee {self.fee:.2%} per side, slippage {self.slippage_bps:g} bps")


BACKTESTS: tuple[BacktestConfig, ...] = (BacktestConfig("sma_cross_spy_5m"),)


@dataclass(frozen=True)
class DailyBacktest:
    config: BacktestConfig
    symbol: str
    day: date
    first_day: date
    sessions: int  # sessions with candles in the window
    result: BacktestResult


def pick_symbol(cfg: BacktestConfig, symbols: Sequence[str]) -> str:
    if not symbols or cfg.symbol in symbols:
        return cfg.symbol
    return symbols[0]


def run_configured(store: Storage, day: date, cfg: BacktestConfig,
                   symbols: Sequence[str] = ()) -> DailyBacktest:
    """Run ``cfg`` over the stored candles of the window ending on ``day``."""
    symbol = pick_symbol(cfg, symbols)
    start = calendar.add_trading_days(day, -(cfg.lookback_sessions - 1))
    cols = ["exchange", "symbol", "timeframe", "timestamp", "open", "high", "low", "close", "volume"]
    df = pl.from_arrow(store.read_range("candles", start, day, columns=cols)).filter(
        (pl.col("symbol") == symbol) & (pl.col("timeframe") == cfg.timeframe))
    if df.height < 2:
        raise ValueError(f"backtest {cfg.name}: {df.height} {cfg.timeframe} candles of {symbol} "
                         f"stored for {start}..{day}; materialize candles first")
    result = sma_cross_backtest(df, timeframe=cfg.timeframe, calendar="nyse", fast=cfg.fast,
                                slow=cfg.slow, fee=cfg.fee, slippage_bps=cfg.slippage_bps)
    first = calendar.market_date(df["timestamp"].min())
    sessions = df["timestamp"].dt.convert_time_zone("America/New_York").dt.date().n_unique()
    return DailyBacktest(cfg, symbol, day, first, sessions, result)


def write_outputs(bt: DailyBacktest, root: Path) -> tuple[Path, Path]:
    """``<root>/<name>/date=<day>/equity.parquet`` and ``trades.parquet``."""
    folder = Path(root) / bt.config.name / f"date={bt.day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    equity, trades = folder / "equity.parquet", folder / "trades.parquet"
    bt.result.equity.write_parquet(equity)
    bt.result.trades.write_parquet(trades)
    return equity, trades


def consistency(result: BacktestResult) -> list[str]:
    """Problems found re-deriving the metrics' basis from the equity curve (empty = consistent):
    no look-ahead (the position held in bar t is the signal of bar t-1), the final equity is the
    product of (1 + return), the max drawdown is the curve's, the trade count the position runs'."""
    eq = result.equity
    sig, pos = eq["signal"].to_numpy(), eq["position"].to_numpy()
    problems = []
    if pos[0] != 0 or not np.array_equal(pos[1:], sig[:-1]):
        problems.append("look-ahead: a position differs from the previous bar's signal")
    growth = float(np.prod(1 + eq["return"].to_numpy()))
    if not math.isclose(growth, result.metrics["final_equity"], rel_tol=1e-9):
        problems.append(f"final equity {result.metrics['final_equity']} != prod(1 + r) = {growth}")
    if not math.isclose(float(eq["drawdown"].min()), result.metrics["max_drawdown"], abs_tol=1e-12):
        problems.append(f"max_drawdown {result.metrics['max_drawdown']} != curve's {eq['drawdown'].min()}")
    runs = int(np.count_nonzero((pos != 0) & (np.concatenate([[0.0], pos[:-1]]) != pos)))
    if runs != int(result.metrics["trades"]):
        problems.append(f"{int(result.metrics['trades'])} trades but {runs} position runs")
    return problems


def curve_points(equity: pl.DataFrame, n: int = 200) -> pl.DataFrame:
    """At most ``n`` evenly spaced points of the curve (the last one always included)."""
    idx = np.unique(np.linspace(0, equity.height - 1, min(n, equity.height)).round().astype(int))
    return equity[idx].select("timestamp", "equity", "drawdown", "position")


_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int = 60) -> str:
    """A one-line text plot of ``values`` (block characters), resampled to ``width`` points."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return ""
    v = v[np.unique(np.linspace(0, len(v) - 1, min(width, len(v))).round().astype(int))]
    lo, hi = v.min(), v.max()
    if hi == lo:
        return _BLOCKS[3] * len(v)
    return "".join(_BLOCKS[int(x)] for x in np.round((v - lo) / (hi - lo) * (len(_BLOCKS) - 1)))
