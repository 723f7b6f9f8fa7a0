"""Stoikov's micro-price (S. Stoikov, "The micro-price: a high-frequency estimator of future
prices", Quantitative Finance 2018), estimated from 1-second features of EARLIER data.

States x = (spread in ticks s in 1..max_spread_ticks, imbalance bin i in 0..n-1) with the
imbalance I = Qb / (Qb + Qa) = (imbalance_1 + 1) / 2 and i = min(floor(I n), n - 1). From each
grid second to the next (same series) we count, per state x: Q[x, y] = P(next state y and the mid
did not move), T[x, y] = P(next state y and the mid moved), R[x, k] = P(the mid moved by k),
k in {-1, -1/2, +1/2, +1} ticks (larger moves are dropped). The data are symmetrised (i -> n-1-i,
dM -> -dM). Then G1 = (1 - Q)^-1 R K, B = (1 - Q)^-1 T and the adjustment is
g* = sum_{j=0..iterations} B^j G1 (Stoikov uses 6 iterations). micro-price = mid + g*(x).

The ``micro_price`` column of ``orderbook_features`` is the simpler first-order form; these
functions give the full estimate when a tick size and a training period are at hand.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from archive_platform.analysis.candles import to_polars

COLUMNS = ("exchange", "symbol", "timestamp", "mid", "spread", "imbalance_1")


def _states(df: pl.DataFrame, tick: float, bins: int, max_spread: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.rint(df["spread"].fill_null(np.nan).to_numpy() / tick)
    imb = (df["imbalance_1"].fill_null(np.nan).to_numpy() + 1) / 2
    i = np.minimum(np.floor(imb * bins), bins - 1)
    ok = (s >= 1) & (s <= max_spread) & ~np.isnan(i)
    x = np.where(ok, (np.nan_to_num(s) - 1) * bins + np.nan_to_num(i), -1).astype(np.int64)
    return x, ok


def fit_micro_price(features, *, tick: float, imbalance_bins: int = 10, max_spread_ticks: int = 2,
                    iterations: int = 6) -> pl.DataFrame:
    """The adjustment table (spread_ticks, imbalance_bin, g) from features of a training period."""
    if tick <= 0:
        raise ValueError(f"tick must be > 0, got {tick}")
    df = to_polars(features, COLUMNS, "features").sort("exchange", "symbol", "timestamp")
    x, ok = _states(df, tick, imbalance_bins, max_spread_ticks)
    mid = df["mid"].fill_null(np.nan).to_numpy()
    same = (df["exchange"] == df["exchange"].shift(-1)) & (df["symbol"] == df["symbol"].shift(-1))
    same = same.fill_null(False).to_numpy()[:-1]
    k = np.rint((mid[1:] - mid[:-1]) / (tick / 2))
    use = same & ok[:-1] & ok[1:] & (np.abs(np.nan_to_num(k, nan=9)) <= 2)
    n = imbalance_bins
    m = n * max_spread_ticks
    x0, x1, k = x[:-1][use], x[1:][use], k[use].astype(np.int64)
    mirror = lambda v: (v // n) * n + (n - 1 - v % n)  # noqa: E731 - same spread, flipped imbalance
    x0, x1, k = np.concatenate([x0, mirror(x0)]), np.concatenate([x1, mirror(x1)]), np.concatenate([k, -k])
    total = np.bincount(x0, minlength=m).astype(np.float64)
    if total.sum() == 0:
        raise ValueError("fit_micro_price: no consecutive seconds with a spread of 1..max_spread_ticks ticks")
    denom = np.where(total > 0, total, 1.0)
    moved = k != 0
    q = np.bincount(x0[~moved] * m + x1[~moved], minlength=m * m).reshape(m, m) / denom[:, None]
    t = np.bincount(x0[moved] * m + x1[moved], minlength=m * m).reshape(m, m) / denom[:, None]
    kk = np.array([-2, -1, 1, 2])
    r = np.stack([np.bincount(x0[k == v], minlength=m) for v in kk], axis=1) / denom[:, None]
    inv = np.linalg.pinv(np.eye(m) - q)
    g1 = inv @ r @ (kk * tick / 2)
    b = inv @ t
    g, term = g1.copy(), g1
    for _ in range(iterations):
        term = b @ term
        g += term
    return pl.DataFrame({"spread_ticks": np.arange(m) // n + 1, "imbalance_bin": np.arange(m) % n,
                         "g": np.where(total > 0, g, np.nan)}).with_columns(pl.col("g").fill_nan(None))


def apply_micro_price(features, table: pl.DataFrame, *, tick: float, imbalance_bins: int = 10) -> pl.Series:
    """mid + g*(state) per row of ``features``; null where the state is not in ``table``."""
    df = to_polars(features, COLUMNS, "features")
    max_spread = int(table["spread_ticks"].max())
    fitted = int(table["imbalance_bin"].max()) + 1
    if imbalance_bins != fitted:  # states would index the wrong rows of g: wrong prices, no error
        raise ValueError(f"apply_micro_price: the table was fitted with imbalance_bins={fitted}, "
                         f"got imbalance_bins={imbalance_bins}")
    x, ok = _states(df, tick, imbalance_bins, max_spread)
    g = table.sort("spread_ticks", "imbalance_bin")["g"].fill_null(np.nan).to_numpy()
    adj = np.where(ok, g[np.maximum(x, 0)], np.nan)
    return pl.Series("stoikov_micro_price", df["mid"].fill_null(np.nan).to_numpy() + adj).fill_nan(None)
