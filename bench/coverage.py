"""What one coverage-ledger look at a stored day costs (the recovery sensor does up to
lookback x datasets of them per tick; the coverage asset one per stored day).

    ./run python bench/coverage.py

Baseline, measured in the same run: reading the whole day with ``ArchiveStore.read_day`` (what
a check reads). Prints the best of 5 of each and the ratios.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

from archive_platform.calendar import snapshot_times
from archive_platform.coverage import classify, read_stored
from archive_platform.datasets import BY_NAME
from archive_platform.schemas import ArchiveType
from archive_platform.sim import SimulatedMarket, default_symbols
from archive_platform.store import ArchiveStore

DAY = date(2025, 11, 26)


def best(f, n: int = 5) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return min(out)


def main() -> None:
    syms = default_symbols()
    table = SimulatedMarket().fetch_options(DAY, syms, snapshot_times(DAY))
    with tempfile.TemporaryDirectory() as tmp:
        store = ArchiveStore(Path(tmp) / "sim", kind="sim")
        store.write_day(ArchiveType.OPTIONS, DAY, table)
        ds = BY_NAME["options"]
        look = best(lambda: read_stored(store, ds, DAY, syms))
        full = best(lambda: store.read_day(ArchiveType.OPTIONS, DAY))
        seen = replace(classify("options", DAY, read_stored(store, ds, DAY, syms), None),
                       checked_at=datetime(2025, 11, 27, tzinfo=timezone.utc))
        again = best(lambda: read_stored(store, ds, DAY, syms, previous=seen))
    print(f"options day: {table.num_rows:,} rows, {len(syms)} symbols")
    print(f"ledger look (key columns + completeness rule): {look * 1000:8.1f} ms")
    print(f"baseline read_day (all columns):               {full * 1000:8.1f} ms  ({full / look:.1f}x the look)")
    print(f"unchanged files (fingerprint, no read):        {again * 1000:8.2f} ms  ({look / again:.0f}x faster than a look)")


if __name__ == "__main__":
    main()
