"""Option chains of one symbol-day: listed expiries and strikes, an IV surface, BS quotes.

The contract set is fixed for the day (strikes centred on the previous close, like a listing
that is set before the open), so open interest is constant within the day and every contract
exists in every snapshot of the day. Quotes are Black-Scholes prices at the path's price and
IV level at the instant asked, with a tick-rounded spread that widens away from the money.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from archive_platform import calendar as cal
from archive_platform.sim.bs import price_and_greeks
from archive_platform.sim.rng import stream
from archive_platform.sim.underlying import IntradayPath, round_cents, sample
from archive_platform.sim.universe import SimConfig, SymbolSpec

YEAR_SECONDS = 365.0 * 86400.0
_SKEW = 0.10  # IV change per standard deviation of moneyness (puts richer)
_SMILE = 0.015  # curvature per squared standard deviation
_TERM_MEAN_REVERSION_YEARS = 0.25  # IV of long expiries leans toward the long-run level
_STEP_MULTIPLES = (1, 2, 5, 10, 20, 25, 50, 100, 200, 500)


def listed_expiry(friday: date) -> date:
    """A Friday expiry moved to the previous session when the Friday is not a trading day."""
    d = friday
    while not cal.is_trading_day(d):
        d -= timedelta(days=1)
    return d


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def expiries_for(day: date, weeklies: int, monthlies: int) -> list[date]:
    """The next ``weeklies`` Friday expiries after ``day``, then ``monthlies`` more monthlies.

    Same-day (0DTE) expiries are left out: every listed contract has at least one night to go.
    """
    last_friday = cal.CALENDAR_END - timedelta(days=7)
    out: list[date] = []
    friday = day + timedelta(days=(4 - day.weekday()) % 7)
    while len(out) < weeklies:
        if friday > last_friday:
            raise ValueError(
                f"cannot list {weeklies} weekly expiries after {day.isoformat()}: the NYSE "
                f"calendar ends {cal.CALENDAR_END.isoformat()}"
            )
        exp = listed_expiry(friday)
        if exp > day:
            out.append(exp)
        friday += timedelta(days=7)
    y, m = day.year, day.month
    monthly: list[date] = []
    while len(monthly) < monthlies:
        if third_friday(y, m) > last_friday:
            raise ValueError(
                f"cannot list {monthlies} monthly expiries after {day.isoformat()}: the NYSE "
                f"calendar ends {cal.CALENDAR_END.isoformat()}"
            )
        exp = listed_expiry(third_friday(y, m))
        if exp > day and exp not in out and (not out or exp > out[-1]):
            monthly.append(exp)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out + monthly


def strike_spacing(spec: SymbolSpec, price: float) -> float:
    """The finest listed strike step for the price level."""
    if spec.index_etf:
        return 1.0
    if price < 25:
        return 0.5
    if price < 100:
        return 1.0
    if price < 250:
        return 2.5
    return 5.0


def strikes_for(spec: SymbolSpec, ref: float, half_width: float, max_n: int) -> np.ndarray:
    """Strikes around ``ref`` within ``ref*exp(+-half_width)``, at most ``max_n`` of them.

    The finest listed step is used while the band needs at most 1.5x ``max_n`` strikes, then
    coarser multiples (as far strikes are listed wider apart); the ``max_n`` strikes nearest the
    reference are kept, so the band may come out up to a third narrower than asked. A band that
    holds no listed strike at all gets the one nearest the reference: never an empty expiry.
    """
    base = strike_spacing(spec, ref)
    lo, hi = ref * np.exp(-half_width), ref * np.exp(half_width)
    for mult in _STEP_MULTIPLES:
        step = base * mult
        centre = max(round(ref / step), 1) * step
        n_lo = min(int(np.floor((centre - lo) / step)), int(round(centre / step)) - 1)
        n_hi = int(np.floor((hi - centre) / step))
        if n_lo + n_hi + 1 <= 1.5 * max_n:
            break
    if n_lo + n_hi + 1 < 1:
        # a band narrower than the step can miss every listed strike (a $10 stock, $0.5 step,
        # a 2 % band): list the one strike nearest the reference rather than none
        n_lo = n_hi = 0
    ks = centre + step * np.arange(-n_lo, n_hi + 1)
    nearest = np.sort(np.argsort(np.abs(ks - ref), kind="stable")[:max_n])
    return np.round(ks[nearest], 4)


@dataclass(frozen=True)
class DayChain:
    """The contracts of one symbol-day (aligned arrays) and their per-day random draws."""

    expiry: np.ndarray  # datetime64[D]
    expiry_close_us: np.ndarray  # int64, expiry session close (options stop trading)
    strike: np.ndarray
    is_call: np.ndarray
    open_interest: np.ndarray  # int64, constant within the day
    day_volume: np.ndarray  # float, contracts traded over the whole day
    spread_noise: np.ndarray
    last_u: np.ndarray  # where in [bid, ask] the last print sits
    sort_order: np.ndarray  # contract indices in (expiry, strike, right C<P) order


def build_day_chain(
    seed: int, spec: SymbolSpec, config: SimConfig, day: date, path: IntradayPath
) -> DayChain:
    """List the day's contracts and draw their open interest, volume and spread noise."""
    ref = path.prev_close
    open_s = path.open_us / 1e6
    exps, closes, strikes, calls = [], [], [], []
    for exp in expiries_for(day, config.weekly_expiries, config.monthly_expiries):
        close_s = cal.session(exp).close_utc.timestamp()
        t = (close_s - open_s) / YEAR_SECONDS
        half = min(config.moneyness_band, max(0.02, config.band_sd * path.prev_iv * np.sqrt(t)))
        ks = strikes_for(spec, ref, half, config.max_strikes_per_expiry)
        for is_call in (True, False):
            exps.append(np.full(len(ks), np.datetime64(exp, "D")))
            closes.append(np.full(len(ks), int(close_s) * 1_000_000, dtype=np.int64))
            strikes.append(ks)
            calls.append(np.full(len(ks), is_call))
    expiry = np.concatenate(exps)
    close_us = np.concatenate(closes)
    strike = np.concatenate(strikes)
    is_call = np.concatenate(calls)
    n = len(strike)
    rng = stream(seed, spec.symbol, day.isoformat(), "chain")
    t_open = (close_us - path.open_us) / 1e6 / YEAR_SECONDS
    z = np.log(strike / ref) / (path.prev_iv * np.sqrt(t_open))
    near = np.exp(-0.5 * (z / 1.3) ** 2)
    term = 1.0 / (1.0 + 8.0 * t_open)
    oi_scale = spec.daily_volume / 400.0
    oi = np.round(oi_scale * near * (0.3 + term) * rng.lognormal(0.0, 0.6, n)).astype(np.int64)
    turnover = 0.05 + 0.6 * near * term
    day_volume = oi * turnover * rng.lognormal(0.0, 0.5, n) + 3.0 * near
    return DayChain(
        expiry=expiry,
        expiry_close_us=close_us,
        strike=strike,
        is_call=is_call,
        open_interest=oi,
        day_volume=day_volume,
        spread_noise=rng.uniform(0.7, 1.3, n),
        last_u=rng.random(n),
        sort_order=np.lexsort((~is_call, strike, expiry)),
    )


