"""The simulated underlying: a daily close/IV series from a fixed epoch and intraday paths.

Daily grain: one close and one IV level per NYSE session of the whole calendar range, generated
in one vectorised draw per (seed, symbol) so that day D never depends on which other days were
asked for. A common market factor (keyed by seed only) correlates the symbols. Log-IV is an AR(1)
with a leverage effect (down days raise IV); realised volatility follows yesterday's IV level.

Intraday grain: one price point every ``60 / substeps_per_minute`` seconds of the session, a
Brownian bridge from the open (previous close times an overnight gap) to the day's close, with a
U-shaped variance clock (busier at the open and close).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np

from archive_platform import calendar as cal
from archive_platform.sim.rng import stream
from archive_platform.sim.universe import SimConfig, SymbolSpec

_MARKET_CORR = 0.6  # loading of each symbol on the common market factor
_IV_PHI = 0.97  # daily persistence of log-IV deviations
_IV_SHOCK = 0.05  # daily log-IV shock size
_IV_LEVERAGE = -0.6  # correlation of IV shocks with return shocks
_REALISED_OVER_IV = 0.85  # realised volatility runs below implied
_PRICE_REVERSION = 1.0 / 120.0  # pull of log-price to its anchor: levels stay near 2025
_GAP_SHARE = 0.25  # share of a day's variance spent overnight
_IV_INTRADAY_LEVERAGE = 1.5  # intraday: IV moves against the path's excursion


@lru_cache(maxsize=1)
def session_days() -> tuple[tuple[date, ...], dict[date, int]]:
    """All sessions the calendar knows, and each one's index from the epoch (first session)."""
    days = tuple(cal.trading_days(cal.CALENDAR_START, cal.CALENDAR_END))
    return days, {d: i for i, d in enumerate(days)}


@dataclass(frozen=True)
class DailySeries:
    """Per session since the epoch: close, open, ATM IV level (arrays aligned with session_days)."""

    close: np.ndarray
    open: np.ndarray
    iv: np.ndarray


@lru_cache(maxsize=512)
def daily_series(seed: int, spec: SymbolSpec, anchor_day: date) -> DailySeries:
    """The daily close/open/IV series of one symbol over the calendar's whole range."""
    days, index = session_days()
    n = len(days)
    market = stream(seed, "market", "daily").standard_normal(n)
    own = stream(seed, spec.symbol, "daily").standard_normal((3, n))
    eps = _MARKET_CORR * market + np.sqrt(1 - _MARKET_CORR**2) * own[0]
    iv_shock = _IV_SHOCK * (_IV_LEVERAGE * eps + np.sqrt(1 - _IV_LEVERAGE**2) * own[1])

    x = np.empty(n)  # log(IV / long-run IV)
    y = np.empty(n)  # log(close / anchor price), before re-anchoring
    xp = yp = 0.0
    base_sd = spec.vol * _REALISED_OVER_IV / np.sqrt(252.0)
    for i in range(n):  # two scalar recursions over ~10k sessions: ~10 ms, cached per symbol
        sd = base_sd * np.exp(xp)
        yp = (1.0 - _PRICE_REVERSION) * yp + sd * eps[i] - 0.5 * sd * sd
        xp = _IV_PHI * xp + iv_shock[i]
        x[i], y[i] = xp, yp
    anchor = index.get(anchor_day)
    if anchor is None:
        anchor = index[cal.next_trading_day(anchor_day)]
    close = spec.price * np.exp(y - y[anchor])
    iv = spec.vol * np.exp(x)
    prev_close = np.concatenate([[close[0] * np.exp(-base_sd * eps[0])], close[:-1]])
    prev_sd = base_sd * np.exp(np.concatenate([[0.0], x[:-1]]))
    gap = np.sqrt(_GAP_SHARE) * prev_sd * own[2]
    return DailySeries(close=close, open=prev_close * np.exp(gap), iv=iv)


def day_index(day: date) -> int:
    """Index of a session from the epoch; NotATradingDay for anything else."""
    cal.require_trading_day(day)
    return session_days()[1][day]


@dataclass(frozen=True)
class IntradayPath:
    """One session at a fixed step: price, ATM IV level, cumulative share of the day's volume."""

    open_us: int  # session open, microseconds since the Unix epoch (UTC)
    step_us: int
    price: np.ndarray  # unrounded, len = minutes * substeps + 1
    iv: np.ndarray
    volume_share: np.ndarray  # cumulative share of the day's volume traded by each point
    prev_close: float
    prev_iv: float
    close_iv: float


