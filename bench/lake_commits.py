"""Helper of bench/lake.py: one writer process committing small batches, printing latencies."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive_platform.lake import Lake, TableDef  # noqa: E402

TS = pa.timestamp("us", tz="UTC")
OPT = TableDef("options", pa.schema([("snapshot_time", TS), ("symbol", pa.string()), ("strike", pa.float64()),
                                     ("bid", pa.float64())]), "options", "options",
               ("snapshot_time", "symbol", "strike"), snapshot=True)
FLOW = TableDef("uw_flow", pa.schema([("timestamp", TS), ("alert_id", pa.string()), ("premium", pa.float64())]),
                "uw_flow", "uw_flow", ("alert_id",))
DAY = date(2025, 11, 26)


def batch(who: str, i: int) -> tuple[TableDef, pa.Table]:
    t = datetime(2025, 11, 26, 15, tzinfo=timezone.utc) + timedelta(seconds=i)
    if who == "flow":
        return FLOW, pa.table({"timestamp": pa.array([t] * 50, TS), "alert_id": [f"f{i}-{j}" for j in range(50)],
                               "premium": [float(j) for j in range(50)]}, schema=FLOW.schema)
    off = 0 if who == "a" else 10_000
    return OPT, pa.table({"snapshot_time": pa.array([t + timedelta(seconds=off)] * 1000, TS),
                          "symbol": ["S"] * 1000, "strike": [float(j) for j in range(1000)],
                          "bid": [1.0] * 1000}, schema=OPT.schema)


def main(root: str, who: str, n: int) -> None:
    with Lake(root) as lake:
        lake.ensure_table(OPT)
        lake.ensure_table(FLOW)
        whos = ["a", "b", "flow"] if who == "all" else [who]
        for i in range(n):
            for w in whos:
                td, b = batch(w, i)
                t = time.perf_counter()
                lake.append(td, DAY, b)
                print(f"{time.perf_counter() - t:.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
