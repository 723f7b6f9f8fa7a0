"""Subprocess side of the lake crash and concurrency tests: ``python -m
archive_platform_tests.lake_worker <root> <scenario> [args]``."""

from __future__ import annotations

import glob
import json
import os
import sys
from datetime import timedelta

import pyarrow as pa

from archive_platform.lake import Lake, connect
from archive_platform_tests.lake_helpers import (
    D1, D2, FLOW, KEY_SQL, OPTIONS, day_table, flow, snapshot)


def run(root: str, scenario: str, args: list[str]) -> None:
    with Lake(root) as lake:
        if scenario == "write_day":
            lake.write_day(OPTIONS, D1, day_table(D1, 2, version=1))
        elif scenario == "append":
            lake.append(OPTIONS, D2, pa.concat_tables([snapshot(D2, 1, version=1), snapshot(D2, 2, version=1)]))
        elif scenario == "compact":
            lake.compact_day(OPTIONS, D2)
        elif scenario == "snapshots":  # concurrent writers: snapshots first..last, each twice
            first, last, version = (int(a) for a in args)
            for k in range(first, last):
                lake.append(OPTIONS, D1, snapshot(D1, k, version=version))
                lake.append(OPTIONS, D1, snapshot(D1, k, version=version))
        elif scenario == "flow":
            first, last = int(args[0]), int(args[1])
            for i in range(first, last, 5):
                lake.append(FLOW, D1, flow(D1, list(range(i, i + 5))))
        elif scenario == "stress-writer":
            stress_writer(lake, int(args[0]), args[1])
        else:
            raise SystemExit(f"unknown scenario {scenario}")


def stress_writer(lake: Lake, rounds: int, done_file: str) -> None:
    """Snapshots appended and re-delivered on D2, D1 replaced whole, D2 compacted, expiry."""
    for k in range(rounds):
        lake.append(OPTIONS, D2, snapshot(D2, k))
        if k:
            lake.append(OPTIONS, D2, snapshot(D2, k - 1, version=k))  # re-delivery
        if k % 3 == 0:
            lake.write_day(OPTIONS, D1, day_table(D1, 2 + k % 2, version=k))
        if k % 4 == 3:
            lake.compact_day(OPTIONS, D2)
            lake.compact_day(OPTIONS, D1)
        if k % 10 == 9:
            lake.expire(timedelta(seconds=1))
    with open(done_file, "w") as fh:
        fh.write("done")


def stress_reader(root: str, min_queries: int, done_file: str, out_file: str) -> None:
    """Query through connect() until the writer is done and ``min_queries`` ran; record
    duplicates, partially visible batches and errors."""
    con = connect(root)
    glob_d1 = f"{root}/options/date={D1.isoformat()}/*.parquet"
    queries = [
        ("dups", f"SELECT count(*) - count(DISTINCT {KEY_SQL}) FROM options"),
        ("partial", "SELECT count(*) FROM (SELECT snapshot_time FROM options GROUP BY ALL "
                    "HAVING count(*) <> 120 OR count(DISTINCT version) <> 1)"),
        ("d1", f"SELECT count(*) NOT IN (240, 360) OR count(DISTINCT version) > 1 FROM options "
               f"WHERE date = DATE '{D1.isoformat()}'"),
        ("plain", f"SELECT CASE WHEN count(*) = 0 THEN false ELSE count(*) NOT IN (240, 360) OR "
                  f"count(*) <> count(DISTINCT {KEY_SQL}) OR count(DISTINCT version) > 1 END "
                  f"FROM read_parquet('{glob_d1}')"),
    ]
    stats = {"queries": 0, "errors": [], "plain_errors": 0, "plain_reads": 0,
             "bad": {name: 0 for name, _ in queries}}
    i = 0
    while stats["queries"] < min_queries or not os.path.exists(done_file):
        name, sql = queries[i % len(queries)]
        i += 1
        try:
            if name == "plain" and not glob.glob(glob_d1):
                continue
            value = con.execute(sql).fetchone()[0]
            if value:  # a count of bad rows/groups, or True
                stats["bad"][name] += 1
        except Exception as exc:  # noqa: BLE001 - every error is a finding
            if name == "plain":  # DuckDB opens a file twice per query; see docs/storage.md
                stats["plain_errors"] += 1
            else:
                stats["errors"].append(f"{name}: {exc}"[:300])
        if name == "plain":
            stats["plain_reads"] += 1
        else:
            stats["queries"] += 1
        if stats["queries"] > 20 * min_queries:
            break
    con.close()
    with open(out_file, "w") as fh:
        json.dump(stats, fh)


if __name__ == "__main__":
    if sys.argv[2] == "stress-reader":
        stress_reader(sys.argv[1], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        run(sys.argv[1], sys.argv[2], sys.argv[3:])
