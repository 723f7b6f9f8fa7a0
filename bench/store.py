"""Benchmark: incremental snapshot appends vs rewriting the whole day file on every snapshot.

Data shaped like the original archive design's options archive: 56 underlyings x ~2,000 contracts, one snapshot
every 15 minutes (27 on a full day). Measures, in one run and in a temp dir:

* the store: ``append_snapshot`` time for snapshot 1 and the last snapshot, total, compaction;
* the naive baseline: read the day file, concat the new snapshot, dedup, sort, rewrite it
  (timed at snapshot 1 and at the last snapshot; the day file before the last one is
  prepared untimed).

Usage: .venv/bin/python bench/store.py [--symbols 56] [--contracts 2000] [--snapshots 27]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive_platform.calendar import et_offset_minutes, session  # noqa: E402
from archive_platform.schemas import ArchiveType, spec_for  # noqa: E402
from archive_platform.store import ArchiveStore  # noqa: E402
from archive_platform.store import files as F  # noqa: E402
from archive_platform.store.validate import dedup_and_sort, sort_canonical  # noqa: E402

DAY = date(2025, 11, 26)
SPEC = spec_for(ArchiveType.OPTIONS)


def build_snapshot(k: int, symbols: int, contracts: int, rng: np.random.Generator) -> pa.Table:
    """Snapshot ``k`` of the day: one row per contract (grain of the options archive)."""
    snap = session(DAY).open_utc + timedelta(minutes=15 * k)
    expiries = 8
    strikes = max(1, contracts // (2 * expiries))
    per = expiries * strikes * 2
    n = symbols * per
    i = np.arange(n)
    sym = np.array([f"SYM{s:02d}" for s in range(symbols)])[i // per]
    within = i % per
    expiry = np.array([DAY + timedelta(days=7 * (e + 1)) for e in range(expiries)])[within // (strikes * 2)]
    strike = 50.0 + 2.5 * ((within // 2) % strikes)
    right = np.where(within % 2 == 0, "C", "P")
    bid = np.round(rng.uniform(0.05, 40.0, n), 2)
    us = int(snap.timestamp() * 1_000_000)
    ts_type = SPEC.schema.field("timestamp").type
    cols = {
        "timestamp": pa.array(us + rng.integers(0, 2_000_000, n), pa.int64()).cast(ts_type),
        "snapshot_time": pa.array(np.full(n, us), pa.int64()).cast(ts_type),
        "symbol": pa.array(sym),
        "expiry": pa.array(expiry, pa.date32()),
        "strike": pa.array(strike),
        "right": pa.array(right),
        "bid": pa.array(bid),
        "ask": pa.array(bid + 0.05),
        "last": pa.array(bid + 0.02),
        "volume": pa.array(rng.integers(0, 5000, n)),
        "open_interest": pa.array(rng.integers(0, 50000, n)),
        "iv": pa.array(rng.uniform(0.1, 1.2, n)),
        "delta": pa.array(rng.uniform(-1, 1, n)),
        "gamma": pa.array(rng.uniform(0, 0.1, n)),
        "theta": pa.array(rng.uniform(-0.5, 0, n)),
        "vega": pa.array(rng.uniform(0, 0.5, n)),
        "underlying_price": pa.array(np.full(n, 100.0)),
        "et_offset": pa.array(np.full(n, et_offset_minutes(snap), dtype=np.int16)),
        "source": pa.array(np.full(n, "sim")),
    }
    return pa.Table.from_pydict(cols, schema=SPEC.schema)


def naive_rewrite(path: Path, batch: pa.Table) -> None:
    """The baseline: one file per day, read whole, merged, deduplicated and rewritten."""
    old = F.read_parquet(path).cast(SPEC.schema) if path.exists() else SPEC.schema.empty_table()
    F.write_table_atomic(path, dedup_and_sort(SPEC, pa.concat_tables([old, batch])))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=56)
    ap.add_argument("--contracts", type=int, default=2000)
    ap.add_argument("--snapshots", type=int, default=27)
    args = ap.parse_args(argv)
    last = args.snapshots
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    snaps = [build_snapshot(k, args.symbols, args.contracts, rng) for k in range(last)]
    rows = snaps[0].num_rows
    print(f"{args.symbols} symbols x {rows // args.symbols} contracts = {rows:,} rows per snapshot, "
          f"{last} snapshots ({rows * last:,} rows/day); data built in {time.perf_counter() - t0:.1f}s")

    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        store = ArchiveStore(Path(tmp) / "archive", kind="sim")
        append_times = [timed(lambda s=s: store.append_snapshot("options", DAY, s)) for s in snaps]
        parts_bytes = store.partition_bytes("options", DAY)
        compact = timed(lambda: store.compact_day("options", DAY))
        daily_bytes = store.partition_bytes("options", DAY)

        base = Path(tmp) / "naive" / "options_20251126.parquet"
        base.parent.mkdir(parents=True)
        naive_first = timed(lambda: naive_rewrite(base, snaps[0]))
        if last > 1:  # prepare the day as it stands before the last snapshot, untimed
            F.write_table_atomic(base, sort_canonical(SPEC, pa.concat_tables(snaps[:-1])))
            naive_last = timed(lambda: naive_rewrite(base, snaps[-1]))
        else:
            naive_last = naive_first

    def row(label: str, store_s: float, naive_s: float) -> str:
        return f"| {label:<28} | {store_s:>10.3f} | {naive_s:>10.3f} | {naive_s / store_s:>7.1f}x |"

    print()
    print(f"| {'seconds':<28} | {'store':>10} | {'naive':>10} | {'ratio':>8} |")
    print(f"|{'-' * 30}|{'-' * 12}|{'-' * 12}|{'-' * 10}|")
    print(row("append snapshot 1", append_times[0], naive_first))
    print(row(f"append snapshot {last}", append_times[-1], naive_last))
    print(f"| {'all appends (store)':<28} | {sum(append_times):>10.3f} | {'':>10} | {'':>8} |")
    print(f"| {'compaction (store)':<28} | {compact:>10.3f} | {'':>10} | {'':>8} |")
    print()
    print(f"parts on disk before compaction: {parts_bytes / 1e6:.1f} MB in {last} files; "
          f"daily file after: {daily_bytes / 1e6:.1f} MB")
    print("naive = read the day file, concat, dedup, sort, rewrite (no validation of old rows); "
          "store = validate the batch, write one part, check older parts' footers.")


if __name__ == "__main__":
    main()
