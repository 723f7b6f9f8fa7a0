"""A vectorised backtest: target positions from a signal, fills at the NEXT bar's open.

Model (numpy, no loop over bars):
- ``signal[t]`` in [-1, 1] is the target position (fraction of equity; negative = short) decided
  with the information of bar t, i.e. at its close. It is filled at the open of bar t + 1, so the
  position held during bar t is ``pos[t] = signal[t - 1]`` (``pos[0] = 0``): no look-ahead.
- Per bar: the overnight/gap move from the previous close to this open earns the OLD position,
  the fill at the open costs |pos[t] - pos[t-1]| * (fee + slippage_bps / 1e4) of equity, and the
  move from open to close earns the NEW position:
  r[t] = (1 + pos[t-1] (O[t] / C[t-1] - 1)) (1 - cost[t]) (1 + pos[t] (C[t] / O[t] - 1)) - 1.
  The weight is held constant between fills (implicit, uncharged rebalancing of the drift).
- A trade is a run of bars with one constant non-zero position; its pnl (fraction of the equity at
  entry) is w (P_exit / P_entry - 1) - 2 |w| fee, with fills at the opens moved against the trade by
  the slippage; a trade still open at the end is closed at the last close (``open_at_end``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from archive_platform.analysis.candles import to_polars
from archive_platform.analysis.metrics import metrics as compute_metrics


@dataclass(frozen=True)
class BacktestResult:
    equity: pl.DataFrame  # timestamp, signal, position, return, equity, drawdown
    trades: pl.DataFrame  # entry_time, exit_time, side, weight, entry_price, exit_price, bars, pnl, open_at_end
    metrics: dict[str, float]


def run_backtest(bars, signal, *, periods_per_year: float, fee: float = 0.001,
                 slippage_bps: float = 0.0, initial_equity: float = 1.0) -> BacktestResult:
    """Backtest ``signal`` (a column name of ``bars`` or an array, one value per bar) on ``bars``."""
    df = to_polars(bars, ("timestamp", "open", "close"), "bars").sort("timestamp")
    sig = df[signal].to_numpy() if isinstance(signal, str) else np.asarray(signal, dtype=np.float64)
    sig = np.where(np.isnan(sig.astype(np.float64)), 0.0, sig.astype(np.float64))
    if len(sig) != df.height:
        raise ValueError(f"signal has {len(sig)} values for {df.height} bars")
    if np.any(np.abs(sig) > 1):
        raise ValueError("signal must lie in [-1, 1] (a fraction of equity; no leverage)")
    if fee < 0 or slippage_bps < 0:
        raise ValueError("fee and slippage_bps must be >= 0")
    o, c = df["open"].to_numpy().astype(np.float64), df["close"].to_numpy().astype(np.float64)
    pos = np.concatenate([[0.0], sig[:-1]])
    prev = np.concatenate([[0.0], pos[:-1]])
    prev_close = np.concatenate([[o[0]], c[:-1]])
    unit_cost = fee + slippage_bps / 1e4
    r = (1 + prev * (o / prev_close - 1)) * (1 - np.abs(pos - prev) * unit_cost) * (1 + pos * (c / o - 1)) - 1
    equity = initial_equity * np.cumprod(1 + r)
    peak = np.maximum.accumulate(np.concatenate([[initial_equity], equity]))[1:]
    curve = pl.DataFrame({"timestamp": df["timestamp"], "signal": sig, "position": pos, "return": r,
                          "equity": equity, "drawdown": equity / peak - 1})
    trades = _trades(df["timestamp"], o, c, pos, prev, fee, slippage_bps / 1e4)
    m = compute_metrics(r, periods_per_year=periods_per_year, positions=pos,
                        trade_pnl=trades["pnl"].to_numpy(), timestamps=df["timestamp"].to_numpy())
    m["fills"] = float(np.count_nonzero(pos != prev))
    m["final_equity"] = float(equity[-1])
    return BacktestResult(curve, trades, m)


def _trades(ts: pl.Series, o, c, pos, prev, fee: float, slip: float) -> pl.DataFrame:
    n = len(pos)
    seg = np.cumsum(pos != prev)
    frame = pl.DataFrame({"seg": seg, "i": np.arange(n), "pos": pos}).filter(pl.col("pos") != 0)
    runs = frame.group_by("seg", maintain_order=True).agg(
        pl.col("i").first().alias("first"), pl.col("i").last().alias("last"), pl.col("pos").first().alias("w"))
    first, last, w = (runs[k].to_numpy() for k in ("first", "last", "w"))
    closed = last + 1 < n
    exit_i = np.minimum(last + 1, n - 1)
    side = np.sign(w)
    entry_px = o[first] * (1 + side * slip)
    exit_px = np.where(closed, o[exit_i] * (1 - side * slip), c[last])
    pnl = w * (exit_px / entry_px - 1) - np.abs(w) * (fee + np.where(closed, fee, 0.0))
    tsn = ts.to_numpy()
    return pl.DataFrame({
        "entry_time": tsn[first] if len(first) else ts.head(0),
        "exit_time": np.where(closed, tsn[exit_i], tsn[last]) if len(first) else ts.head(0),
        "side": np.where(side > 0, "long", "short").astype(str),
        "weight": w.astype(np.float64), "entry_price": entry_px, "exit_price": exit_px,
        "bars": (last - first + 1).astype(np.int64), "pnl": pnl.astype(np.float64), "open_at_end": ~closed,
    })


def sma_cross_signal(close, fast: int = 20, slow: int = 50, allow_short: bool = False) -> np.ndarray:
    """+1 while SMA(fast) > SMA(slow) of the closes, else 0 (or -1 with ``allow_short``); 0 until
    the slow average exists. Uses closes up to and including bar t only."""
    if not 0 < fast < slow:
        raise ValueError(f"need 0 < fast < slow, got fast={fast} slow={slow}")
    s = pl.Series(np.asarray(close, dtype=np.float64))
    f, sl = s.rolling_mean(fast).to_numpy(), s.rolling_mean(slow).to_numpy()
    out = np.where(f > sl, 1.0, -1.0 if allow_short else 0.0)
    return np.where(np.isnan(sl), 0.0, out)


def imbalance_signal(features, column: str = "imbalance_5", threshold: float = 0.3) -> np.ndarray:
    """Order-book imbalance strategy: +1 when ``column`` > threshold, -1 when < -threshold, else 0."""
    x = to_polars(features, (column,), "features")[column].fill_null(0.0).to_numpy()
    return np.where(x > threshold, 1.0, np.where(x < -threshold, -1.0, 0.0))


def feature_bars(features) -> pl.DataFrame:
    """1-second bars from the feature grid: open = close = the mid at t (fills at the next mid)."""
    df = to_polars(features, ("timestamp", "mid"), "features").filter(pl.col("mid").is_not_null())
    return df.with_columns(pl.col("mid").alias("open"), pl.col("mid").alias("close"))


def sma_cross_backtest(candles, *, timeframe: str, calendar: str = "crypto", fast: int = 20, slow: int = 50,
                       allow_short: bool = False, fee: float = 0.001, slippage_bps: float = 0.0) -> BacktestResult:
    """The SMA-crossover backtest on the candles of ONE series (crypto or NYSE session candles),
    annualised with ``periods_per_year(timeframe, calendar)``."""
    from archive_platform.analysis.metrics import periods_per_year

    df = to_polars(candles, ("exchange", "symbol", "timestamp", "open", "close"), "candles")
    series = df.select("exchange", "symbol").unique()
    if series.height != 1:
        raise ValueError(f"sma_cross_backtest needs the candles of one series, got {series.rows()}")
    df = df.sort("timestamp")
    signal = sma_cross_signal(df["close"].to_numpy(), fast, slow, allow_short)
    return run_backtest(df, signal, periods_per_year=periods_per_year(timeframe, calendar), fee=fee,
                        slippage_bps=slippage_bps)
