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
- Ruin: a bar whose factor 1 + r[t] would be <= 0 sets r[t] = -1; the equity stays 0 (never
  negative) and the signal is 0 from that bar on (nothing is left to trade). ``ruin(result)``
  finds the first bar at or below 1 % of the starting equity.
- A trade is a run of bars with one constant non-zero position; its pnl (fraction of the equity at
  entry, floored at -1) is w (P_exit / P_entry - 1) - 2 |w| fee, with fills at the opens moved
  against the trade by the slippage; a trade still open at the end is closed at the last close
  (``open_at_end``). ``metrics["gross_return"]`` is the total return of the same positions
  without fees and slippage.
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
    """Backtest ``signal`` (a column name of ``bars`` or an array, one value per bar in the order
    of ``bars``) on ``bars``, the bars of ONE series (timestamps unique)."""
    df = to_polars(bars, ("timestamp", "open", "close"), "bars")
    if df.height == 0:
        raise ValueError("bars: no rows to backtest")
    raw = df[signal].cast(pl.Float64).to_numpy() if isinstance(signal, str) else np.asarray(signal, dtype=np.float64)
    if raw.ndim != 1 or len(raw) != df.height:
        raise ValueError(f"signal has {raw.size} values for {df.height} bars")
    # an array signal is aligned with the rows as given: sort it WITH the bars, never apart
    df = df.with_columns(pl.Series("_signal", raw)).sort("timestamp", maintain_order=True)
    ts_us = df["timestamp"].cast(pl.Int64).to_numpy()
    if df.height > 1 and np.any(ts_us[1:] == ts_us[:-1]):
        raise ValueError("bars: duplicate timestamps; a backtest runs on the bars of one series")
    sig = df["_signal"].to_numpy()
    sig = np.where(np.isnan(sig), 0.0, sig)
    if np.any(np.abs(sig) > 1):
        raise ValueError("signal must lie in [-1, 1] (a fraction of equity; no leverage)")
    if fee < 0 or slippage_bps < 0:
        raise ValueError("fee and slippage_bps must be >= 0")
    o, c = df["open"].cast(pl.Float64).to_numpy(), df["close"].cast(pl.Float64).to_numpy()
    if not (np.all(np.isfinite(o) & (o > 0)) and np.all(np.isfinite(c) & (c > 0))):
        raise ValueError("bars: open and close must be positive prices (no null, NaN or zero)")
    prev_close = np.concatenate([[o[0]], c[:-1]])
    unit_cost = fee + slippage_bps / 1e4

    def factors(s: np.ndarray, cost: float):
        pos = np.concatenate([[0.0], s[:-1]])
        prev = np.concatenate([[0.0], pos[:-1]])
        g = ((1 + prev * (o / prev_close - 1)) * (1 - np.abs(pos - prev) * cost) * (1 + pos * (c / o - 1)))
        return pos, prev, g

    pos, prev, growth = factors(sig, unit_cost)
    ruined = np.flatnonzero(growth <= 0)
    if len(ruined):
        # Ruin: the bar would take the equity to zero or below (a short through a doubling, costs
        # above the equity). Nothing is left to trade: the equity stays 0 and the signal is 0 from
        # that bar on, so the position is closed at the next open (a liquidation, free of cost).
        k = int(ruined[0])
        sig = sig.copy()
        sig[k:] = 0.0
        pos, prev, growth = factors(sig, unit_cost)
        growth[k], growth[k + 1:] = 0.0, 1.0
    r = growth - 1
    equity = initial_equity * np.cumprod(growth)
    peak = np.maximum.accumulate(np.concatenate([[initial_equity], equity]))[1:]
    curve = pl.DataFrame({"timestamp": df["timestamp"], "signal": sig, "position": pos, "return": r,
                          "equity": equity, "drawdown": equity / peak - 1})
    trades = _trades(df["timestamp"], o, c, pos, prev, fee, slippage_bps / 1e4)
    m = compute_metrics(r, periods_per_year=periods_per_year, positions=pos,
                        trade_pnl=trades["pnl"].to_numpy(), timestamps=df["timestamp"].to_numpy())
    m["fills"] = float(np.count_nonzero(pos != prev))
    m["final_equity"] = float(equity[-1])
    # the same positions without fees or slippage: what the signal earns before costs
    _, _, gross = factors(sig, 0.0)
    m["gross_return"] = float(np.prod(np.maximum(gross, 0.0)) - 1)
    return BacktestResult(curve, trades, m)


def ruin(result: BacktestResult, *, level: float = 0.01, initial_equity: float = 1.0):
    """(timestamp, equity) of the first bar whose equity is at or below ``level`` x the starting
    equity (default 1 %: a ruined account), or None when the equity never fell that low."""
    hit = result.equity.filter(pl.col("equity") <= level * initial_equity)
    return None if hit.height == 0 else (hit["timestamp"][0], float(hit["equity"][0]))


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
    pnl = np.maximum(pnl, -1.0)  # a trade cannot lose more than the equity it was entered with
    return pl.DataFrame({  # gathered from the Series: the times keep their time zone (UTC)
        "entry_time": ts.gather(first), "exit_time": ts.gather(np.where(closed, exit_i, last)),
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
