"""A write that runs out of disk space has no effect; the retry succeeds once space is back.

Mounts a small tmpfs (needs root); skipped with the reason where mounting is not allowed."""

from __future__ import annotations

import glob
import os
from datetime import timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.lake import Lake, connect
from archive_platform_tests.lake_helpers import D1, D2, KEY_SQL, OPTIONS, day_table, snapshot
from archive_platform_tests.mounts import tmpfs

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "mnt", "size=24m") as mnt:
        yield mnt


def _noisy(table: pa.Table, seed: int) -> pa.Table:
    """Incompressible prices, so the Parquet file is as large as the data."""
    rng = np.random.default_rng(seed)
    return table.set_column(4, "bid", pa.array(rng.random(table.num_rows)))


def _fill(mnt, keep_free: int) -> None:
    with open(mnt / "filler", "wb") as fh:
        try:
            while True:
                fh.write(os.urandom(1 << 20))
                fh.flush()
        except OSError:
            pass
    st = os.statvfs(mnt)
    os.truncate(mnt / "filler", max(0, os.path.getsize(mnt / "filler") - keep_free + st.f_bavail * st.f_frsize))


def _state(lake: Lake):
    con = connect(lake.root)
    try:
        counts = con.sql(f"SELECT date, count(*), count(DISTINCT {KEY_SQL}) FROM options GROUP BY 1 ORDER BY 1").fetchall()
    finally:
        con.close()
    plain = [pq.read_table(p).num_rows for p in sorted(glob.glob(str(lake.root / "options/date=*/*.parquet")))]
    return counts, plain, lake.read_day(OPTIONS, D1).num_rows, lake.read_day(OPTIONS, D2).num_rows


def test_out_of_space_writes_have_no_effect_and_retries_succeed(small_disk):
    big_day = _noisy(day_table(D1, 4, strikes=2000), 1)  # ~48k rows of random doubles
    big_snap = _noisy(snapshot(D2, 1, strikes=4000), 2)
    with Lake(small_disk / "archive") as lake:
        lake.write_day(OPTIONS, D1, day_table(D1, 2))
        lake.append(OPTIONS, D2, snapshot(D2, 0))
        before = _state(lake)
        assert before[0] == [(D1, 240, 240), (D2, 120, 120)]
        _fill(small_disk, keep_free=64 * 1024)
        with pytest.raises((duckdb.Error, OSError)):
            lake.write_day(OPTIONS, D1, big_day)
        with pytest.raises((duckdb.Error, OSError)):
            lake.append(OPTIONS, D2, big_snap)
        # (while the disk is full SQLite cannot even open the catalog to read: "disk I/O error")
        os.unlink(small_disk / "filler")
        assert _state(lake) == before
        assert os.listdir(lake.location.tmp_dir) == []
        lake.expire(timedelta(0))  # DuckLake leaves a rolled-back insert's file as an orphan
        assert _state(lake) == before
        live = {r[0] for r in lake.con.execute("SELECT data_file FROM ducklake_list_files('lake', 'options')").fetchall()}
        on_disk = set(glob.glob(f"{lake.location.data_path}**/*.parquet", recursive=True))
        assert on_disk == live
        lake.write_day(OPTIONS, D1, big_day)
        lake.append(OPTIONS, D2, big_snap)
        assert _state(lake)[0] == [(D1, big_day.num_rows, big_day.num_rows), (D2, 120 + big_snap.num_rows,
                                                                              120 + big_snap.num_rows)]
        assert _state(lake)[1] == [big_day.num_rows]


def test_a_first_write_to_a_read_only_root_names_the_dataset_and_day(tmp_path):
    # the root's kind marker is the first file written: its failure must read like any other
    import errno

    from archive_platform.store import ArchiveStore
    from archive_platform.store.errors import ArchiveWriteError
    from archive_platform_tests.store_helpers import FULL_DAY, make_table

    with tmpfs(tmp_path / "ro", "ro,size=1m") as mnt:
        store = ArchiveStore(mnt, kind="sim")
        with pytest.raises(ArchiveWriteError, match=r"^.*gex 2025-11-26: write_day failed at .*_archive\.json") as ei:
            store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))
        assert ei.value.errno == errno.EROFS
        with pytest.raises(ArchiveWriteError, match=r"gex 2025-11-26: append failed"):
            store.append_snapshot("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))
