"""Stoikov's micro-price estimator on chains with a known answer (issue 10)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from archive_platform.analysis.microprice import apply_micro_price, fit_micro_price

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def frame(mids, spreads, imbalances, symbol="BTCUSDT") -> pl.DataFrame:
    n = len(mids)
    return pl.DataFrame({"exchange": "sim", "symbol": symbol,
                         "timestamp": [T0 + timedelta(seconds=i) for i in range(n)],
                         "mid": np.asarray(mids, float), "spread": np.asarray(spreads, float),
                         "imbalance_1": np.asarray(imbalances, float)})


def test_two_state_chain_by_hand():
    # L (imbalance -0.5, bin 0) and H (+0.5, bin 1), spread 1 tick (0.01):
    # from L: stay (mid unchanged) or go to H with the mid down half a tick, each with p = 1/2;
    # from H the mirror image. Then (1-Q)^-1 = 2, G1 = 2 * 1/2 * (-/+ 0.005), B swaps L and H,
    # and g* = G1 (1 - 1 + 1 - 1 + 1 - 1 + 1) = G1.
    states = ["L", "L", "H", "H"] * 25 + ["L"]
    mids, m = [], 100.0
    for a, b in zip([None, *states[:-1]], states):
        if a == "L" and b == "H":
            m -= 0.005
        elif a == "H" and b == "L":
            m += 0.005
        mids.append(m)
    f = frame(mids, [0.01] * len(states), [-0.5 if s == "L" else 0.5 for s in states])
    table = fit_micro_price(f, tick=0.01, imbalance_bins=2, max_spread_ticks=1)
    assert table.rows() == [(1, 0, pytest.approx(-0.005)), (1, 1, pytest.approx(0.005))]
    micro = apply_micro_price(f.head(3), table, tick=0.01, imbalance_bins=2)
    assert micro.to_list() == pytest.approx([100 - 0.005, 100 - 0.005, 99.995 + 0.005])
    # the default of 10 bins on a 2-bin table read the wrong rows of g (or none): refused
    with pytest.raises(ValueError, match=r"fitted with imbalance_bins=2, got imbalance_bins=10"):
        apply_micro_price(f.head(3), table, tick=0.01)


def test_estimate_is_antisymmetric_in_the_imbalance():
    rng = np.random.default_rng(2)
    n = 5000
    imb = rng.uniform(-1, 1, n)
    spread = rng.choice([0.01, 0.02], n)
    step = np.where(rng.random(n) < 0.2, np.sign(imb) * 0.005, 0.0)  # the move after second t
    mid = 100 + np.concatenate([[0.0], np.cumsum(step[:-1])])
    table = fit_micro_price(frame(mid, spread, imb), tick=0.01, imbalance_bins=6)
    g = table.sort("spread_ticks", "imbalance_bin")["g"].to_numpy().reshape(2, 6)
    assert g == pytest.approx(-g[:, ::-1], abs=1e-12)
    assert (g[:, -1] > 0).all() and (g[:, 0] < 0).all()  # more bids than asks: the price tends up
    with pytest.raises(ValueError, match="tick must be > 0"):
        fit_micro_price(frame(mid, spread, imb), tick=0)
