"""Audit of ``migrate``: crashes, re-runs over a lake that moved on, bad files, stray folders."""

from __future__ import annotations

import importlib
import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from archive_platform.cli import main
from archive_platform.lake import Lake, TableDef
from archive_platform.lake.migrate import migrate
from archive_platform_tests.lake_helpers import D1, FLOW, OPTIONS, flow, snapshot
from archive_platform_tests.store_helpers import FULL_DAY, HALF_DAY, make_table

pytestmark = pytest.mark.slow


def _options_day(root: Path) -> Path:
    """D1: a daily file (snapshots 0-1) compacted through part 2; stale part 2 (snapshot 5,
    folded in and superseded: an old reader ignores it); live part 4 (snapshot 2)."""
    d = root / "options" / f"date={D1}"
    d.mkdir(parents=True)
    daily = pa.concat_tables([snapshot(D1, 0), snapshot(D1, 1)])
    pq.write_table(daily.replace_schema_metadata({b"archive_platform.compacted_through": b"2"}),
                   d / "options_20251125.parquet")
    pq.write_table(snapshot(D1, 5, version=9), d / "options_20251125.part-000002-0000abcd.parquet")
    pq.write_table(snapshot(D1, 2), d / "options_20251125.part-000004-2222abcd.parquet")
    return d


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs, no handler catches it."""


def test_rerun_after_a_crash_between_publish_and_cleanup_ignores_stale_parts(tmp_path, monkeypatch):
    # the published file lost compacted_through, so the re-run folded the stale part back in
    root = tmp_path / "a"
    d = _options_day(root)

    def killed(folder, parts):
        raise _Killed

    with monkeypatch.context() as m:  # the state a SIGKILL after write_day:publish leaves
        # the module (``archive_platform.lake.migrate`` the attribute is the function)
        m.setattr(importlib.import_module("archive_platform.lake.migrate"), "_clean", killed)
        with pytest.raises(_Killed):
            migrate(root, [OPTIONS])
    assert len(list(d.glob("*.part-*"))) == 2 and (d / ".migrated-parts").exists()
    (again,) = migrate(root, [OPTIONS])
    with Lake(root) as lake:
        t = lake.read_day(OPTIONS, D1)
    assert t.num_rows == 360 and again.rows_after == 360
    assert 9 not in set(t["version"].to_pylist())  # no row of the stale part
    assert sorted(p.name for p in d.iterdir()) == ["options_20251125.parquet"]
    assert pq.read_metadata(d / "options_20251125.parquet").num_rows == 360


def test_parts_written_after_an_in_place_migration_are_added_not_deleted(tmp_path):
    # an old-version writer still running after the migration: its new part used to be deleted
    # unread by the next run (which took every part of a published day for a leftover)
    root = tmp_path / "a"
    d = root / "uw_flow" / f"date={D1}"
    d.mkdir(parents=True)
    pq.write_table(flow(D1, [1, 2, 3]), d / "uw_flow_20251125.parquet")
    pq.write_table(flow(D1, [3, 4], premium=50), d / "uw_flow_20251125.part-000001-4444abcd.parquet")
    (first,) = migrate(root, [FLOW])
    assert first.rows_after == 4 and not (d / ".migrated-parts").exists()
    late = d / "uw_flow_20251125.part-000009-aaaaaaaa.parquet"
    pq.write_table(flow(D1, [4, 7, 8], premium=70), late)  # a4 again, a7 and a8 new
    (again,) = migrate(root, [FLOW])
    assert not again.skipped and again.missing == 0 and again.rows_after == 6
    assert any(n.startswith("1 part file(s) written after the day was migrated") for n in again.notes)
    with Lake(root) as lake:
        t = lake.read_day(FLOW, D1)
    got = dict(zip(t["alert_id"].to_pylist(), t["premium"].to_pylist()))
    assert set(got) == {"a1", "a2", "a3", "a4", "a7", "a8"}
    assert got["a4"] == 54.0  # the lake's row of a key both have wins, as for any day it holds
    assert sorted(p.name for p in d.iterdir()) == ["uw_flow_20251125.parquet"]
    (third,) = migrate(root, [FLOW])
    assert third.skipped and third.rows_after == 6


def test_rows_the_store_would_refuse_fail_their_day_and_stay_where_they_are(tmp_path):
    # migrate skipped the store's validation: text became a number ("1e400" -> inf), naive
    # times were taken for UTC, another day's rows and a vendor's rows went into a sim root
    root = tmp_path / "a"
    _cli_root(root)
    days = [date(2025, 12, d) for d in (1, 2, 3, 4)]

    def day_table(day, **kw):
        return make_table("uw_flow", day, 4, **kw)

    def with_column(t, name, values):
        return t.set_column(t.schema.get_field_index(name), name, values)

    cases = {
        "text premium": (with_column(day_table(days[0]), "premium", pa.array(["1e400", "2", "3", "4"])),
                         "'premium'"),
        "naive timestamps": (with_column(day_table(days[1]), "timestamp",
                                         day_table(days[1])["timestamp"].cast(pa.timestamp("us"))),
                             "naive timestamp"),
        "another day's rows": (day_table(days[3]), "not the partition's day 2025-12-03"),
        "a vendor's rows in a sim root": (day_table(days[3], source="unusual_whales"),
                                          "only takes rows with source 'sim'"),
    }
    for (t, _), day in zip(cases.values(), days):
        folder = root / "uw_flow" / f"date={day}"
        folder.mkdir(parents=True)
        pq.write_table(t, folder / f"uw_flow_{day:%Y%m%d}.parquet")
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output and "4 partition(s) not migrated" in out.output
    for (label, (t, why)), day in zip(cases.items(), days):
        line = next(x for x in out.output.splitlines() if x.startswith(f"error: uw_flow {day}"))
        assert why in line, (label, line)
        kept = root / "uw_flow" / f"date={day}" / f"uw_flow_{day:%Y%m%d}.parquet"
        assert pq.read_table(kept).equals(t), label  # untouched
    assert "stocks_1m 2025-11-28: 40 rows -> 40" in out.output  # the other days migrated
    with Lake(root) as lake:
        assert [d for d in lake.days("uw_flow") if d in days] == []


def test_a_harmless_conversion_is_migrated_with_a_note(tmp_path):
    root = tmp_path / "a"
    _cli_root(root)
    f = root / "uw_flow" / f"date={FULL_DAY}" / f"uw_flow_{FULL_DAY:%Y%m%d}.parquet"
    t = pq.read_table(f)
    i = t.schema.get_field_index("premium")
    t = t.set_column(i, pa.field("premium", pa.float32()), t["premium"].cast(pa.float32()))
    pq.write_table(t, f)
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert f"uw_flow {FULL_DAY}: 10 rows -> 10" in out.output
    assert "note: " in out.output and "'premium' converted from float to double" in out.output


def test_a_storage_error_fails_its_day_only_and_names_it(tmp_path, monkeypatch):
    root = tmp_path / "a"
    _cli_root(root)
    real = Lake.write_day

    def write_day(self, td, day, table):
        if td.name == "stocks_1m":
            raise PermissionError(13, "Permission denied", str(root / "stocks"))
        return real(self, td, day, table)

    monkeypatch.setattr(Lake, "write_day", write_day)
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output
    err = [x for x in out.output.splitlines() if x.startswith("error: stocks_1m 2025-11-28")]
    assert err and "Permission denied" in err[0] and str(root / "stocks") in err[0]
    assert "uw_flow 2025-11-26: 10 rows -> 10" in out.output  # the other day migrated
    assert (root / "stocks" / "date=2025-11-28" / "stocks_1m_20251128.parquet").exists()


@pytest.mark.parametrize("in_place", [False, True])
def test_rerun_never_replaces_newer_lake_rows_with_the_old_layout(tmp_path, in_place):
    old = tmp_path / "old"
    new = old if in_place else tmp_path / "new"
    d = old / "options" / f"date={D1}"
    d.mkdir(parents=True)
    pq.write_table(pa.concat_tables([snapshot(D1, 0), snapshot(D1, 1)]), d / "options_20251125.parquet")
    migrate(old, [OPTIONS], new)
    with Lake(new) as lake:  # the new writer continues the day, and re-delivers snapshot 0
        lake.append(OPTIONS, D1, snapshot(D1, 2))
        lake.append(OPTIONS, D1, snapshot(D1, 0, version=7))
    if not in_place:  # the old root also still has a row the lake lacks
        f = old / "uw_flow" / f"date={D1}"
        f.mkdir(parents=True)
        pq.write_table(flow(D1, [1, 2]), f / "uw_flow_20251125.parquet")
        with Lake(new) as lake:
            lake.append(FLOW, D1, flow(D1, [2, 3], premium=50))
    got = {(m.table, m.day): m for m in migrate(old, [OPTIONS, FLOW], new)}
    with Lake(new) as lake:
        t = lake.read_day(OPTIONS, D1)
        assert t.num_rows == 360  # snapshot 2 kept
        assert set(t.filter(pc.equal(t["snapshot_time"], snapshot(D1, 0)["snapshot_time"][0]))
                   ["version"].to_pylist()) == {7}  # the lake's newer re-delivery kept
        if not in_place:
            fl = {r["alert_id"]: r["premium"] for r in lake.read_day(FLOW, D1).to_pylist()}
            assert fl == {"a1": 2.0, "a2": 52.0, "a3": 53.0}  # old a1 added, lake wins on a2
            assert got[("uw_flow", D1)].missing == 0 and got[("uw_flow", D1)].rows_after == 3
    assert got[("options", D1)].missing == 0


def _cli_root(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "_archive.json").write_text(json.dumps({"kind": "sim"}) + "\n")
    d = root / "uw_flow" / f"date={FULL_DAY}"
    d.mkdir(parents=True)
    pq.write_table(make_table("uw_flow", FULL_DAY, 10), d / "uw_flow_20251126.parquet")
    s = root / "stocks" / f"date={HALF_DAY}"
    s.mkdir(parents=True)
    pq.write_table(make_table("stocks_1m", HALF_DAY, 40), s / "stocks_1m_20251128.parquet")


def test_a_corrupt_file_fails_its_day_only_and_names_it(tmp_path):
    root = tmp_path / "a"
    _cli_root(root)
    bad = root / "uw_flow" / f"date={HALF_DAY}" / "uw_flow_20251128.parquet"
    bad.parent.mkdir(parents=True)
    pq.write_table(make_table("uw_flow", HALF_DAY, 10), bad)
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 1, out.output
    assert str(bad) in out.output and "Traceback" not in out.output
    assert "stocks_1m 2025-11-28: 40 rows -> 40" in out.output  # the days after it still migrated
    assert bad.exists() and len(bad.read_bytes()) == 200  # untouched


def test_a_column_type_that_cannot_convert_names_the_file_and_column(tmp_path):
    root = tmp_path / "a"
    _cli_root(root)
    d = root / "uw_flow" / f"date={HALF_DAY}"
    d.mkdir(parents=True)
    t = make_table("uw_flow", HALF_DAY, 4)
    i = t.schema.get_field_index("volume")
    t = t.set_column(i, pa.field("volume", pa.float64()), pa.array([0.5, 1.5, 2.5, 3.5]))
    pq.write_table(t, d / "uw_flow_20251128.parquet")
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 1
    assert "uw_flow_20251128.parquet" in out.output and "'volume'" in out.output


def test_an_older_schema_is_converted_and_what_changed_is_reported(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    d = old / "uw_flow" / f"date={D1}"
    d.mkdir(parents=True)
    t = flow(D1, [1, 2, 3]).drop_columns(["premium"]).append_column("legacy", pa.array([1, 2, 3]))
    pq.write_table(t, d / "uw_flow_20251125.parquet")
    (m,) = migrate(old, [FLOW], new)
    assert (m.rows_before, m.rows_after, m.missing) == (3, 3, 0)
    assert any("premium" in n and "null" in n for n in m.notes)
    assert any("legacy" in n for n in m.notes)
    with Lake(new) as lake:
        assert lake.read_day(FLOW, D1)["premium"].null_count == 3


def test_duplicate_keys_in_a_day_file_are_reported(tmp_path):
    root = tmp_path / "a"
    _cli_root(root)
    d = root / "uw_flow" / f"date={HALF_DAY}"
    d.mkdir(parents=True)
    t = make_table("uw_flow", HALF_DAY, 10)
    pq.write_table(pa.concat_tables([t, t.slice(0, 3)]), d / "uw_flow_20251128.parquet")
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert "uw_flow 2025-11-28: 10 rows -> 10 (3 duplicate" in out.output


def test_stray_folders_neither_abort_nor_count_and_are_reported(tmp_path):
    root = tmp_path / "a"
    _cli_root(root)
    (root / "uw_flow" / "date=2025-11-28").mkdir()  # empty
    (root / "uw_flow" / "date=2025-13-01").mkdir()  # not a date, empty
    junk = root / "uw_flow" / "date=garbage"
    junk.mkdir()
    (junk / "x.parquet").write_bytes(b"x")
    (root / "uw_flow" / ".DS_Store").write_bytes(b"x")
    (root / "mystery" / f"date={FULL_DAY}").mkdir(parents=True)
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 1, out.output
    assert "2 partition(s) migrated" in out.output
    assert "date=garbage" in out.output and "date=2025-13-01" not in out.output
    assert "mystery/" in out.output
    shutil.rmtree(junk)
    again = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert again.exit_code == 0, again.output
    assert "0 partition(s) migrated, 2 already done" in again.output


def test_a_day_off_the_calendar_is_migrated_with_a_warning(tmp_path):
    root = tmp_path / "a"
    _cli_root(root)
    d = root / "uw_flow" / "date=2025-11-27"  # Thanksgiving
    d.mkdir(parents=True)
    t = make_table("uw_flow", FULL_DAY, 5)  # its rows moved to the holiday: rows of that day
    t = t.set_column(0, t.schema.field(0), pc.add(t["timestamp"], pa.scalar(timedelta(days=1))))
    pq.write_table(t, d / "uw_flow_20251127.parquet")
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert "uw_flow 2025-11-27: 5 rows -> 5" in out.output
    assert "2025-11-27 is not a session" in out.output


def test_sim_flag_refuses_a_live_root(tmp_path):
    root = tmp_path / "a"
    _cli_root(root)
    (root / "_archive.json").write_text(json.dumps({"kind": "live"}) + "\n")
    out = CliRunner().invoke(main, ["migrate", "--sim", "--root", str(root)])
    assert out.exit_code == 2 and "live archive" in out.output
    assert not (root / "_lake").exists()


def test_progress_reports_each_day_as_it_is_done(tmp_path):
    old = tmp_path / "old"
    for day in (D1, date(2025, 11, 26)):
        d = old / "uw_flow" / f"date={day}"
        d.mkdir(parents=True)
        pq.write_table(flow(day, [1]), d / f"uw_flow_{day:%Y%m%d}.parquet")
    seen = []
    done = migrate(old, [FLOW], tmp_path / "new", progress=seen.append)
    assert seen == done and len(seen) == 2


def test_a_new_root_that_is_the_old_one_under_another_name_is_in_place(tmp_path):
    # --to a symlink of the root: treated as a new root, the parts stayed beside the published
    # file, and the next run folded the stale part back in
    root = tmp_path / "a"
    d = _options_day(root)
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    migrate(root, [OPTIONS], alias)
    assert sorted(p.name for p in d.iterdir()) == ["options_20251125.parquet"]
    migrate(root, [OPTIONS], alias)
    with Lake(root) as lake:
        assert lake.read_day(OPTIONS, D1).num_rows == 360


def test_refuses_when_the_kind_is_configured_on_a_remote_lake(tmp_path, monkeypatch):
    # the store would read the PostgreSQL catalog and never see the local lake migrate wrote
    root = tmp_path / "a"
    _cli_root(root)
    monkeypatch.setenv("ARCHIVE_SIM_LAKE_CATALOG", "postgres:host=localhost dbname=x")
    monkeypatch.setenv("ARCHIVE_LAKE_PG_PASSWORD", "x")
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 2, out.output
    assert not (root / "_lake").exists()
    assert (root / "uw_flow" / f"date={FULL_DAY}" / "uw_flow_20251126.parquet").exists()


def test_a_null_key_part_is_not_reported_missing_and_reruns_skip(tmp_path):
    # orderbook_l2's update_id may be null: a join never matches it, so every key was "missing"
    td = TableDef("books", pa.schema([("symbol", pa.string()), ("update_id", pa.int64()), ("px", pa.float64())]),
                  directory="books", file_stem="books", dedup_key=("symbol", "update_id"))
    old, new = tmp_path / "old", tmp_path / "new"
    d = old / "books" / f"date={D1}"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"symbol": ["A", "A", "B"], "update_id": [None, 1, None], "px": [1.0, 2.0, 3.0]},
                            schema=td.schema), d / "books_20251125.parquet")
    (first,) = migrate(old, [td], new)
    assert (first.rows_before, first.rows_after, first.missing) == (3, 3, 0)
    with Lake(new) as lake:  # the lake holds the day now: the merge path compares keys too
        lake.append(td, D1, pa.table({"symbol": ["C"], "update_id": [5], "px": [9.0]}, schema=td.schema))
    (again,) = migrate(old, [td], new)
    assert again.skipped and again.missing == 0 and again.rows_after == 4


def test_a_misfiled_parquet_file_fails_its_day_instead_of_vanishing(tmp_path):
    # another day's file in the folder was silently skipped (or, a part, folded into this day)
    root = tmp_path / "a"
    _cli_root(root)
    d = root / "uw_flow" / f"date={HALF_DAY}"
    d.mkdir(parents=True)
    stray = d / "uw_flow_20251126.parquet"
    pq.write_table(make_table("uw_flow", FULL_DAY, 3), stray)
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 1, out.output
    assert str(stray) in out.output and stray.exists()
    assert "2 partition(s) migrated" in out.output


def test_a_new_root_of_the_other_kind_is_a_usage_error(tmp_path):
    root, new = tmp_path / "a", tmp_path / "b"
    _cli_root(root)
    new.mkdir()
    (new / "_archive.json").write_text(json.dumps({"kind": "live"}) + "\n")
    out = CliRunner().invoke(main, ["migrate", "--root", str(root), "--to", str(new)])
    assert out.exit_code == 2 and "live archive" in out.output, out.output
    assert not (new / "_lake").exists()


def test_a_second_migrate_into_the_same_lake_waits_its_turn_in_words(tmp_path):
    # two at once deleted each other's parts mid-read ("unreadable Parquet file ... No such
    # file", the day said untouched) or died creating the catalog twice
    import fcntl
    import os

    root = tmp_path / "a"
    _cli_root(root)
    lock = root / "_lake" / "locks" / "migrate.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the first run, still going
        out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
        assert out.exit_code == 1 and "Traceback" not in out.output
        assert "another migrate into this lake is running" in out.output
        assert (root / "stocks" / "date=2025-11-28" / "stocks_1m_20251128.parquet").exists()
        with Lake(root) as lake:
            assert lake.days("stocks_1m") == []
    finally:
        os.close(fd)
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 0 and "2 partition(s) migrated" in out.output, out.output
