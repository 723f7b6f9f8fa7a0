"""Flow alerts in the shape of Unusual Whales alerts, drawn from large trades on the chain.

Per symbol-day: a Poisson number of alerts (scaled by the symbol's share volume), at uniform
microsecond instants in (open, close], each on a listed contract picked with probability
proportional to its day volume, priced from that contract's quote at that instant: ask-side
prints pay the ask, bid-side prints hit the bid, mid prints trade at the mid rounded to a cent.
"""

from __future__ import annotations

import uuid

import numpy as np

from archive_platform.sim.chain import quote
from archive_platform.sim.day import DayBundle, occ_symbol
from archive_platform.sim.rng import stable_digest, stream

_SIDES = np.array(["ask", "bid", "mid"])


def alert_id(seed: int, symbol: str, day: str, i: int) -> str:
    """A stable UUID-shaped alert id (UW ids are UUIDs)."""
    return str(uuid.UUID(bytes=stable_digest(seed, symbol, day, "alert", i, size=16)))


def sentiment(is_call: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Ask-side calls and bid-side puts are BULLISH, the mirror BEARISH, mid prints NEUTRAL."""
    bull = (is_call & (side == "ask")) | (~is_call & (side == "bid"))
    bear = (is_call & (side == "bid")) | (~is_call & (side == "ask"))
    return np.where(bull, "BULLISH", np.where(bear, "BEARISH", "NEUTRAL"))


def simulate_alerts(seed: int, b: DayBundle) -> dict[str, np.ndarray]:
    """All alerts of one symbol-day as aligned arrays (sorted by time), schema column names."""
    spec, chain, path = b.spec, b.chain, b.path
    key = b.day.isoformat()
    rng = stream(seed, spec.symbol, key, "flow")
    minutes = (b.close_us - path.open_us) / 60e6
    rate = b.config.alerts_per_symbol_day * np.clip(spec.daily_volume / 2e7, 0.5, 3.0)
    n = int(rng.poisson(rate * minutes / 390.0))
    span = b.close_us - path.open_us
    t = np.sort(path.open_us + 1 + rng.integers(0, span, n, dtype=np.int64))
    weights = chain.day_volume / chain.day_volume.sum()
    c = rng.choice(len(weights), size=n, p=weights)
    side = _SIDES[rng.choice(3, size=n, p=[0.5, 0.35, 0.15])]
    size = np.maximum(10, np.round(rng.lognormal(5.0, 1.0, n))).astype(np.int64)
    sweep = rng.random(n) < 0.35
    floor = ~sweep & (rng.random(n) < 0.2)
    trade_count = np.where(sweep, rng.integers(2, 9, n), rng.integers(1, 4, n))

    q = quote(spec, b.config, path, chain, t, c)
    mid = np.round((q["bid"] + q["ask"]) / 2, 2)
    price = np.where(side == "ask", q["ask"], np.where(side == "bid", q["bid"], mid))
    # a print at a zero bid is not a trade; such alerts pay the ask instead
    side = np.where(price <= 0, "ask", side)
    price = np.where(price <= 0, q["ask"], price)
    premium = np.round(price * size * 100.0, 2)
    ask_share = np.where(side == "ask", 1.0, np.where(side == "bid", 0.0, 0.5))
    oi = chain.open_interest[c]
    volume = np.maximum(q["volume"], size)
    is_call = chain.is_call[c]
    ratio = np.where(oi > 0, volume / np.maximum(oi, 1), np.nan)
    rule = np.where(
        floor,
        "FloorTradeLargeCap",
        np.where(sweep & (side == "ask"), "RepeatedHitsAscendingFill",
                 np.where(sweep, "RepeatedHitsDescendingFill", "RepeatedHits")),
    )
    return {
        "timestamp": t,
        "alert_id": np.array([alert_id(seed, spec.symbol, key, i) for i in range(n)], dtype=object),
        "symbol": np.full(n, spec.symbol, dtype=object),
        "option_chain": np.array(
            [occ_symbol(spec.symbol, chain.expiry[j], chain.is_call[j], chain.strike[j])
             for j in c],
            dtype=object,
        ),
        "strike": chain.strike[c],
        "expiration": chain.expiry[c],
        "option_type": np.where(is_call, "CALL", "PUT").astype(object),
        "sentiment": sentiment(is_call, side).astype(object),
        "premium": premium,
        "ask_side_premium": np.round(premium * ask_share, 2),
        "bid_side_premium": np.round(premium * (1.0 - ask_share), 2),
        "price": price,
        "underlying_price": q["underlying_price"],
        "volume": volume.astype(np.int64),
        "size": size,
        "open_interest": oi,
        "volume_oi_ratio": ratio,
        "trade_count": trade_count.astype(np.int64),
        "iv": q["iv"],
        "delta": q["delta"],
        "has_sweep": sweep,
        "has_floor": floor,
        "alert_rule": rule.astype(object),
        # UW flags alerts whose volume beats open interest or that are very large
        "is_unusual": (volume > oi) | (premium >= 500_000.0),
    }
