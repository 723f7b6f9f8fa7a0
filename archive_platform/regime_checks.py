"""Checks of the stored derived daily datasets against their inputs (pure: no Dagster).

Each ``reconcile_*`` recomputes what a stored partition must hold from the stored inputs with a
plain computation of its own (not the ``regime`` function that wrote it) and returns
``(problems, metadata)``: no problems = the partition agrees with its inputs. The Dagster layer
(``defs/derived_assets.py``) reads the inputs through the store and turns the result into an
asset check.
"""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pyarrow as pa

from archive_platform import calendar, regime

TOL = 1e-9
MAX_LISTED = 10


def _close(a, b, tol: float = TOL) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def _compare(stored: dict[str, dict], want: dict[str, dict], what: str) -> tuple[list[str], dict]:
    """Per symbol, every column of ``want`` equals the stored one (floats within TOL)."""
    diffs = []
    missing = sorted(set(want) - set(stored))
    extra = sorted(set(stored) - set(want))
    for sym in sorted(set(want) & set(stored)):
        for col, value in want[sym].items():
            got = stored[sym].get(col)
            same = _close(got, value) if isinstance(value, float) or isinstance(got, float) else got == value
            if not same:
                diffs.append(f"{sym} {col}: stored {got!r}, {what} gives {value!r}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} symbols of the input have no row: {missing[:MAX_LISTED]}")
    if extra:
        problems.append(f"{len(extra)} rows have no input: {extra[:MAX_LISTED]}")
    if diffs:
        problems.append(f"{len(diffs)} values differ from the input")
    meta = {"symbols_compared": len(set(want) & set(stored)), "differences": diffs[:MAX_LISTED]}
    return problems, meta


def _by_symbol(table) -> dict[str, dict]:
    df = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    return {r["symbol"]: r for r in df.to_dicts()}


def reconcile_daily_bars(rows: pa.Table, stocks_1m: pa.Table, day: date) -> tuple[list[str], dict]:
    """OHLC, volume (= sum of the session's minute volumes), trade count and bar count per symbol."""
    s = calendar.session(day)
    bars = pl.from_arrow(stocks_1m).filter(
        (pl.col("timestamp") >= s.open_utc) & (pl.col("timestamp") < s.close_utc)).sort("timestamp")
    want = {}
    for (sym,), g in bars.group_by(["symbol"]):
        want[sym] = {"open": g["open"][0], "high": g["high"].max(), "low": g["low"].min(),
                     "close": g["close"][-1], "volume": int(g["volume"].sum()),
                     # no minute with a trade count (a vendor without one): null, not 0
                     "trade_count": (int(g["trade_count"].sum())
                                     if g["trade_count"].null_count() < g.height else None),
                     "bars": g.height,
                     "session_minutes": s.minutes}
    return _compare(_by_symbol(rows), want, "stocks_1m")


def reconcile_daily_iv(rows: pa.Table, options: pa.Table, day: date) -> tuple[list[str], dict]:
    """Per symbol: the snapshot count, and the close = the front ATM IV of the last snapshot that
    has one (nearest expiry >= 7 days out, the strike(s) nearest the underlying, calls and puts
    averaged), as an OHLC close over the snapshots with a value."""
    df = pl.from_arrow(options).filter(pl.col("iv").is_not_null() & (pl.col("iv") > 0)).with_columns(
        tau=(pl.col("expiry") - pl.lit(day)).dt.total_days()).filter(pl.col("tau") >= 1)
    want = {}
    for (sym,), g in df.group_by(["symbol"]):
        close = None
        for t in sorted(g["snapshot_time"].unique().to_list(), reverse=True):
            front = g.filter((pl.col("snapshot_time") == t) & (pl.col("tau") >= regime.FRONT_MIN_DAYS))
            if front.height:
                front = front.filter(pl.col("expiry") == front["expiry"].min())
                dist = (front["strike"] - front["underlying_price"]).abs()
                close = float(front.filter(dist == dist.min())["iv"].mean())
                break
        want[sym] = {"snapshots": g["snapshot_time"].n_unique(), "front_close": close}
    return _compare(_by_symbol(rows), want, "options")


def reconcile_market_regime(rows, daily_bars, daily_iv, vix: pa.Table, day: date) -> tuple[list[str], dict]:
    """Per symbol: close, iv, vix_close and SMA20 from the inputs; IV rank and percentile with seed
    004's rules (50 under 30 sessions of history or on a flat history) over the 60-session window.

    ``daily_bars`` and ``daily_iv`` are polars frames with ``date`` covering the window.
    """
    window = calendar.trading_days(calendar.add_trading_days(day, -(regime.IV_WINDOW - 1)), day)
    last20 = window[-regime.SMA_SHORT:]
    v = pl.from_arrow(vix).filter(pl.col("symbol") == "VIX").sort("snapshot_time")
    vix_close = float(v["level"][-1]) if v.height else None
    ivs = daily_iv.filter(pl.col("date").is_in(window) & pl.col("iv30_close").is_not_null())
    want = {}
    syms = set(daily_bars.filter(pl.col("date") == day)["symbol"].to_list())
    for sym in sorted(syms | set(ivs.filter(pl.col("date") == day)["symbol"].to_list())):
        b = daily_bars.filter(pl.col("symbol") == sym)
        today = b.filter(pl.col("date") == day)["close"]
        closes20 = b.filter(pl.col("date").is_in(last20))["close"].drop_nulls()
        h = ivs.filter(pl.col("symbol") == sym)
        iv = h.filter(pl.col("date") == day)["iv30_close"]
        iv = float(iv[0]) if len(iv) else None
        hist = h["iv30_close"].to_list()
        rank = pct = None
        if iv is not None:
            lo, hi = min(hist), max(hist)
            if len(hist) < regime.IV_MIN_HISTORY or hi == lo:
                rank = pct = 50.0
            else:
                rank = (iv - lo) / (hi - lo) * 100.0
                pct = 100.0 * sum(x < iv for x in hist) / len(hist)
        want[sym] = {
            "close": float(today[0]) if len(today) else None, "iv": iv, "vix_close": vix_close,
            "iv_sessions": len(hist), "iv_rank": rank, "iv_percentile": pct,
            "sma20": float(closes20.mean()) if len(closes20) == regime.SMA_SHORT else None,
        }
    problems, meta = _compare(_by_symbol(rows), want, "daily_bars/daily_iv/vix")
    meta["window"] = f"{window[0]}..{window[-1]} ({len(window)} sessions)"
    return problems, meta
