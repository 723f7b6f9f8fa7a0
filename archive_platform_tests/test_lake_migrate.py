"""Migration of the file layout (daily files + parts) into the lake: nothing lost, twice safe."""

from __future__ import annotations

import glob

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.lake import Lake, connect
from archive_platform.lake.migrate import migrate
from archive_platform_tests.lake_helpers import D1, D2, FLOW, KEY_SQL, OPTIONS, flow, key_counts, snapshot

pytestmark = pytest.mark.slow


def _old_archive(root):
    """D1: a daily file (snapshots 0-1, compacted through part 2), a stale part 2 it already
    folded in, live parts 3 (re-delivery of snapshot 1) and 4 (snapshot 2). D2: parts only.
    uw_flow D1: daily file plus a part overlapping one alert."""
    d = root / "options" / "date=2025-11-25"
    d.mkdir(parents=True)
    daily = pa.concat_tables([snapshot(D1, 0), snapshot(D1, 1)])
    daily = daily.replace_schema_metadata({b"archive_platform.compacted_through": b"2"})
    pq.write_table(daily, d / "options_20251125.parquet")
    pq.write_table(snapshot(D1, 5, version=9), d / "options_20251125.part-000002-0000abcd.parquet")
    pq.write_table(snapshot(D1, 1, version=1), d / "options_20251125.part-000003-1111abcd.parquet")
    pq.write_table(snapshot(D1, 2), d / "options_20251125.part-000004-2222abcd.parquet")
    (d / ".lock").write_text("")
    d2 = root / "options" / "date=2025-11-26"
    d2.mkdir(parents=True)
    pq.write_table(snapshot(D2, 0), d2 / "options_20251126.part-000001-3333abcd.parquet")
    f = root / "uw_flow" / "date=2025-11-25"
    f.mkdir(parents=True)
    pq.write_table(flow(D1, [1, 2, 3]), f / "uw_flow_20251125.parquet")
    pq.write_table(flow(D1, [3, 4], premium=50), f / "uw_flow_20251125.part-000001-4444abcd.parquet")


EXPECTED = {("options", D1): 360, ("options", D2): 120, ("uw_flow", D1): 4}


def _check(root):
    con = connect(root)
    try:
        got = {("options", d): n for d, n, k in con.sql(
            f"SELECT date, count(*), count(DISTINCT {KEY_SQL}) FROM options GROUP BY 1").fetchall() if n == k}
        got.update({("uw_flow", d): n for d, n in con.sql("SELECT date, count(*) FROM uw_flow GROUP BY 1").fetchall()})
        assert got == EXPECTED
        assert con.sql("SELECT DISTINCT version FROM options WHERE date = ? AND snapshot_time = "
                       "(SELECT min(snapshot_time) + INTERVAL 15 MINUTE FROM options WHERE date = ?)",
                       params=[D1, D1]).fetchall() == [(1,)]  # the re-delivery of snapshot 1 won
        assert con.sql("SELECT premium FROM uw_flow WHERE alert_id = 'a3'").fetchall() == [(53.0,)]
    finally:
        con.close()
    for (table, day), n in EXPECTED.items():
        folder = "options" if table == "options" else "uw_flow"
        files = glob.glob(str(root / folder / f"date={day.isoformat()}" / "*.parquet"))
        assert [f.rsplit("/", 1)[1] for f in files] == [f"{table}_{day:%Y%m%d}.parquet"]
        t = pq.read_table(files[0])
        keys = OPTIONS.dedup_key if table == "options" else FLOW.dedup_key
        assert key_counts(t, keys) == (n, n)


def test_migrate_into_a_new_root_loses_nothing_and_is_idempotent(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    _old_archive(old)
    first = migrate(old, [OPTIONS, FLOW], new)
    assert {(m.table, m.day): (m.rows_before, m.rows_after) for m in first} == \
        {k: (n, n) for k, n in EXPECTED.items()}
    _check(new)
    again = migrate(old, [OPTIONS, FLOW], new)
    assert all(m.skipped for m in again)
    _check(new)
    assert len(glob.glob(str(old / "options/date=2025-11-25/*.parquet"))) == 4  # old root untouched


def test_migrate_in_place_replaces_the_layout_and_survives_a_second_run(tmp_path):
    root = tmp_path / "archive"
    _old_archive(root)
    migrate(root, [OPTIONS, FLOW])
    _check(root)
    assert glob.glob(str(root / "options/date=*/.lock")) == []
    assert all(m.skipped for m in migrate(root, [OPTIONS, FLOW]))
    _check(root)
    with Lake(root) as lake:
        assert lake.days(OPTIONS) == [D1, D2]


def test_a_day_archived_with_no_rows_is_migrated_once(tmp_path):
    # an empty daily file ("archived, nothing happened") was counted as migrated on every run
    old, new = tmp_path / "old", tmp_path / "new"
    d = old / "uw_flow" / "date=2025-11-26"
    d.mkdir(parents=True)
    pq.write_table(flow(D2, []), d / "uw_flow_20251126.parquet")
    (first,) = migrate(old, [FLOW], new)
    assert (first.rows_before, first.rows_after, first.skipped) == (0, 0, False)
    published = glob.glob(str(new / "uw_flow" / "date=2025-11-26" / "*.parquet"))
    assert [pq.read_table(f).num_rows for f in published] == [0]  # "archived, no rows" kept
    (again,) = migrate(old, [FLOW], new)
    assert again.skipped
    (in_place,) = migrate(old, [FLOW])  # in place, the empty daily file already is the layout
    assert in_place.skipped and [pq.read_table(f).num_rows for f in glob.glob(str(d / "*.parquet"))] == [0]
