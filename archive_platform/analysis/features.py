"""Order-book and microstructure features on a 1-second grid per (exchange, symbol).

Input: ``orderbook_l2`` snapshots (bid_px/bid_sz/ask_px/ask_sz lists, best level first) and
optionally ``crypto_trades`` (side = the aggressor's side). The grid instant t (whole UTC seconds)
shows the book AS OF t (the last snapshot with event_time <= t); the flow features (velocity, OFI,
volumes, Kyle's lambda input, spreads of trades) sum or average the events of (t - 1 s, t], the
same right alignment as the candles. The grid runs from the first snapshot's second to the last.
Formulas and units: ``FEATURE_DICTIONARY`` below and docs/analysis.md.

Vectorised with numpy on padded (snapshots x levels) arrays; the only Python loop is over the
(exchange, symbol) series.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa

from archive_platform.analysis.candles import US, to_polars

BOOK_COLUMNS = ("exchange", "symbol", "event_time", "bid_px", "bid_sz", "ask_px", "ask_sz")
TRADE_COLUMNS = ("exchange", "symbol", "event_time", "price", "size", "side")
DEPTH_BPS = (10, 25, 50)
IMBALANCE_LEVELS = (1, 5, 10)

FEATURE_DICTIONARY: dict[str, tuple[str, str]] = {
    "timestamp": ("UTC instant", "grid second t; book state as of t, flows over (t-1 s, t]"),
    "best_bid": ("quote currency", "best bid price Pb"),
    "best_ask": ("quote currency", "best ask price Pa"),
    "mid": ("quote currency", "mid price M = (Pb + Pa) / 2"),
    "spread": ("quote currency", "absolute spread S = Pa - Pb"),
    "spread_bps": ("bps", "relative spread S / M * 1e4"),
    **{f"imbalance_{k}": ("ratio in [-1, 1]",
                          f"depth imbalance over the top {k} level(s): (sum Qb - sum Qa) / (sum Qb + sum Qa)")
       for k in IMBALANCE_LEVELS},
    "weighted_mid": ("quote currency",
                     "size-weighted mid of the best level (the proposal's weighted mid): (Pb*Qa + Pa*Qb) / (Qb + Qa)"),
    "micro_price": ("quote currency",
                    "imbalance-adjusted micro-price: M + (S / 2) * imbalance_5, the first-order (linear in "
                    "imbalance) form of Stoikov's micro-price with depth-aware imbalance over 5 levels; "
                    "Stoikov's full Markov-chain estimate is microprice.fit_micro_price / apply_micro_price"),
    **{f"depth_{side}_{x}bps": ("base units",
                                f"{side} size resting within {x} bps of the mid "
                                f"({'Pb >= M*(1-x/1e4)' if side == 'bid' else 'Pa <= M*(1+x/1e4)'})")
       for x in DEPTH_BPS for side in ("bid", "ask")},
    **{f"liquidity_{x}bps": ("base units", f"liquidity score: depth_bid_{x}bps + depth_ask_{x}bps")
       for x in DEPTH_BPS},
    **{f"{side}_wall_{what}": (unit, f"{what} of the largest {side} level whose size exceeds 10x the mean "
                                     "size of the top 10 bid and top 10 ask levels (null: no wall)")
       for side in ("bid", "ask") for what, unit in (("price", "quote currency"), ("size", "base units"))},
    **{f"{side}_walls": ("count", f"number of {side} levels that are walls") for side in ("bid", "ask")},
    "book_velocity": ("level changes per second",
                      "number of (side, level) slots whose price or size differ from the previous snapshot, "
                      "summed over the snapshots of (t-1 s, t]"),
    "updates": ("snapshots per second", "book snapshots with event_time in (t-1 s, t]"),
    "ofi": ("base units", "order-flow imbalance (Cont, Kukanov, Stoikov 2014): sum over snapshots n in "
                          "(t-1 s, t] of 1{Pb_n>=Pb_n-1}Qb_n - 1{Pb_n<=Pb_n-1}Qb_n-1 - 1{Pa_n<=Pa_n-1}Qa_n "
                          "+ 1{Pa_n>=Pa_n-1}Qa_n-1 (best level)"),
    "volume": ("base units", "traded size in (t-1 s, t]"),
    "signed_volume": ("base units", "buyer-initiated minus seller-initiated size in (t-1 s, t]"),
    "kyle_lambda": ("quote currency per base unit",
                    "Kyle's lambda: OLS slope of dM_t = M_t - M_t-1 on signed_volume_t over the last "
                    "kyle_window (default 60) grid seconds; null when the window is incomplete or flat"),
    "vpin": ("ratio in [0, 1]",
             "VPIN (Easley, Lopez de Prado, O'Hara 2012): sum |V_buy - V_sell| / (n V) over the last n=50 "
             "volume buckets of size V completed at or before t; buy share of each 1 s trade bar by "
             "bulk-volume classification Phi(dP / sigma_dP)"),
    "effective_spread_bps": ("bps", "size-weighted mean over trades in (t-1 s, t] of 2 d (p - m) / m * 1e4; "
                                    "d = +1 buy / -1 sell aggressor, m = mid as of the trade"),
    "realized_spread_bps": ("bps", "size-weighted mean over trades in (t-1 s, t] of 2 d (p - m_5s) / m * 1e4; "
                                   "m_5s = mid as of trade time + 5 s"),
}


def _levels(df: pl.DataFrame, col: str, n: int) -> np.ndarray:
    """(rows, n) float array of a list column, NaN where the book has fewer levels (or a null list)."""
    arr = df[col].to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = pl.from_arrow(arr.offsets).to_numpy()  # a null list has equal offsets: no levels
    flat = pl.from_arrow(arr.values).cast(pl.Float64).to_numpy()  # (polars: no pandas import)
    lens = np.diff(offsets)
    if len(lens) and np.all(lens == n):
        return flat[offsets[0]:offsets[-1]].reshape(len(lens), n)
    out = np.full((len(lens), n), np.nan)
    row = np.repeat(np.arange(len(lens)), lens)
    pos = np.arange(offsets[0], offsets[-1]) - np.repeat(offsets[:-1], lens)
    keep = pos < n
    out[row[keep], pos[keep]] = flat[offsets[0]:offsets[-1]][keep]
    return out


def _nansum(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), 0.0, a).sum(axis=1)


def _changed(a: np.ndarray) -> np.ndarray:
    """Per row: slots whose value differs from the previous row (NaN equals NaN)."""
    d = ~((a[1:] == a[:-1]) | (np.isnan(a[1:]) & np.isnan(a[:-1])))
    return np.concatenate([np.zeros((1, a.shape[1]), bool), d])


def _state(bp, bs, ap, asz, wall_multiple: float) -> dict[str, np.ndarray]:
    bb, ba, qb, qa = bp[:, 0], ap[:, 0], bs[:, 0], asz[:, 0]
    mid = (bb + ba) / 2
    spread = ba - bb
    out = {"best_bid": bb, "best_ask": ba, "mid": mid, "spread": spread, "spread_bps": spread / mid * 1e4}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in IMBALANCE_LEVELS:
            b, a = _nansum(bs[:, :k]), _nansum(asz[:, :k])
            out[f"imbalance_{k}"] = (b - a) / (b + a)
        out["weighted_mid"] = (bb * qa + ba * qb) / (qb + qa)
        out["micro_price"] = mid + spread / 2 * out["imbalance_5"]
        for x in DEPTH_BPS:
            lo, hi = (mid * (1 - x / 1e4))[:, None], (mid * (1 + x / 1e4))[:, None]
            b = _nansum(np.where(bp >= lo, bs, 0.0))
            a = _nansum(np.where(ap <= hi, asz, 0.0))
            out[f"depth_bid_{x}bps"], out[f"depth_ask_{x}bps"], out[f"liquidity_{x}bps"] = b, a, b + a
        mean10 = np.nanmean(np.concatenate([bs[:, :10], asz[:, :10]], axis=1), axis=1)
        for side, px, sz in (("bid", bp, bs), ("ask", ap, asz)):
            mask = sz > wall_multiple * mean10[:, None]
            big = np.where(mask, sz, -np.inf)
            j = big.argmax(axis=1)
            has = mask.any(axis=1)
            rows = np.arange(len(j))
            out[f"{side}_wall_price"] = np.where(has, px[rows, j], np.nan)
            out[f"{side}_wall_size"] = np.where(has, sz[rows, j], np.nan)
            out[f"{side}_walls"] = mask.sum(axis=1)
    return out


def _per_second(idx: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(idx, weights=values, minlength=n)[:n]


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    # math.erf through a ufunc: one C call per 1 s bar (<= 86,400 a day), no SciPy dependency.
    return 0.5 * (1.0 + np.frompyfunc(math.erf, 1, 1)(x / math.sqrt(2.0)).astype(np.float64))


def kyle_lambda(dm: np.ndarray, q: np.ndarray, window: int) -> np.ndarray:
    """Rolling OLS slope of dm on q over ``window`` points (rolling sums; NaN when undefined)."""
    if window < 1:
        raise ValueError(f"kyle_lambda: window must be >= 1 grid second, got {window}")
    out = np.full(len(dm), np.nan)
    ok = ~(np.isnan(dm) | np.isnan(q))
    dm, q = np.where(ok, dm, 0.0), np.where(ok, q, 0.0)
    if len(dm) < window:
        return out

    def roll(x):
        c = np.concatenate([[0.0], np.cumsum(x)])
        return c[window:] - c[:-window]

    n = roll(ok.astype(np.float64))
    sq, sm, sqq, sqm = roll(q), roll(dm), roll(q * q), roll(q * dm)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = sqq / n - (sq / n) ** 2
        cov = sqm / n - (sq / n) * (sm / n)
        lam = np.where((n == window) & (var > 1e-15 * np.maximum(sqq / n, 1e-300)), cov / var, np.nan)
    out[window - 1:] = lam
    return out


def vpin(bar_sec: np.ndarray, bar_volume: np.ndarray, bar_dp: np.ndarray, bucket_volume: float,
         n_buckets: int = 50, sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(completion second, VPIN) of every volume bucket from the n-th on (bulk-volume classification).

    ``sigma`` is the standard deviation of dP that scales the classification; by default the one of
    ``bar_dp`` itself, which uses the whole input (pass one from earlier data to stay causal)."""
    if n_buckets < 1:
        raise ValueError(f"vpin: n_buckets must be >= 1, got {n_buckets}")
    if sigma is None or not sigma > 0:
        sigma = np.std(bar_dp, ddof=1) if len(bar_dp) > 1 else 0.0
    frac = _normal_cdf(bar_dp / sigma) if sigma > 0 else np.full(len(bar_dp), 0.5)
    cv = np.concatenate([[0.0], np.cumsum(bar_volume)])
    cb = np.concatenate([[0.0], np.cumsum(bar_volume * frac)])
    k = int(cv[-1] // bucket_volume) if bucket_volume > 0 else 0
    if k < n_buckets:
        return np.empty(0, np.int64), np.empty(0)
    edges = bucket_volume * np.arange(1, k + 1)
    buy = np.diff(np.concatenate([[0.0], np.interp(edges, cv, cb)]))  # buy share is flat within a bar
    oi = np.abs(2 * buy - bucket_volume)
    c = np.concatenate([[0.0], np.cumsum(oi)])
    values = (c[n_buckets:] - c[:-n_buckets]) / (n_buckets * bucket_volume)
    done = bar_sec[np.minimum(np.searchsorted(cv[1:], edges - 1e-9 * bucket_volume), len(bar_sec) - 1)]
    return done[n_buckets - 1:], values


def _series(bk: pl.DataFrame):
    """Zero-copy slices of each (exchange, symbol) series in time (then update_id) order; sorts
    only when the input is not already in that order (copying 20-level lists is the costly part)."""
    order = ["exchange", "symbol", "event_time", *(["update_id"] if "update_id" in bk.columns else [])]
    key = bk.select(pl.col("exchange").rle_id().alias("e"), pl.col("symbol").rle_id().alias("s"),
                    pl.col("event_time").dt.epoch("us").alias("t"),
                    (pl.col("update_id").fill_null(-1) if "update_id" in bk.columns else pl.lit(0)).alias("u"))
    e, s, t, u = (key[c].to_numpy() for c in ("e", "s", "t", "u"))
    new = np.ones(len(t), bool)
    new[1:] = (e[1:] != e[:-1]) | (s[1:] != s[:-1])
    starts = np.flatnonzero(new)
    same = ~new[1:]
    ordered = np.all(~same | (t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (u[1:] >= u[:-1])))
    if not ordered or bk.select(["exchange", "symbol"])[starts].n_unique() != len(starts):
        bk = bk.sort(order, nulls_last=False)
        return _series(bk)
    ends = np.append(starts[1:], len(t))
    return [bk.slice(int(a), int(b - a)) for a, b in zip(starts, ends)]


def orderbook_features(books, trades=None, *, levels: int = 20, kyle_window: int = 60,
                       vpin_buckets: int = 50, vpin_bucket_volume: float | None = None,
                       vpin_sigma: float | None = None, horizon_s: int = 5,
                       wall_multiple: float = 10.0) -> pl.DataFrame:
    """The 1-second feature grid of every (exchange, symbol) in ``books`` (see FEATURE_DICTIONARY).

    ``vpin_bucket_volume`` defaults to the series' total traded volume / (10 * vpin_buckets), so the
    50-bucket window spans about a tenth of the input, and ``vpin_sigma`` (the standard deviation
    of the 1 s trade bars' price changes, which scales the bulk-volume classification) to that of
    the input: both use the whole input. Pass both from earlier data (``trade_bar_stats``) to stay
    causal.
    """
    for name, value in (("levels", levels), ("kyle_window", kyle_window), ("vpin_buckets", vpin_buckets)):
        if value < 1:
            raise ValueError(f"orderbook_features: {name} must be >= 1, got {value}")
    bk = to_polars(books, BOOK_COLUMNS, "orderbook_l2")
    tr = None if trades is None else to_polars(trades, TRADE_COLUMNS, "crypto_trades")
    # a null side is not a side either (is_in gives null for it, which a filter drops)
    bad = tr.filter(~pl.col("side").is_in(["buy", "sell"]).fill_null(False)) if tr is not None else None
    if bad is not None and bad.height:
        raise ValueError(f"crypto_trades: side must be 'buy' or 'sell', got {bad['side'].unique().to_list()}")
    frames = []
    for g in _series(bk):
        exchange, symbol = g["exchange"][0], g["symbol"][0]
        t = g["event_time"].dt.epoch("us").to_numpy()
        sec = (t - 1) // US + 1
        bp, bs, ap, asz = (_levels(g, c, levels) for c in ("bid_px", "bid_sz", "ask_px", "ask_sz"))
        grid = np.arange(sec[0], sec[-1] + 1)
        n = len(grid)
        slot = sec - sec[0]
        at = np.searchsorted(sec, grid, side="right") - 1
        cols = {"timestamp": grid * US}
        cols.update(_state(bp[at], bs[at], ap[at], asz[at], wall_multiple))  # state only at grid rows
        changes = sum(_changed(a).sum(axis=1) for a in (bp, bs, ap, asz)).astype(np.float64)
        cols["book_velocity"] = _per_second(slot, changes, n)
        cols["updates"] = _per_second(slot, np.ones(len(slot)), n).astype(np.int64)
        pb, qb, pa, qa = bp[:, 0], bs[:, 0], ap[:, 0], asz[:, 0]
        e = np.zeros(len(t))
        e[1:] = ((pb[1:] >= pb[:-1]) * qb[1:] - (pb[1:] <= pb[:-1]) * qb[:-1]
                 - (pa[1:] <= pa[:-1]) * qa[1:] + (pa[1:] >= pa[:-1]) * qa[:-1])
        cols["ofi"] = _per_second(slot, np.nan_to_num(e), n)
        cols.update(_trade_features(tr, exchange, symbol, t, sec, cols["mid"], grid, (pb + pa) / 2,
                                    kyle_window, vpin_buckets, vpin_bucket_volume, vpin_sigma, horizon_s))
        frame = pl.DataFrame(cols).with_columns(pl.lit(exchange).alias("exchange"), pl.lit(symbol).alias("symbol"))
        frames.append(frame)
    names = ["exchange", "symbol", *FEATURE_DICTIONARY]
    if not frames:
        raise ValueError("orderbook_l2: no snapshots")
    out = pl.concat(frames).select(names)
    floats = [c for c in names[3:] if out.schema[c] == pl.Float64]
    return out.with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")),
                            *(pl.col(c).fill_nan(None) for c in floats))


