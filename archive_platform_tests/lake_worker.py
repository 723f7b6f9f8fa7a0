"""Subprocess side of the lake crash and concurrency tests: ``python -m
archive_platform_tests.lake_worker <root> <scenario> [args]``."""

from __future__ import annotations

import sys

import pyarrow as pa

from archive_platform.lake import Lake
from archive_platform_tests.lake_helpers import D1, D2, FLOW, OPTIONS, day_table, flow, snapshot


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
        else:
            raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3:])
