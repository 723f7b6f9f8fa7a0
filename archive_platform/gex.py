"""Gamma exposure from option chains (pure): per-strike GEX and the gamma flip.

Definitions (vendor's API documentation), "naive GEX", calls +, puts -): a contract's dollar gamma
per 1 % move of the underlying is ``gamma * OI * 100 * S * S * 0.01``; dealers are assumed long
calls and short puts, so call GEX is >= 0 and put GEX <= 0, and net = call + put. Units: the
change of the dealers' dollar delta (USD) for a 1 % move of the underlying: gamma is delta per
1 USD, a 1 % move is ``0.01 * S`` USD and one contract's delta is worth ``100 * S`` USD, hence
``gamma * (0.01 * S) * 100 * S`` per contract (the "dollar gamma per 1 %" of e.g.
https://squeezemetrics.com/monitor/download/pdf/white_paper.pdf and
https://perfiliev.com/blog/how-to-calculate-gamma-exposure-and-zero-gamma-level/).

Contracts that expired before the snapshot's session date (ET) are left out: they carry no
gamma, and a vendor that still lists them reports a stale open interest. Contracts expiring on
the session date itself (0DTE) are live until the close and are included.
"""

from __future__ import annotations

import math

import polars as pl
import pyarrow as pa

from archive_platform.schemas import GEX_SCHEMA, OPTIONS_SCHEMA

_KEY = ["snapshot_time", "symbol", "strike"]


def compute_gex(options: pa.Table) -> pa.Table:
    """Options table (canonical options schema) -> gex table: one row per snapshot, symbol, strike.

    Sums over expiries. Null gamma or open interest count as 0. ``timestamp`` is the snapshot's
    timestamp (the latest row timestamp of that symbol's snapshot, equal to the snapshot instant
    for the simulated market), ``underlying_price`` the one on that latest row; ``et_offset`` and
    ``source`` are carried over from the options rows.
    """
    missing = [f.name for f in OPTIONS_SCHEMA if f.name not in options.column_names]
    if missing:
        raise ValueError(f"compute_gex: options table lacks columns {', '.join(missing)}")
    if options.num_rows == 0:
        return GEX_SCHEMA.empty_table()
    df = pl.from_arrow(options.select([f.name for f in OPTIONS_SCHEMA]))
    # session date (ET) of the snapshot from its own et_offset; expired contracts dropped
    naive = pl.col("snapshot_time").dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    session_day = (naive + pl.duration(minutes=pl.col("et_offset"))).dt.date()
    df = df.filter(pl.col("expiry") >= session_day)
    if df.height == 0:
        return GEX_SCHEMA.empty_table()
    s = pl.col("underlying_price")
    dollar_gamma = (
        pl.col("gamma").fill_null(0.0).fill_nan(0.0)
        * pl.col("open_interest").fill_null(0).cast(pl.Float64)
        * 100.0 * s * s * 0.01
    )
    is_call = pl.col("right") == "C"
    per_snapshot = (
        df.sort("timestamp")
        .group_by(["snapshot_time", "symbol"])
        .agg(
            pl.col("timestamp").last().alias("snap_ts"),
            pl.col("underlying_price").last().alias("snap_price"),
        )
    )
    oi = pl.col("open_interest").fill_null(0)
    per_strike = df.group_by(_KEY).agg(
        dollar_gamma.filter(is_call).sum().alias("call_gex"),
        (-dollar_gamma.filter(~is_call)).sum().alias("put_gex"),
        oi.filter(is_call).sum().cast(pl.Int64).alias("call_open_interest"),
        oi.filter(~is_call).sum().cast(pl.Int64).alias("put_open_interest"),
        pl.col("et_offset").first(),
        pl.col("source").first(),
    )
    out = (
        per_strike.join(per_snapshot, on=["snapshot_time", "symbol"])
        .with_columns(
            # -0.0 sums would print as "-0.0" in a zero-put row; keep the sign clean
            pl.col("put_gex") + 0.0,
            (pl.col("call_gex") + pl.col("put_gex")).alias("net_gex"),
        )
        .rename({"snap_ts": "timestamp", "snap_price": "underlying_price"})
        .select([f.name for f in GEX_SCHEMA])
        .sort(["symbol", "snapshot_time", "strike"])
    )
    return out.to_arrow().cast(GEX_SCHEMA)


def gamma_flip(gex_rows: pa.Table) -> float | None:
    """Gamma flip by the cumulative-strike method (UW ``gex-levels.gamma_flip``).

    Input: the gex rows of ONE symbol at ONE snapshot. Strikes are sorted, per-strike net GEX
    summed cumulatively, and every sign change of the running sum is interpolated linearly
    between the two strikes; the crossing nearest the underlying price wins. None when the
    running sum never changes sign (a sum that is only 0, or touches 0 and turns back, does not). (Not the profile method, which re-prices gamma over a grid
    of hypothetical spots.)
    """
    if gex_rows.num_rows == 0:
        return None
    cols = ["snapshot_time", "symbol", "strike", "net_gex", "underlying_price"]
    df = pl.from_arrow(gex_rows.select(cols))
    groups = df.select(pl.struct("snapshot_time", "symbol").n_unique()).item()
    if groups != 1:
        raise ValueError(
            f"gamma_flip: expected rows of one symbol at one snapshot, got {groups} groups"
        )
    df = (
        df.group_by("strike")
        .agg(pl.col("net_gex").sum(), pl.col("underlying_price").first())
        .sort("strike")
    )
    strikes = df["strike"].to_list()
    cum = df["net_gex"].cum_sum().to_list()
    spot = df["underlying_price"][0]
    # A flip is a change of sign of the running sum. Zeros alone are not one: leading strikes
    # without open interest (running sum 0, then positive) or a sum that touches zero and turns
    # back have no flip. Between two nonzero sums of opposite sign at adjacent strikes the
    # crossing is interpolated linearly; when the sum is exactly 0 on strikes between them, those
    # strikes are the crossings.
    best: float | None = None
    last: int | None = None  # index of the last nonzero, non-NaN running sum
    for j, c in enumerate(cum):
        if c is None or math.isnan(c) or c == 0.0:
            continue
        if last is not None and (cum[last] < 0) != (c < 0):
            if j == last + 1:
                k0, k1, c0 = strikes[last], strikes[j], cum[last]
                crossings = [k0 + (k1 - k0) * (-c0) / (c - c0)]
            else:
                crossings = [strikes[i] for i in range(last + 1, j) if cum[i] == 0.0]
            for cross in crossings:
                if best is None or abs(cross - spot) < abs(best - spot):
                    best = cross
        last = j
    return None if best is None or math.isnan(best) else float(best)
