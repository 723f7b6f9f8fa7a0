"""One symbol-day of the simulated market, built once and shared by all six archive types.

The bundle is cached (``lru_cache``) so that fetching options, gex, flow and trades for the same
day does not redo the path and the listing; every value in it is a pure function of (seed,
symbol spec, config, day), so results never depend on the cache's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache

import numpy as np

from archive_platform import calendar as cal
from archive_platform.sim.chain import DayChain, build_day_chain
from archive_platform.sim.underlying import IntradayPath, intraday_path
from archive_platform.sim.universe import SimConfig, SymbolSpec


@dataclass(frozen=True)
class DayBundle:
    spec: SymbolSpec
    config: SimConfig
    day: date
    path: IntradayPath
    chain: DayChain
    close_us: int


@lru_cache(maxsize=256)
def day_path(seed: int, spec: SymbolSpec, config: SimConfig, day: date) -> IntradayPath:
    """The intraday path of ``spec.symbol`` on ``day`` (bars need nothing else)."""
    return intraday_path(seed, spec, config, day)


@lru_cache(maxsize=256)
def day_bundle(seed: int, spec: SymbolSpec, config: SimConfig, day: date) -> DayBundle:
    """The path and the listed chain of ``spec.symbol`` on ``day`` (NotATradingDay otherwise)."""
    path = day_path(seed, spec, config, day)
    chain = build_day_chain(seed, spec, config, day, path)
    close_us = int(cal.session(day).close_utc.timestamp()) * 1_000_000
    return DayBundle(spec, config, day, path, chain, close_us)


def to_us(ts: datetime) -> int:
    """A timezone-aware instant as integer microseconds since the Unix epoch."""
    if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
        raise ValueError(f"naive datetime {ts!r}: pass a timezone-aware instant (e.g. UTC)")
    delta = ts.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(
        microsecond=us % 1_000_000
    )


def session_instants(day: date, instants: Sequence[datetime], what: str) -> np.ndarray:
    """Snapshot instants as microseconds, each required inside ``day``'s regular session."""
    s = cal.session(day)
    lo, hi = to_us(s.open_utc), to_us(s.close_utc)
    out = np.array([to_us(t) for t in instants], dtype=np.int64)
    bad = [t for t, u in zip(instants, out) if not lo <= u <= hi]
    if bad:
        raise ValueError(
            f"{what}: snapshot instants outside the {day.isoformat()} session "
            f"({s.open_utc.isoformat()}..{s.close_utc.isoformat()}): "
            + ", ".join(t.isoformat() for t in bad[:5])
        )
    return np.unique(out)


def day_instants(day: date, instants: Sequence[datetime], what: str) -> np.ndarray:
    """Instants as microseconds, each required to fall on the ET calendar date ``day``."""
    cal.require_trading_day(day)
    out = np.array([to_us(t) for t in instants], dtype=np.int64)
    bad = [t for t in instants if cal.market_date(t) != day]
    if bad:
        raise ValueError(
            f"{what}: instants not on the ET date {day.isoformat()}: "
            + ", ".join(t.isoformat() for t in bad[:5])
        )
    return np.unique(out)


def et_offsets(t_us: np.ndarray) -> np.ndarray:
    """int16 ET offsets (minutes) of instants, looked up once per distinct instant."""
    uniq, inv = np.unique(np.asarray(t_us, dtype=np.int64), return_inverse=True)
    offs = np.array([cal.et_offset_minutes(from_us(int(u))) for u in uniq], dtype=np.int16)
    return offs[inv] if len(uniq) else np.zeros(0, dtype=np.int16)


def occ_symbol(symbol: str, expiry: np.datetime64, is_call: bool, strike: float) -> str:
    """OCC-style option symbol without padding, as Unusual Whales writes it (SPY251128C00600000)."""
    d = expiry.astype("datetime64[D]").item()
    return f"{symbol}{d:%y%m%d}{'C' if is_call else 'P'}{int(round(strike * 1000)):08d}"