def trade_bar_stats(trades) -> pl.DataFrame:
    """Per (exchange, symbol): ``volume`` (the traded size) and ``dp_sigma``, the standard deviation
    (ddof 1) of the price change between consecutive 1-second trade bars (a bar's price is its last
    trade, the first bar's change is 0), as ``vpin`` computes it. From earlier data (e.g. the
    previous day), they make VPIN's bucket size and bulk-volume classification causal."""
    tr = to_polars(trades, TRADE_COLUMNS, "crypto_trades")
    sec = (pl.col("event_time").dt.epoch("us") - 1) // US + 1
    bars = (tr.sort("exchange", "symbol", "event_time", maintain_order=True)
            .group_by("exchange", "symbol", sec.alias("sec"), maintain_order=True)
            .agg(pl.col("price").last(), pl.col("size").sum().alias("v"))
            .filter(pl.col("v") > 0).sort("exchange", "symbol", "sec"))
    return bars.group_by("exchange", "symbol", maintain_order=True).agg(
        pl.col("v").sum().cast(pl.Float64).alias("volume"),
        pl.col("price").diff().fill_null(0.0).std(ddof=1).alias("dp_sigma"))


def _trade_features(tr, exchange, symbol, book_t, book_sec, grid_mid, grid, snap_mid,
                    kyle_window, vpin_buckets, vpin_bucket_volume, vpin_sigma,
                    horizon_s) -> dict[str, np.ndarray]:
    n = len(grid)
    nan = np.full(n, np.nan)
    names = ("volume", "signed_volume", "kyle_lambda", "vpin", "effective_spread_bps", "realized_spread_bps")
    if tr is None:
        return dict.fromkeys(names, nan)
    g = tr.filter((pl.col("exchange") == exchange) & (pl.col("symbol") == symbol)).sort("event_time")
    t = g["event_time"].dt.epoch("us").to_numpy()
    sec = (t - 1) // US + 1
    inside = (sec >= grid[0]) & (sec <= grid[-1])
    p, q = g["price"].to_numpy()[inside], g["size"].to_numpy()[inside]
    d = np.where(g["side"].to_numpy()[inside] == "buy", 1.0, -1.0)
    t, slot = t[inside], (sec[inside] - grid[0])
    volume, signed = _per_second(slot, q, n), _per_second(slot, d * q, n)
    dm = np.concatenate([[np.nan], np.diff(grid_mid)])
    out = {"volume": volume, "signed_volume": signed, "kyle_lambda": kyle_lambda(dm, signed, kyle_window)}
    # VPIN on 1 s trade bars: price = last trade of the second
    has = volume > 0
    last_px = np.full(n, np.nan)
    seen, first = np.unique(slot[::-1], return_index=True)  # trades sorted: last trade per second
    last_px[seen] = p[::-1][first]
    bar_px = last_px[has]
    bar_dp = np.concatenate([[0.0], np.diff(bar_px)]) if has.any() else np.empty(0)
    size_v = vpin_bucket_volume or volume.sum() / (10 * vpin_buckets)
    done, values = vpin(grid[has], volume[has], bar_dp, size_v, vpin_buckets, vpin_sigma)
    v = np.full(n, np.nan)
    if len(values):
        pos = np.searchsorted(done, grid, side="right") - 1  # latest bucket completed at or before t
        v = np.where(pos >= 0, values[np.maximum(pos, 0)], np.nan)
    out["vpin"] = v
    # effective / realized spreads against the mid as of the trade and as of trade + horizon
    i0 = np.searchsorted(book_t, t, side="right") - 1
    i5 = np.searchsorted(book_t, t + horizon_s * US, side="right") - 1
    m0 = np.where(i0 >= 0, snap_mid[np.maximum(i0, 0)], np.nan)
    m5 = np.where((i5 >= 0) & (t + horizon_s * US <= book_t[-1]), snap_mid[np.maximum(i5, 0)], np.nan)
    for name, ref in (("effective_spread_bps", m0), ("realized_spread_bps", m5)):
        val = 2 * d * (p - ref) / m0 * 1e4
        ok = ~np.isnan(val)
        w = _per_second(slot[ok], q[ok], n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(w > 0, _per_second(slot[ok], (q * val)[ok], n) / w, np.nan)
    return out
