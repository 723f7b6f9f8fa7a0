"""IV rank derived from the archive itself (the IB option-snapshot collector), for users without an IV-rank vendor.

Per symbol and day the *ATM IV* is the mean IV of the call and put at the strike nearest the
underlying, on the expiry nearest 30 calendar days out, in the latest snapshot at or before the
instant (quotes with a positive IV only: an IV of 0 is a quote without one). IV rank over the
closing ATM IVs of the previous 60 sessions plus the current one (the simulated market's rule:
61 values, unlike market_regime's 60 sessions ending on the day) is
``(iv - min) / (max - min) * 100`` and the IV percentile the share of those values below the
current one. With fewer than 30 such values (the current one included), or a flat history, the
rank is 50 (the IB option-snapshot collector's rule) and the percentile null.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timezone

import polars as pl
import pyarrow as pa

from archive_platform import calendar
from archive_platform.schemas import IV_RANK_SCHEMA, ArchiveType
from archive_platform.storage import Storage

LOOKBACK_SESSIONS = 60
MIN_HISTORY = 30
TARGET_DTE = 30
_COLS = ["snapshot_time", "symbol", "expiry", "strike", "right", "iv", "underlying_price"]


def atm_iv(options: pl.DataFrame, at: datetime | None = None) -> pl.DataFrame:
    """Per symbol: the ATM IV of the latest snapshot at or before ``at`` (None: the last one)."""
    # an IV of 0 is a quote without an IV (the options rules flag it), not a 0 % volatility:
    # left out, as daily_iv does, so it cannot halve the call/put mean
    df = options.filter(pl.col("iv").is_not_null() & (pl.col("iv") > 0))
    if at is not None:
        # any aware instant (an ET one too): compared in UTC, the column's time zone
        df = df.filter(pl.col("snapshot_time") <= at.astimezone(timezone.utc))
    if df.height == 0:
        return pl.DataFrame(schema={"symbol": pl.String, "atm_iv": pl.Float64})
    last = df.group_by("symbol").agg(pl.col("snapshot_time").max().alias("_t"))
    df = df.join(last, on="symbol").filter(pl.col("snapshot_time") == pl.col("_t"))
    df = df.with_columns(
        dte=(pl.col("expiry") - pl.col("snapshot_time").dt.date()).dt.total_days(),
        dist=(pl.col("strike") - pl.col("underlying_price")).abs(),
    ).with_columns(dte_gap=(pl.col("dte") - TARGET_DTE).abs())
    best_exp = df.group_by("symbol").agg(pl.col("dte_gap").min().alias("_g"))
    df = df.join(best_exp, on="symbol").filter(pl.col("dte_gap") == pl.col("_g"))
    best_k = df.group_by("symbol").agg(pl.col("dist").min().alias("_d"))
    df = df.join(best_k, on="symbol").filter(pl.col("dist") == pl.col("_d"))
    return df.group_by("symbol").agg(pl.col("iv").mean().alias("atm_iv"))


def rank_and_percentile(current: float, history: Sequence[float]) -> tuple[float, float | None]:
    """the IB option-snapshot collector's IV rank (50 under MIN_HISTORY sessions or on a flat history) and IV percentile."""
    if len(history) < MIN_HISTORY:
        return 50.0, None
    lo, hi = min(history), max(history)
    rank = 50.0 if hi == lo else (current - lo) / (hi - lo) * 100.0
    pct = 100.0 * sum(1 for h in history if h < current) / len(history)
    return max(0.0, min(100.0, rank)), pct


def derive_iv_rank(
    options_store: Storage, day: date, symbols: Sequence[str], instants: Sequence[datetime]
) -> pa.Table:
    """The iv_rank rows of ``day`` at ``instants`` from the options archive (one row per symbol per instant).

    ``source`` is ``sim`` when derived from a simulated archive (simulated data stays labelled
    as such), else ``derived``.
    """
    label = "sim" if getattr(options_store, "kind", "live") == "sim" else "derived"
    today = pl.from_arrow(options_store.read_day(ArchiveType.OPTIONS, day, columns=_COLS))
    history: dict[str, list[float]] = {}  # oldest first: the last entry is the previous close
    for d in calendar.last_trading_days(LOOKBACK_SESSIONS, as_of=calendar.previous_trading_day(day)):
        past = pl.from_arrow(options_store.read_day(ArchiveType.OPTIONS, d, columns=_COLS))
        for sym, iv in atm_iv(past).iter_rows():
            history.setdefault(sym, []).append(iv)
    rows = []
    for at in instants:
        # before the day's first snapshot (e.g. 07:00 ET) the latest known ATM IV is the
        # previous session's close: point in time, nothing from later in the day
        current = {sym: hist[-1] for sym, hist in history.items()}
        current.update(dict(atm_iv(today, at).iter_rows()))
        for sym, iv in sorted(current.items()):
            if symbols and sym not in symbols:
                continue
            hist = history.get(sym, [])
            rank, pct = rank_and_percentile(iv, hist + [iv])
            rows.append({
                "timestamp": at, "snapshot_time": at, "symbol": sym, "iv": iv,
                "iv_rank": rank, "iv_percentile": pct,
                "et_offset": calendar.et_offset_minutes(at), "source": label,
            })
    return pa.Table.from_pylist(rows, schema=IV_RANK_SCHEMA)
