"""Builders of small valid tables for the store and view tests (independent of the store)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pyarrow as pa

from archive_platform.calendar import ET, et_offset_minutes, session
from archive_platform.schemas import ArchiveType, spec_for

HALF_DAY = date(2025, 11, 28)  # 13:00 ET close
FULL_DAY = date(2025, 11, 26)

_CHOICES = {
    "right": ["C", "P"],
    "option_type": ["CALL", "PUT"],
    "sentiment": ["BULLISH", "BEARISH", "NEUTRAL"],
    "side": ["BUY", "SELL"],
    "sec_type": ["OPT", "STK"],
    "trend": ["neutral"],  # market_regime: close = sma20 = sma50 in these rows
    "timeframe": ["5m", "15m", "1h"],  # candles
}
#: derived datasets' columns whose hard rules a plain counter would break
_FIXED = {"bars": lambda i: i + 1, "session_minutes": lambda i: i + 1,
          "iv_sessions": lambda i: 60, "is_empty": lambda i: False, "trade_count": lambda i: i + 1,
          # orderbook_features: ratios bounded by their definition
          "imbalance_1": lambda i: 0.5, "imbalance_5": lambda i: 0.5, "imbalance_10": lambda i: 0.5,
          "vpin": lambda i: 0.5}


def _value(name: str, typ: pa.DataType, i: int, day: date, ts: datetime, snap: datetime,
           source: str, tag: str):
    if name in ("timestamp", "event_time", "receive_time", "start"):  # crypto: event_time, gaps: start
        return ts
    if name == "end":
        return ts + timedelta(seconds=1)
    if name == "exchange":
        return "sim"
    if pa.types.is_list(typ):  # order-book levels
        return [float(i) + 0.25 + k for k in range(3)] if pa.types.is_floating(typ.value_type) else [1, 2, 3]
    if name == "snapshot_time":
        return snap
    if name == "et_offset":
        return et_offset_minutes(ts)
    if name == "source":
        return source
    if name in _CHOICES:
        return _CHOICES[name][i % len(_CHOICES[name])]
    if name in _FIXED:
        return _FIXED[name](i)
    if pa.types.is_string(typ):
        return f"{tag}{name}{i:05d}"
    if pa.types.is_floating(typ):
        return float(i) + 0.25
    if pa.types.is_integer(typ):
        return i
    if pa.types.is_date32(typ):
        return day + timedelta(days=30 + i % 3)
    if pa.types.is_boolean(typ):
        return i % 2 == 0
    if pa.types.is_timestamp(typ):  # other instants (first_bar, last_snapshot...)
        return ts
    raise AssertionError(f"no builder for {name}: {typ}")


def make_table(archive_type: str | ArchiveType, day: date, n: int, *, source: str = "sim",
               snapshot: datetime | None = None, tag: str = "", value_shift: float = 0.0) -> pa.Table:
    """``n`` valid rows of a type on ``day``: unique keys, timestamps inside the session.

    ``tag`` prefixes string values (so two tables have disjoint keys), ``value_shift`` changes
    the non-key floats (so a rewrite of the same keys is visible).
    """
    spec = spec_for(archive_type)
    s = session(day)
    snap = snapshot or s.open_utc
    keys = set(spec.dedup_key)
    cols: dict[str, list] = {f.name: [] for f in spec.schema}
    for i in range(n):
        ts = s.open_utc + timedelta(seconds=i % max(1, s.minutes * 60))
        for f in spec.schema:
            v = _value(f.name, f.type, i, day, ts, snap, source, tag)
            if pa.types.is_floating(f.type) and f.name not in keys and f.name not in _FIXED:
                v += value_shift
            cols[f.name].append(v)
    if "exchange" in cols and "side" in cols:  # crypto trades: the aggressor's side in lower case
        cols["side"] = [v.lower() for v in cols["side"]]
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in spec.schema}, schema=spec.schema)


def et(day: date, hh: int, mm: int) -> datetime:
    """An ET wall-clock instant of ``day``."""
    return datetime.combine(day, time(hh, mm), tzinfo=ET)


def iv_rank_rows(day: date, rows: list[tuple[int, str, float]], source: str = "sim") -> pa.Table:
    """iv_rank rows from (snapshot index, symbol, iv) triples; snapshot i is open + 15 min * i."""
    spec = spec_for(ArchiveType.IV_RANK)
    s = session(day)
    snaps = [s.open_utc + timedelta(minutes=15 * k) for k, _, _ in rows]
    return pa.table(
        {
            "timestamp": pa.array(snaps, spec.schema.field("timestamp").type),
            "snapshot_time": pa.array(snaps, spec.schema.field("snapshot_time").type),
            "symbol": [sym for _, sym, _ in rows],
            "iv": [iv for _, _, iv in rows],
            "iv_rank": [50.0 for _ in rows],
            "iv_percentile": pa.array([None] * len(rows), pa.float64()),
            "et_offset": pa.array([et_offset_minutes(t) for t in snaps], pa.int16()),
            "source": [source] * len(rows),
        },
        schema=spec.schema,
    )


def options_snapshot(day: date, k: int, symbols: int = 3, contracts: int = 4,
                     source: str = "sim", shift: float = 0.0) -> pa.Table:
    """Options rows of snapshot ``k`` (open + 15 min * k): ``symbols`` x ``contracts`` rows."""
    s = session(day)
    snap = s.open_utc + timedelta(minutes=15 * k)
    n = symbols * contracts
    t = make_table(ArchiveType.OPTIONS, day, n, source=source, snapshot=snap, value_shift=shift)
    spec = spec_for(ArchiveType.OPTIONS)
    sym = [f"SYM{i // contracts}" for i in range(n)]
    strike = [100.0 + (i % contracts) for i in range(n)]
    ts = pa.array([snap] * n, spec.schema.field("timestamp").type)
    t = t.set_column(t.schema.get_field_index("symbol"), spec.schema.field("symbol"), pa.array(sym))
    t = t.set_column(t.schema.get_field_index("strike"), spec.schema.field("strike"), pa.array(strike))
    t = t.set_column(t.schema.get_field_index("timestamp"), spec.schema.field("timestamp"), ts)
    return t


def sorted_rows(table: pa.Table, keys: list[str] | tuple[str, ...]) -> list[dict]:
    """Rows as dicts sorted by ``keys`` (for order-insensitive comparisons)."""
    return sorted(table.to_pylist(), key=lambda r: tuple(r[k] for k in keys))
