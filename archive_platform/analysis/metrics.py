"""Performance metrics of a per-bar return series (numpy, vectorised).

Conventions (the same as empyrical's, which the tests compare against):
- total_return = prod(1 + r) - 1; annual_return = (1 + total_return) ** (P / n) - 1 with P the
  periods per year and n the number of bars.
- sharpe = mean(r) / std(r, ddof=1) * sqrt(P) (risk-free rate 0).
- sortino = mean(r) * P / (sqrt(mean(min(r, 0) ** 2)) * sqrt(P)) (target return 0).
- max_drawdown = min over t of equity_t / max(1, equity_0..t) - 1, a fraction <= 0 of the running
  peak (the starting equity counts as a peak); max_drawdown_bars = the longest run of bars below
  the running peak (its time span in max_drawdown_duration_s when timestamps are given).
- Trade statistics come from the round trips: win_rate = share of trades with pnl > 0,
  profit_factor = sum of winning pnl / |sum of losing pnl| (inf without losses, NaN without trades).
- exposure = share of bars with a non-zero position.
"""

from __future__ import annotations

import math

import numpy as np

from archive_platform.analysis.candles import TIMEFRAMES

SESSIONS_PER_YEAR = 252
DAYS_PER_YEAR_CRYPTO = 365
SESSION_SECONDS = 390 * 60


def periods_per_year(timeframe: str, calendar: str = "crypto") -> float:
    """Bars per year: 365 days x bars per day for crypto, 252 sessions x bars per session for NYSE."""
    seconds = 1 if timeframe == "1s" else TIMEFRAMES.get(timeframe)
    if seconds is None:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected 1s or one of {list(TIMEFRAMES)}")
    if calendar == "crypto":
        return DAYS_PER_YEAR_CRYPTO * 86400 / seconds
    if calendar == "nyse":
        return float(SESSIONS_PER_YEAR * (1 if seconds >= 86400 else math.ceil(SESSION_SECONDS / seconds)))
    raise ValueError(f"unknown calendar {calendar!r}; expected 'crypto' or 'nyse'")


def drawdown(returns: np.ndarray) -> np.ndarray:
    equity = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return equity / peak - 1.0


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(length, end index) of the longest run of True; (0, -1) when there is none."""
    if not mask.any():
        return 0, -1
    run_id = np.cumsum(~mask)
    lengths = np.bincount(run_id[mask])
    best = int(lengths.argmax())
    end = int(np.flatnonzero(mask & (run_id == best))[-1])
    return int(lengths[best]), end


def metrics(returns, *, periods_per_year: float, positions=None, trade_pnl=None,
            timestamps=None) -> dict[str, float]:
    if not periods_per_year > 0:
        raise ValueError(f"metrics: periods_per_year must be > 0, got {periods_per_year}")
    r = np.asarray(returns, dtype=np.float64)
    r = np.where(np.isnan(r), 0.0, r)
    n = len(r)
    out: dict[str, float] = {"bars": float(n)}
    if n == 0:
        raise ValueError("metrics: the return series is empty")
    if np.isinf(r).any():
        raise ValueError(f"metrics: returns are not finite at bar(s) {np.flatnonzero(np.isinf(r))[:10].tolist()}")
    total = float(np.prod(1.0 + r) - 1.0)
    out["total_return"] = total
    out["annual_return"] = (1.0 + total) ** (periods_per_year / n) - 1.0 if total > -1 else -1.0
    sd = np.std(r, ddof=1) if n > 1 else np.nan
    out["sharpe"] = float(np.mean(r) / sd * math.sqrt(periods_per_year)) if sd and sd > 0 else math.nan
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) * math.sqrt(periods_per_year)
    out["sortino"] = float(np.mean(r) * periods_per_year / down) if down > 0 else math.nan
    dd = drawdown(r)
    out["max_drawdown"] = float(dd.min())
    length, end = _longest_run(dd < 0)
    out["max_drawdown_bars"] = float(length)
    if timestamps is not None and length:
        ts = np.asarray(timestamps).astype("datetime64[us]").astype(np.int64)
        start = end - length  # the bar of the peak the run fell from (or before the first bar)
        t0 = ts[start] if start >= 0 else ts[0] - (ts[1] - ts[0] if n > 1 else 0)
        out["max_drawdown_duration_s"] = float((ts[end] - t0) / 1e6)
    elif timestamps is not None:
        out["max_drawdown_duration_s"] = 0.0
    if positions is not None:
        out["exposure"] = float(np.mean(np.asarray(positions, dtype=np.float64) != 0))
    if trade_pnl is not None:
        pnl = np.asarray(trade_pnl, dtype=np.float64)
        wins, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
        out["trades"] = float(len(pnl))
        out["win_rate"] = float(np.mean(pnl > 0)) if len(pnl) else math.nan
        out["profit_factor"] = (float(wins / losses) if losses > 0
                                else (math.inf if wins > 0 else math.nan))
    return out
