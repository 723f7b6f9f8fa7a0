"""SIGKILL right after every file and catalog step of write_day, append and compact_day:
every reader path then sees either the state before or the state after the write, whole, and
a retry converges to the state after."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.lake import STEPS, Lake, connect
from archive_platform.lake.tables import CRASH_ENV
from archive_platform_tests.lake_helpers import D1, D2, KEY_SQL, OPTIONS, day_table, key_counts, snapshot

pytestmark = pytest.mark.slow

# scenario -> (rows and versions before, rows and versions after) of the day it writes
EXPECT = {
    "write_day": (D1, (360, {0}), (240, {1})),
    "append": (D2, (240, {0}), (360, {0, 1})),
    "compact": (D2, (240, {0}), (240, {0})),
}


def _worker(root, scenario, crash_at=None):
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-X", "faulthandler", "-m", "archive_platform_tests.lake_worker", str(root), scenario],
                          env=env, capture_output=True, text=True, timeout=300)


def _state(table: pa.Table) -> tuple[int, set[int]]:
    assert key_counts(table, OPTIONS.dedup_key)[0] == key_counts(table, OPTIONS.dedup_key)[1], "duplicated keys"
    return table.num_rows, set(table["version"].to_pylist())


def _plain(root, day) -> pa.Table | None:
    files = glob.glob(str(root / "options" / f"date={day.isoformat()}" / "*.parquet"))
    assert len(files) <= 1, files
    return pq.read_table(files[0]) if files else None


def _check_all_readers(lake: Lake, day, allowed: list[tuple[int, set[int]]]) -> None:
    assert _state(lake.read_day(OPTIONS, day)) in allowed
    con = connect(lake.root)
    try:
        rows, keys = con.sql(f"SELECT count(*), count(DISTINCT {KEY_SQL}) FROM options WHERE date = ?",
                             params=[day]).fetchone()
        assert rows == keys and rows in {a[0] for a in allowed}
    finally:
        con.close()
    plain = _plain(lake.root, day)
    if plain is not None:
        assert _state(plain) in allowed


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_after_each_step_leaves_whole_states_and_a_retry_converges(tmp_path, step):
    scenario = {"write_day": "write_day", "append": "append", "compact": "compact"}[step.split(":")[0]]
    day, before, after = EXPECT[scenario]
    root = tmp_path / "archive"
    with Lake(root) as lake:
        lake.write_day(OPTIONS, D1, day_table(D1, 3, version=0))
        lake.append(OPTIONS, D2, snapshot(D2, 0))
        lake.append(OPTIONS, D2, snapshot(D2, 1))
    killed = _worker(root, scenario, crash_at=step)
    assert killed.returncode == -9, killed.stderr
    with Lake(root) as lake:
        _check_all_readers(lake, day, [before, after])
        done = _worker(root, scenario)
        assert done.returncode == 0, done.stderr
        _check_all_readers(lake, day, [after])
        if scenario != "append":  # write_day and compact leave the day in the plain layout
            assert _state(_plain(root, day)) == after
        lake.expire(timedelta(0))  # removes what the killed writer left behind
        live = {r[0] for r in lake.con.execute(
            "SELECT data_file FROM ducklake_list_files('lake', 'options')").fetchall()}
        on_disk = set(glob.glob(f"{lake.location.data_path}**/*.parquet", recursive=True))
        assert on_disk == live
        assert os.listdir(lake.location.tmp_dir) == []
        _check_all_readers(lake, day, [after])
