"""Benchmark: writing the lake's Parquet files to S3-compatible storage (issue 15), in one run.

Question: should the lake upload a file pyarrow wrote locally (what ``lake/publish.py`` does)
or let DuckDB write straight to the bucket (``COPY ... TO 's3://...'`` through httpfs)?
Baseline: DuckDB's ``COPY`` to S3 with the same compression (zstd) and row groups (131,072).
Also: a whole ``Lake.write_day`` on S3 against the same write to a local data path (both
with the local SQLite catalog, so only the data path differs).

The S3 server is moto on loopback (``moto[server]``, dev dependency): a Python server, slower
than MinIO or AWS, but the same for every contender. Shape: option snapshots of the
``options`` dataset, 112,000 rows each (56 symbols x 2,000 contracts).

    ./run python bench/lake_s3.py [--snapshots 1 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive_platform.lake import Lake  # noqa: E402
from archive_platform.lake import publish  # noqa: E402
from archive_platform.lake.extensions import new_connection  # noqa: E402
from archive_platform.lake.remote import LakeConfig, RemoteFile, S3Location  # noqa: E402
from archive_platform_tests.s3_helpers import s3_server  # noqa: E402
from bench.lake import TD, Gen  # noqa: E402

DAY = date(2025, 10, 1)


def table(snapshots: int) -> pa.Table:
    gen = Gen(0)
    return pa.concat_tables(gen.snapshot(DAY, k) for k in range(snapshots))


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm up (first connection, first upload)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--snapshots", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with s3_server() as server, tempfile.TemporaryDirectory() as tmp:
        server.client().create_bucket(Bucket="bench")
        host = server.endpoint_url.split("//", 1)[1]
        s3 = S3Location("bench", "lake", host, server.region, "path", False, server.access_key, server.secret_key)
        con = new_connection(("httpfs",))
        con.execute(s3.secret_sql())
        print(f"{'rows':>9} {'contender':<44} {'seconds':>8} {'MB/s':>7} {'ratio':>7}")
        for snaps in args.snapshots:
            t = table(snaps)
            n = [0]
            uploaded: list[RemoteFile] = []

            def pyarrow_upload() -> None:
                n[0] += 1
                uploaded.append(RemoteFile(f"s3://bench/up/{snaps}-{n[0]}.parquet", s3))
                publish.write_file(TD, t, DAY, Path(tmp) / f"up-{n[0]}.tmp", uploaded[-1])

            def duckdb_copy() -> None:
                n[0] += 1
                con.register("t", t)
                con.execute(f"COPY t TO 's3://bench/duck/{snaps}-{n[0]}.parquet' "
                            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 131072)")
                con.unregister("t")

            def local_write() -> None:
                n[0] += 1
                publish.write_file(TD, t, DAY, Path(tmp) / f"l-{n[0]}.tmp", Path(tmp) / f"l-{n[0]}.parquet")

            base = median_seconds(duckdb_copy, args.repeat)
            up = median_seconds(pyarrow_upload, args.repeat)
            mb = uploaded[-1].stat().st_size / 1e6
            loc = median_seconds(local_write, args.repeat)
            with Lake(Path(tmp) / "local") as local_lake, \
                    Lake(Path(tmp) / "remote", config=LakeConfig(s3=s3)) as s3_lake:
                lake_local = median_seconds(lambda: local_lake.write_day(TD, DAY, t), args.repeat)
                lake_s3 = median_seconds(lambda: s3_lake.write_day(TD, DAY, t), args.repeat)
            rows = f"{t.num_rows:>9,}"
            print(f"{rows} {'DuckDB COPY to S3 (baseline)':<44} {base:8.3f} {mb / base:7.1f} {1.0:7.2f}")
            print(f"{rows} {'pyarrow local file + upload (the lake)':<44} {up:8.3f} {mb / up:7.1f} {base / up:7.2f}")
            print(f"{rows} {'pyarrow local file only (no upload)':<44} {loc:8.3f} {mb / loc:7.1f} {base / loc:7.2f}")
            print(f"{rows} {'Lake.write_day, local data path':<44} {lake_local:8.3f} {'':>7} {base / lake_local:7.2f}")
            print(f"{rows} {'Lake.write_day, data on S3':<44} {lake_s3:8.3f} {'':>7} {base / lake_s3:7.2f}")
        con.close()
    print("ratio: baseline seconds / contender seconds (above 1: faster than DuckDB's COPY to S3)")


if __name__ == "__main__":
    main()