def atm_iv(level: np.ndarray, t: np.ndarray, long_run: float) -> np.ndarray:
    """ATM IV for maturity ``t`` (years): today's level, leaning to the long run as t grows."""
    w = np.exp(-np.asarray(t, dtype=float) / _TERM_MEAN_REVERSION_YEARS)
    return w * level + (1.0 - w) * long_run


def surface_iv(level: np.ndarray, s: np.ndarray, k: np.ndarray, t: np.ndarray, long_run: float):
    """Skewed, term-structured IV (and the moneyness in SDs): skew and smile in SD units."""
    atm = atm_iv(level, t, long_run)
    z = np.clip(np.log(k / s) / (atm * np.sqrt(t)), -4.0, 4.0)
    return np.clip(atm * (1.0 - _SKEW * z + _SMILE * z * z), 0.4 * atm, 4.0 * atm), z


def tick_size(price: np.ndarray) -> np.ndarray:
    """Penny ticks under $3, nickels above (the penny-pilot rule of liquid names)."""
    return np.where(price < 3.0, 0.01, 0.05)


def quote(
    spec: SymbolSpec,
    config: SimConfig,
    path: IntradayPath,
    chain: DayChain,
    t_us: np.ndarray,
    contract: np.ndarray,
) -> dict[str, np.ndarray]:
    """Quotes and greeks of contracts ``contract`` at instants ``t_us`` (aligned arrays)."""
    t_us = np.asarray(t_us, dtype=np.int64)
    s = round_cents(sample(path, path.price, t_us))
    level = sample(path, path.iv, t_us)
    k = chain.strike[contract]
    is_call = chain.is_call[contract]
    t = (chain.expiry_close_us[contract] - t_us) / 1e6 / YEAR_SECONDS
    iv, z = surface_iv(level, s, k, t, spec.vol)
    g = price_and_greeks(s, k, t, iv, config.rate, is_call)
    mid = g["price"]
    tick = tick_size(mid)
    # spreads widen with the price and away from the money (in SDs of moneyness)
    raw = chain.spread_noise[contract] * (0.01 + 0.015 * mid) * (1 + 0.5 * np.abs(z))
    width = np.maximum(tick, raw)
    bid = np.maximum(0.0, np.floor((mid - width / 2) / tick) * tick)
    ask = np.maximum(np.ceil((mid + width / 2) / tick) * tick, bid + tick)
    share = sample(path, path.volume_share, t_us)
    volume = np.floor(chain.day_volume[contract] * share).astype(np.int64)
    steps = np.round((ask - bid) / tick)
    last = bid + np.round(chain.last_u[contract] * steps) * tick
    return {
        "underlying_price": s,
        "bid": np.round(bid, 2),
        "ask": np.round(ask, 2),
        "last": np.where(volume > 0, np.round(last, 2), np.nan),
        "volume": volume,
        "iv": iv,
        "delta": g["delta"],
        "gamma": g["gamma"],
        "theta": g["theta"],
        "vega": g["vega"],
        "t_years": t,
        "mid": mid,
    }
