"""An intraday snapshot append skips DuckLake's DELETE when the catalog's table statistics prove
every stored snapshot is older (``Lake._all_before``): the DELETE would match nothing and costs
more than the read (docs/performance.md). These tests pin the proof's edges: an equal time (a
re-delivery), an older snapshot, and every change of the statistics (compaction, a day replaced
by fewer snapshots, a column added, another day, expiry) must still replace, never duplicate."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

from archive_platform.lake import Lake, TableDef
from archive_platform_tests.lake_helpers import D1, D2, OPTIONS, day_table, key_counts, snap_time, snapshot


@pytest.fixture
def lake(tmp_path):
    with Lake(tmp_path / "archive") as lk:
        yield lk


def _decisions(lake: Lake, monkeypatch) -> list[bool]:
    seen: list[bool] = []
    real = Lake._all_before

    def spy(self, td, column, instant):
        seen.append(real(self, td, column, instant))
        return seen[-1]

    monkeypatch.setattr(Lake, "_all_before", spy)
    return seen


def _state(lake: Lake, td: TableDef, day) -> tuple[int, int, dict]:
    got = lake.read_day(td, day)
    rows, keys = key_counts(got, td.dedup_key)
    by_snap: dict = {}
    for t, v in zip(got["snapshot_time"].to_pylist(), got["version"].to_pylist()):
        by_snap.setdefault(t, set()).add(v)
    return rows, keys, {k: sorted(v) for k, v in sorted(by_snap.items())}


def test_only_a_snapshot_newer_than_everything_stored_skips_the_delete(lake, monkeypatch):
    lake.ensure_table(OPTIONS)
    assert lake._all_before(OPTIONS, "snapshot_time", snap_time(D1, 5)) is False  # nothing stored: no statistic
    seen = _decisions(lake, monkeypatch)
    for k in range(3):
        lake.append(OPTIONS, D1, snapshot(D1, k))
    assert seen == [False, True, True]  # the first append found no statistic yet
    assert Lake._all_before(lake, OPTIONS, "snapshot_time", snap_time(D1, 3)) is True
    assert Lake._all_before(lake, OPTIONS, "snapshot_time", snap_time(D1, 2)) is False  # equal: a re-delivery
    assert Lake._all_before(lake, OPTIONS, "snapshot_time", snap_time(D1, 0)) is False
    n = snapshot(D1, 0).num_rows
    assert _state(lake, OPTIONS, D1) == (3 * n, 3 * n, {snap_time(D1, k): [0] for k in range(3)})


def test_every_replacement_still_replaces_whatever_changed_the_statistics(lake, monkeypatch, tmp_path):
    n = snapshot(D1, 0).num_rows
    seen = _decisions(lake, monkeypatch)
    for k in range(3):
        lake.append(OPTIONS, D1, snapshot(D1, k))
    # a re-delivery of the newest snapshot (an equal time) and of an older one
    lake.append(OPTIONS, D1, snapshot(D1, 2, version=1))
    lake.append(OPTIONS, D1, snapshot(D1, 0, version=2))
    assert seen[-2:] == [False, False]
    assert _state(lake, OPTIONS, D1) == (3 * n, 3 * n, {snap_time(D1, 0): [2], snap_time(D1, 1): [0],
                                                        snap_time(D1, 2): [1]})
    # compaction rewrites the day into one file
    lake.compact_day(OPTIONS, D1)
    lake.append(OPTIONS, D1, snapshot(D1, 2, version=3))
    assert seen[-1] is False and _state(lake, OPTIONS, D1)[:2] == (3 * n, 3 * n)
    # the day replaced by fewer snapshots: the statistics keep the old maximum, so a snapshot
    # between runs the DELETE (a no-op) and is stored once
    lake.write_day(OPTIONS, D1, day_table(D1, 1, version=4))
    lake.append(OPTIONS, D1, snapshot(D1, 1, version=5))
    lake.append(OPTIONS, D1, snapshot(D1, 1, version=6))
    assert seen[-2:] == [False, False]
    assert _state(lake, OPTIONS, D1) == (2 * n, 2 * n, {snap_time(D1, 0): [4], snap_time(D1, 1): [6]})
    # a column added to the table, then a later day, then expiry of old snapshots
    wider = TableDef(OPTIONS.name, OPTIONS.schema.append(pa.field("ask", pa.float64())),
                     directory=OPTIONS.directory, file_stem=OPTIONS.file_stem, dedup_key=OPTIONS.dedup_key,
                     sort_key=OPTIONS.sort_key, snapshot=True)
    lake.close()
    lake = Lake(tmp_path / "archive")  # a new process's view: the table gains the column
    lake.ensure_table(wider)
    redo = snapshot(D1, 1, version=7)
    lake.append(wider, D1, redo.append_column("ask", pa.array([2.0] * redo.num_rows)))
    assert seen[-1] is False
    lake.append(wider, D2, snapshot(D2, 0, version=8).append_column("ask", pa.array([2.0] * n)))
    assert seen[-1] is True  # D2 is after everything stored
    lake.expire(timedelta(0))
    lake.append(wider, D1, snapshot(D1, 1, version=9).append_column("ask", pa.array([3.0] * n)))
    lake.append(wider, D2, snapshot(D2, 0, version=10).append_column("ask", pa.array([3.0] * n)))
    assert seen[-2:] == [False, False]
    assert _state(lake, wider, D1) == (2 * n, 2 * n, {snap_time(D1, 0): [4], snap_time(D1, 1): [9]})
    assert _state(lake, wider, D2) == (n, n, {snap_time(D2, 0): [10]})
    lake.close()
