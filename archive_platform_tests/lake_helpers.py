"""Small tables and table definitions for the lake tests (independent of schemas.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive_platform.lake import TableDef

TS = pa.timestamp("us", tz="UTC")
D1 = date(2025, 11, 25)
D2 = date(2025, 11, 26)

OPTIONS = TableDef(
    "options",
    pa.schema([("snapshot_time", TS), ("symbol", pa.string()), ("strike", pa.float64()),
               ("right", pa.string()), ("bid", pa.float64()), ("version", pa.int64())]),
    directory="options", file_stem="options",
    dedup_key=("snapshot_time", "symbol", "strike", "right"),
    sort_key=("symbol", "snapshot_time", "strike", "right"), snapshot=True)

FLOW = TableDef(
    "uw_flow",
    pa.schema([("timestamp", TS), ("alert_id", pa.string()), ("premium", pa.float64())]),
    directory="uw_flow", file_stem="uw_flow", dedup_key=("alert_id",),
    sort_key=("timestamp", "alert_id"))

STOCKS = TableDef(
    "stocks_1m",
    pa.schema([("timestamp", TS), ("symbol", pa.string()), ("close", pa.float64())]),
    directory="stocks", file_stem="stocks_1m", dedup_key=("symbol", "timestamp"),
    sort_key=("symbol", "timestamp"))

KEY_SQL = "(snapshot_time, symbol, strike, \"right\")"


def snap_time(day: date, k: int) -> datetime:
    return datetime(day.year, day.month, day.day, 14, 45, tzinfo=timezone.utc) + timedelta(minutes=15 * k)


def snapshot(day: date, k: int, *, symbols: int = 3, strikes: int = 20, version: int = 0) -> pa.Table:
    """Snapshot ``k`` of ``day``: symbols x strikes x 2 rights; ``version`` marks a re-delivery."""
    n = symbols * strikes * 2
    i = np.arange(n)
    return pa.table({
        "snapshot_time": pa.array([snap_time(day, k)] * n, TS),
        "symbol": pa.array([f"S{s}" for s in i // (strikes * 2)]),
        "strike": pa.array(100.0 + (i // 2) % strikes),
        "right": pa.array(np.where(i % 2 == 0, "C", "P")),
        "bid": pa.array(1.0 + i + 1000 * version, pa.float64()),
        "version": pa.array(np.full(n, version, dtype=np.int64)),
    }, schema=OPTIONS.schema)


def day_table(day: date, snaps: int, version: int = 0, **kw) -> pa.Table:
    return pa.concat_tables([snapshot(day, k, version=version, **kw) for k in range(snaps)])


def flow(day: date, ids: list[int], premium: float = 1.0) -> pa.Table:
    base = datetime(day.year, day.month, day.day, 15, tzinfo=timezone.utc)
    return pa.table({
        "timestamp": pa.array([base + timedelta(seconds=i) for i in ids], TS),
        "alert_id": pa.array([f"a{i}" for i in ids]),
        "premium": pa.array([premium + i for i in ids], pa.float64()),
    }, schema=FLOW.schema)


def sort(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


def key_counts(table: pa.Table, keys: tuple[str, ...]) -> tuple[int, int]:
    """(rows, distinct keys)."""
    distinct = table.group_by(list(keys)).aggregate([]).num_rows
    return table.num_rows, distinct


def versions(table: pa.Table) -> set[int]:
    return set(pc.unique(table["version"]).to_pylist())