def u_shape(u: np.ndarray) -> np.ndarray:
    """Intraday activity profile over session fraction u in [0, 1] (busy at both ends)."""
    return 1.0 + 2.5 * np.exp(-u / 0.04) + 1.5 * np.exp(-(1.0 - u) / 0.05)


def intraday_path(seed: int, spec: SymbolSpec, config: SimConfig, day: date) -> IntradayPath:
    """The session's path, a variance-clock Brownian bridge from the open to the close."""
    series = daily_series(seed, spec, config.anchor_day)
    i = day_index(day)
    sess = cal.session(day)
    n = sess.minutes * config.substeps_per_minute
    o, c = series.open[i], series.close[i]
    prev_close = series.close[i - 1] if i > 0 else o
    prev_iv = series.iv[i - 1] if i > 0 else series.iv[i]

    mid_u = (np.arange(n) + 0.5) / n
    weights = u_shape(mid_u)
    clock = np.concatenate([[0.0], np.cumsum(weights)])
    clock /= clock[-1]
    sd_day = spec.vol * _REALISED_OVER_IV / np.sqrt(252.0) * prev_iv / spec.vol
    sd_intraday = sd_day * np.sqrt(1.0 - _GAP_SHARE)
    z = stream(seed, spec.symbol, day.isoformat(), "path").standard_normal(n)
    w = np.concatenate([[0.0], np.cumsum(z * np.sqrt(weights / weights.sum()))])
    bridge = w - clock * w[-1]
    drift = np.log(o) + clock * np.log(c / o)
    log_price = drift + sd_intraday * bridge
    iv = np.exp(
        np.log(prev_iv)
        + clock * np.log(series.iv[i] / prev_iv)
        - _IV_INTRADAY_LEVERAGE * sd_intraday * bridge
    )
    open_us = int(sess.open_utc.timestamp()) * 1_000_000
    return IntradayPath(
        open_us=open_us,
        step_us=60_000_000 // config.substeps_per_minute,
        price=np.exp(log_price),
        iv=iv,
        volume_share=clock,
        prev_close=float(prev_close),
        prev_iv=float(prev_iv),
        close_iv=float(series.iv[i]),
    )


def sample(path: IntradayPath, values: np.ndarray, t_us: np.ndarray) -> np.ndarray:
    """Linear interpolation of a path quantity at instants (microseconds, inside the session)."""
    pos = (np.asarray(t_us, dtype=np.int64) - path.open_us) / path.step_us
    grid = np.arange(len(values), dtype=float)
    return np.interp(pos, grid, values)


def round_cents(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, dtype=float), 2)


def minute_bars(path: IntradayPath, spec: SymbolSpec, seed: int, day: date, sub: int) -> dict:
    """One-minute OHLCV/VWAP/trade-count arrays of the session (bar start instants)."""
    p = round_cents(path.price)
    m = (len(p) - 1) // sub
    idx = np.arange(m) * sub
    windows = p[idx[:, None] + np.arange(sub + 1)[None, :]]
    rng = stream(seed, spec.symbol, day.isoformat(), "bars")
    share = np.diff(path.volume_share[:: sub])  # exact share of the day's volume per minute
    day_volume = spec.daily_volume * m / 390.0  # a 13:00 close trades about 210/390 of a day
    volume = np.maximum(
        1, np.round(day_volume * share * rng.lognormal(0.0, 0.35, m))
    ).astype(np.int64)
    seg_mid = 0.5 * (windows[:, :-1] + windows[:, 1:])
    seg_w = rng.random((m, sub)) + 0.05
    vwap = round_cents((seg_mid * seg_w).sum(axis=1) / seg_w.sum(axis=1))
    low, high = windows.min(axis=1), windows.max(axis=1)
    trade_size = 60.0 + 140.0 * rng.random(m)
    return {
        "timestamp": path.open_us + idx.astype(np.int64) * path.step_us,
        "open": windows[:, 0],
        "high": high,
        "low": low,
        "close": windows[:, -1],
        "volume": volume,
        "vwap": np.clip(vwap, low, high),
        "trade_count": np.maximum(1, np.round(volume / trade_size)).astype(np.int64),
    }
