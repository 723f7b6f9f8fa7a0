"""The simulated account: executions from one documented rule, and the IV rank series.

Trading rule (per symbol in ``SimConfig.trade_symbols``): ``trade_minutes_before_close`` before
the close, look at the move from the previous close. Down by more than
``trade_move_threshold``: BUY the put closest to -0.30 delta of the first expiry at least five
days out. Up by more than the threshold: SELL the call closest to +0.30 delta of that expiry.
Otherwise no order. The order size (1-10 contracts) is drawn per symbol-day; orders of two or
more contracts fill in two executions, 1.5 s and 4 s after the decision, each at the quote then
(buys pay the ask, sells hit the bid). Commission per contract, at least $1 per execution.
"""

from __future__ import annotations

import numpy as np

from archive_platform.sim.chain import atm_iv, quote
from archive_platform.sim.day import DayBundle, occ_symbol
from archive_platform.sim.rng import stable_hex, stream
from archive_platform.sim.underlying import daily_series, day_index, round_cents, sample

_MIN_DAYS_TO_EXPIRY = 5.0
_TARGET_DELTA = 0.30
IV_RANK_TENOR_YEARS = 30.0 / 365.0  # iv in iv_rank is the 30-day ATM IV


def simulate_trades(seed: int, b: DayBundle) -> list[dict]:
    """The account's executions on one symbol-day (rows with schema column names)."""
    spec, cfg, path, chain = b.spec, b.config, b.path, b.chain
    decision = b.close_us - cfg.trade_minutes_before_close * 60_000_000
    if decision < path.open_us:
        return []
    s = float(round_cents(sample(path, path.price, np.array([decision])))[0])
    move = s / path.prev_close - 1.0
    if abs(move) <= cfg.trade_move_threshold:
        return []
    buy_put = move < 0
    days_left = (chain.expiry_close_us - decision) / 86_400e6
    eligible = days_left >= _MIN_DAYS_TO_EXPIRY
    first = days_left[eligible].min() if eligible.any() else days_left.max()
    cand = np.flatnonzero((days_left == first) & (chain.is_call != buy_put))
    q0 = quote(spec, cfg, path, chain, np.full(len(cand), decision), cand)
    target = -_TARGET_DELTA if buy_put else _TARGET_DELTA
    j = int(cand[np.argmin(np.abs(q0["delta"] - target))])

    key = b.day.isoformat()
    rng = stream(seed, spec.symbol, key, "trades")
    qty = int(rng.integers(1, 11))
    fills = [qty] if qty < 2 else [qty // 2, qty - qty // 2]
    times = np.array([decision + 1_500_000, decision + 4_000_000][: len(fills)], dtype=np.int64)
    qf = quote(spec, cfg, path, chain, times, np.full(len(fills), j))
    prices = qf["ask"] if buy_put else qf["bid"]
    order_id = str(100_000 + int(stable_hex(seed, spec.symbol, key, "order")[:8], 16) % 900_000)
    contract = occ_symbol(spec.symbol, chain.expiry[j], chain.is_call[j], chain.strike[j])
    rows = []
    for n, (t, qn, px) in enumerate(zip(times, fills, prices)):
        h = stable_hex(seed, spec.symbol, key, "exec", n)
        rows.append({
            "timestamp": int(t),
            "exec_id": f"{h[:8]}.{h[8:16]}.01.01",  # the shape of an IB execId
            "order_id": order_id,
            "symbol": spec.symbol,
            "contract": contract,
            "sec_type": "OPT",
            "expiry": chain.expiry[j],
            "strike": float(chain.strike[j]),
            "right": "C" if chain.is_call[j] else "P",
            "side": "BUY" if buy_put else "SELL",
            "quantity": float(qn),
            "price": float(px),
            "commission": round(max(1.0, cfg.commission_per_contract * qn), 2),
        })
    return rows


def iv_rank_at(seed: int, b: DayBundle, t_us: np.ndarray) -> dict[str, np.ndarray]:
    """30-day ATM IV, IV rank and IV percentile against the previous ``iv_rank_window`` sessions.

    Before the open the IV is the previous close's, after the close the day's close; in between
    it follows the intraday IV level. rank = (iv - min) / (max - min) * 100 over the window and
    the current value; percentile = share of window days with a lower IV, in percent.
    """
    spec, cfg, path = b.spec, b.config, b.path
    t_us = np.asarray(t_us, dtype=np.int64)
    inside = np.clip(t_us, path.open_us, b.close_us)
    level = np.where(
        t_us < path.open_us,
        path.prev_iv,
        np.where(t_us > b.close_us, path.close_iv, sample(path, path.iv, inside)),
    )
    iv = atm_iv(level, IV_RANK_TENOR_YEARS, spec.vol)
    i = day_index(b.day)
    hist_level = daily_series(seed, spec, cfg.anchor_day).iv[max(0, i - cfg.iv_rank_window) : i]
    hist = atm_iv(hist_level, IV_RANK_TENOR_YEARS, spec.vol)
    if len(hist) == 0:
        hist = iv[:1]
    lo = np.minimum(hist.min(), iv)
    hi = np.maximum(hist.max(), iv)
    rank = np.where(hi > lo, (iv - lo) / np.where(hi > lo, hi - lo, 1.0) * 100.0, 50.0)
    pct = (hist[None, :] < iv[:, None]).mean(axis=1) * 100.0
    return {"iv": iv, "iv_rank": rank, "iv_percentile": pct}

