"""``archive-platform migrate`` on an archive written in the old file layout, ``sql`` through the
pinned DuckDB CLI, and ``query`` through ``archive_platform.connect()``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import archive_platform
from archive_platform.cli import main
from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import FULL_DAY, HALF_DAY, make_table, options_snapshot

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "archive-platform")


def _old_layout(root: Path) -> dict:
    """What the old store wrote: daily files with ``compacted_through`` metadata, intraday
    parts named ``<stem>_YYYYMMDD.part-<seq>-<hash8>.parquet``, a ``.lock``, the marker."""
    root.mkdir(parents=True)
    (root / "_archive.json").write_text(json.dumps({"kind": "sim"}) + "\n")
    d = root / "options" / f"date={FULL_DAY}"
    d.mkdir(parents=True)
    daily = pa.concat_tables([options_snapshot(FULL_DAY, 0), options_snapshot(FULL_DAY, 1)])
    pq.write_table(daily.replace_schema_metadata({b"archive_platform.compacted_through": b"1"}),
                   d / "options_20251126.parquet")
    stale = options_snapshot(FULL_DAY, 1, shift=99.0)  # folded in already: must be ignored
    pq.write_table(stale, d / "options_20251126.part-000001-aaaa0001.parquet")
    newer = options_snapshot(FULL_DAY, 1, shift=2.0)  # a re-delivery of snapshot 1: wins
    pq.write_table(newer, d / "options_20251126.part-000002-aaaa0002.parquet")
    pq.write_table(options_snapshot(FULL_DAY, 2), d / "options_20251126.part-000003-aaaa0003.parquet")
    (d / ".lock").write_text("")
    s = root / "stocks" / f"date={HALF_DAY}"
    s.mkdir(parents=True)
    pq.write_table(make_table("stocks_1m", HALF_DAY, 40), s / "stocks_1m_20251128.parquet")
    return {("options", FULL_DAY): 36, ("stocks_1m", HALF_DAY): 40}, newer


def test_migrate_converts_the_old_layout_losing_nothing_and_is_safe_twice(tmp_path):
    root = tmp_path / "old"
    expected, newer = _old_layout(root)
    out = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert "options 2025-11-26: 36 rows -> 36" in out.output and "2 partition(s) migrated" in out.output
    store = ArchiveStore(root, kind="sim")  # the marker kept its kind
    opts = store.read_day("options", FULL_DAY)
    keys = {(r["snapshot_time"], r["symbol"], r["strike"], r["expiry"], r["right"]) for r in opts.to_pylist()}
    assert len(keys) == opts.num_rows == 36
    snap1 = sorted(r["bid"] for r in opts.to_pylist() if r["snapshot_time"] == newer["snapshot_time"][0].as_py())
    assert snap1 == sorted(newer["bid"].to_pylist())
    assert store.read_day("stocks_1m", HALF_DAY).num_rows == 40
    # the plain layout: exactly one file per day, the old parts and lock gone
    assert sorted(p.name for p in (root / "options" / f"date={FULL_DAY}").iterdir()) == ["options_20251126.parquet"]
    assert pq.read_metadata(root / "options" / f"date={FULL_DAY}" / "options_20251126.parquet").num_rows == 36
    again = CliRunner().invoke(main, ["migrate", "--root", str(root)])
    assert again.exit_code == 0, again.output
    assert "0 partition(s) migrated, 2 already done" in again.output
    con = archive_platform.connect(root=root)
    try:
        got = dict(((t, d), n) for t, d, n in con.execute(
            "SELECT 'options', date, count(*) FROM options GROUP BY 2 UNION ALL "
            "SELECT 'stocks_1m', date, count(*) FROM stocks_1m GROUP BY 2").fetchall())
    finally:
        con.close()
    assert got == expected


def test_migrate_into_a_new_root_keeps_the_old_one(tmp_path):
    root, new = tmp_path / "old", tmp_path / "new"
    expected, _ = _old_layout(root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    out = CliRunner().invoke(main, ["migrate", "--root", str(root), "--to", str(new)])
    assert out.exit_code == 0, out.output
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # untouched
    store = ArchiveStore(new, kind="sim")
    assert {k: store.read_day(k[0], k[1]).num_rows for k in expected} == expected


def test_sql_runs_one_statement_in_the_pinned_duckdb_cli(tmp_path):
    root = tmp_path / "a[1]"
    store = ArchiveStore(root, kind="sim")
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 6))
    store.close()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    out = subprocess.run([CLI, "sql", "--root", str(root), "-c",
                          "SELECT count(*) AS n, min(date)::VARCHAR AS d FROM gex"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "6" in out.stdout and "2025-11-26" in out.stdout
    assert out.stderr == ""  # no "-- Loading resources from ..." banner on every call
    # what connect() gives Python: the macros, and datasets not written yet as empty tables
    out = subprocess.run([CLI, "sql", "--root", str(root), "-c",
                          "SELECT trading_day_add(DATE '2020-10-20', 28)::VARCHAR AS d, "
                          "(SELECT count(*) FROM vix) AS vix_rows, (SELECT count(*) FROM trading_days) > 5000 AS cal"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    row = [c.strip() for c in out.stdout.strip().splitlines()[-2].split("│")[1:-1]]
    assert row == ["2020-11-30", "0", "true"], out.stdout
    assert not list(scratch.glob("archive-sql-*"))  # each run's init script and folder are removed
    bad = subprocess.run([CLI, "sql", "--root", str(tmp_path / "none"), "-c", "SELECT 1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no lake catalog" in bad.stderr


def test_query_runs_through_connect(tmp_path):
    root = tmp_path / "sim"
    store = ArchiveStore(root, kind="sim")
    for k in range(3):
        store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, k, symbols=1))
    store.close()
    out = CliRunner().invoke(main, ["query", "latest_chain", "--symbol", "SYM0", "--root", str(root),
                                    "--at", "2025-11-26T23:00:00+00:00"])
    assert out.exit_code == 0, out.output
    # the last snapshot at or before --at (14:30 UTC open + 2 x 15 min), its 4 contracts
    assert out.output.count("15:00:00") == 4 and "14:45:00" not in out.output, out.output


def test_the_coverage_ledger_is_a_table_of_connect_and_of_the_sql_shell(tmp_path):
    # the ledger lives in plain files (not in the lake); the README queries it by name
    from archive_platform.coverage import LEDGER_SCHEMA

    root = tmp_path / "archive"
    store = ArchiveStore(root, kind="sim")
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 6))
    store.close()
    con = archive_platform.connect(root=root)
    assert con.sql("SELECT count(*) FROM coverage").fetchone() == (0,)  # typed, empty until written
    con.close()
    ledger = LEDGER_SCHEMA.empty_table().to_pylist()
    row = {f.name: None for f in LEDGER_SCHEMA}
    row.update(dataset="gex", day=FULL_DAY, state="complete", reconcilable=False, rows=6, bytes=1, files=1,
               fingerprint="f")
    folder = root / "coverage" / f"date={FULL_DAY.isoformat()}"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ledger + [row], schema=LEDGER_SCHEMA),
                   folder / f"coverage_{FULL_DAY:%Y%m%d}.parquet")
    con = archive_platform.connect(root=root)
    assert con.sql("SELECT dataset, state, rows FROM coverage").fetchall() == [("gex", "complete", 6)]
    con.close()
    out = subprocess.run([CLI, "sql", "--root", str(root), "-c",
                          "SELECT dataset || ':' || state AS s FROM coverage"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "gex:complete" in out.stdout, out.stderr
