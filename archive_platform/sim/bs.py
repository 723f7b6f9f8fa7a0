"""Vectorised Black-Scholes prices and greeks (no dividends), the one pricing model of the sim.

Conventions: ``t`` in years of 365 days, ``sigma`` annualised, theta per calendar day, vega per
one volatility point (0.01), gamma per $1 move of the underlying.
"""

from __future__ import annotations

import math

import numpy as np

# libm erfc, exact in both tails (NumPy has no erf and SciPy is not a dependency)
_erfc = np.frompyfunc(math.erfc, 1, 1)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, elementwise."""
    x = np.asarray(x, dtype=float)
    return 0.5 * _erfc(-x * _INV_SQRT2).astype(float)


def norm_pdf(x: np.ndarray) -> np.ndarray:
    return _INV_SQRT2PI * np.exp(-0.5 * np.asarray(x, dtype=float) ** 2)


def price_and_greeks(
    s: np.ndarray, k: np.ndarray, t: np.ndarray, sigma: np.ndarray, r: float, is_call: np.ndarray
) -> dict[str, np.ndarray]:
    """Black-Scholes price, delta, gamma, theta (per day), vega (per vol point), elementwise."""
    s, k, t, sigma = (np.asarray(a, dtype=float) for a in (s, k, t, sigma))
    sqrt_t = np.sqrt(t)
    sig_sqrt_t = sigma * sqrt_t
    d1 = (np.log(s / k) + (r + 0.5 * sigma * sigma) * t) / sig_sqrt_t
    d2 = d1 - sig_sqrt_t
    # each right priced from its own tail so deep out-of-the-money prices keep their digits
    sign = np.where(is_call, 1.0, -1.0)
    nd1, nd2 = norm_cdf(sign * d1), norm_cdf(sign * d2)
    pdf1 = norm_pdf(d1)
    disc_k = k * np.exp(-r * t)
    price = np.maximum(sign * (s * nd1 - disc_k * nd2), 0.0)
    delta = sign * nd1
    gamma = pdf1 / (s * sig_sqrt_t)
    decay = -s * pdf1 * sigma / (2.0 * sqrt_t)
    theta = (decay - sign * r * disc_k * nd2) / 365.0
    vega = s * pdf1 * sqrt_t / 100.0
    return {"price": price, "delta": delta, "gamma": gamma, "theta": theta, "vega": vega}
