"""The DuckLake engine: atomic whole-day writes, idempotent appends, the plain layout,
time travel, expiry, and the reader entry point."""

from __future__ import annotations

import glob
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive_platform.lake import Lake, TableDef, connect
from archive_platform.lake.shell import cli_command, write_init_file
from archive_platform_tests.lake_helpers import (
    D1, D2, FLOW, KEY_SQL, OPTIONS, STOCKS, day_table, flow, key_counts, snap_time, snapshot,
    sort, versions)


@pytest.fixture
def lake(tmp_path):
    with Lake(tmp_path / "archive") as lk:
        yield lk


def plain_glob(lake: Lake, td: TableDef, day) -> list[str]:
    return sorted(glob.glob(str(lake.root / td.directory / f"date={day.isoformat()}" / "*.parquet")))


def plain_rows(paths: list[str]) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths]) if paths else pa.table({})


def test_write_day_replaces_the_day_and_publishes_one_plain_file(lake):
    first = day_table(D1, 3)
    w = lake.write_day(OPTIONS, D1, first)
    assert w.rows_written == first.num_rows == 360
    assert w.path == lake.root / "options" / "date=2025-11-25" / "options_20251125.parquet"
    assert sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key).equals(sort(first, OPTIONS.sort_key))
    second = day_table(D1, 2, version=1)
    lake.write_day(OPTIONS, D1, second)
    got = lake.read_day(OPTIONS, D1)
    assert got.num_rows == 240 and versions(got) == {1}
    files = plain_glob(lake, OPTIONS, D1)
    assert [os.path.basename(f) for f in files] == ["options_20251125.parquet"]
    plain = plain_rows(files)
    assert plain.num_rows == 240 and versions(plain) == {1}
    assert key_counts(plain, OPTIONS.dedup_key) == (240, 240)
    # the other day is untouched, and an empty day table empties the day: its rows go, and
    # its plain file is an empty one ("archived, no rows", not "never archived")
    lake.write_day(OPTIONS, D2, day_table(D2, 1))
    lake.write_day(OPTIONS, D1, OPTIONS.schema.empty_table())
    assert lake.read_day(OPTIONS, D1).num_rows == 0
    assert [plain_rows([f]).num_rows for f in plain_glob(lake, OPTIONS, D1)] == [0]
    assert lake.days(OPTIONS) == [D2]
    assert lake.compact_day(OPTIONS, D1).skipped  # end-of-day compaction keeps that record
    assert [plain_rows([f]).num_rows for f in plain_glob(lake, OPTIONS, D1)] == [0]


def test_snapshot_append_is_idempotent_and_a_redelivery_replaces_the_whole_snapshot(lake):
    lake.append(OPTIONS, D1, snapshot(D1, 0))
    lake.append(OPTIONS, D1, snapshot(D1, 1))
    before = sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key)
    lake.append(OPTIONS, D1, snapshot(D1, 1))  # the same batch again
    assert sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key).equals(before)
    # a re-delivery of snapshot 0 with fewer contracts replaces all of snapshot 0
    lake.append(OPTIONS, D1, snapshot(D1, 0, strikes=5, version=7))
    got = lake.read_day(OPTIONS, D1)
    s0 = got.filter(pa.compute.equal(got["snapshot_time"], pa.scalar(snap_time(D1, 0), OPTIONS.schema.field(0).type)))
    assert s0.num_rows == 3 * 5 * 2 and versions(s0) == {7}
    assert got.num_rows == 30 + 120
    assert key_counts(got, OPTIONS.dedup_key) == (150, 150)


def test_keyed_append_is_last_write_wins(lake):
    lake.append(FLOW, D1, flow(D1, [1, 2, 3], premium=10))
    lake.append(FLOW, D1, flow(D1, [2, 4], premium=500))
    got = sort(lake.read_day(FLOW, D1), ("alert_id",))
    assert got["alert_id"].to_pylist() == ["a1", "a2", "a3", "a4"]
    assert got["premium"].to_pylist() == [11.0, 502.0, 13.0, 504.0]
    assert lake.append(FLOW, D1, FLOW.schema.empty_table()).skipped


def _parts(lake: Lake, td: TableDef, day) -> list[str]:
    """The appended parts in the day's folder of the data path, live or superseded."""
    folder = Path(lake.location.data_path) / "main" / td.name / f"date={day.isoformat()}"
    return sorted(p.name for p in folder.glob("part-*.parquet"))


def _corrected(table: pa.Table, row: int) -> pa.Table:
    """``table`` with one bid changed in a middle row: same first and last rows, so the same
    cheap tag as the original, and the byte-by-byte comparison must tell them apart."""
    bids = table["bid"].to_pylist()
    bids[row] += 0.5
    return table.set_column(table.schema.get_field_index("bid"), "bid", pa.array(bids, pa.float64()))


def test_an_identical_redelivery_changes_nothing_and_costs_no_snapshot(lake):
    first, second = snapshot(D1, 0), snapshot(D1, 1)
    lake.append(OPTIONS, D1, first)
    w = lake.append(OPTIONS, D1, second)
    assert not w.skipped and w.rows_written == 120
    before, parts = lake.snapshot_id(), _parts(lake, OPTIONS, D1)
    again = lake.append(OPTIONS, D1, snapshot(D1, 1))  # the same rows, a new table object
    assert again.skipped and again.rows_written == 120 and again.bytes_written == 0
    assert lake.snapshot_id() == before and _parts(lake, OPTIONS, D1) == parts
    got = lake.read_day(OPTIONS, D1)
    assert sort(got, OPTIONS.sort_key).equals(sort(pa.concat_tables([first, second]), OPTIONS.sort_key))
    # the same for a keyed dataset, whose batch is matched on its dedup key
    lake.append(FLOW, D1, flow(D1, [1, 2, 3], premium=10))
    assert lake.append(FLOW, D1, flow(D1, [1, 2, 3], premium=10)).skipped
    assert sort(lake.read_day(FLOW, D1), ("alert_id",))["premium"].to_pylist() == [11.0, 12.0, 13.0]


def test_a_corrected_or_superseded_redelivery_still_replaces(lake):
    a = snapshot(D1, 0)
    b = _corrected(a, 61)
    lake.append(OPTIONS, D1, a)
    w = lake.append(OPTIONS, D1, b)  # same tag as a, one value differs: must replace
    assert not w.skipped
    assert sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key).equals(sort(b, OPTIONS.sort_key))
    # a again: its part is still in the folder (superseded, not expired) and equal to it,
    # but the catalog no longer reads it: a must come back
    w = lake.append(OPTIONS, D1, a)
    assert not w.skipped
    assert sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key).equals(sort(a, OPTIONS.sort_key))
    assert len(_parts(lake, OPTIONS, D1)) == 3
    # a part partly superseded (a delete file against it) is not whole any more: re-sending
    # the batch puts its rows back over the later batch's
    lake.append(FLOW, D1, flow(D1, [1, 2, 3], premium=10))
    lake.append(FLOW, D1, flow(D1, [2, 4], premium=500))
    assert not lake.append(FLOW, D1, flow(D1, [1, 2, 3], premium=10)).skipped
    got = sort(lake.read_day(FLOW, D1), ("alert_id",))
    assert got["premium"].to_pylist() == [11.0, 12.0, 13.0, 504.0]
    # once the day is compacted, its parts are gone from the catalog: a re-delivery replaces
    lake.compact_day(OPTIONS, D1)
    assert not lake.append(OPTIONS, D1, a).skipped
    got = lake.read_day(OPTIONS, D1)
    assert key_counts(got, OPTIONS.dedup_key) == (120, 120)
    assert sort(got, OPTIONS.sort_key).equals(sort(a, OPTIONS.sort_key))


def test_a_part_touched_by_an_inlined_delete_is_not_taken_as_whole(lake):
    """A delete that another writer kept in the catalog (DuckLake's deletion inlining, on in
    any attach that sets a row limit) leaves the part without a delete file; the re-sent
    batch must still put the deleted row back."""
    lake.append(FLOW, D1, flow(D1, [1, 2, 3], premium=10))
    lake.con.execute("CALL lake.set_option('data_inlining_row_limit', 10)")
    lake.con.execute("DELETE FROM lake.uw_flow WHERE alert_id = 'a2'")
    lake.con.execute("CALL lake.set_option('data_inlining_row_limit', 0)")
    assert [x for _, x in lake.con.execute(
        "SELECT data_file, delete_file FROM ducklake_list_files('lake', 'uw_flow')").fetchall()] == [None]
    assert not lake.append(FLOW, D1, flow(D1, [1, 2, 3], premium=10)).skipped
    got = sort(lake.read_day(FLOW, D1), ("alert_id",))
    assert got["alert_id"].to_pylist() == ["a1", "a2", "a3"] and got["premium"].to_pylist() == [11.0, 12.0, 13.0]


@pytest.mark.parametrize("fail_at", ["append:file", "append:insert"])
def test_a_write_that_raises_has_no_effect(lake, monkeypatch, fail_at):
    import archive_platform.lake.engine as engine

    lake.append(FLOW, D1, flow(D1, [1, 2]))
    lake.write_day(OPTIONS, D1, day_table(D1, 2))
    before = sort(lake.read_day(FLOW, D1), ("alert_id",))
    with pytest.raises((duckdb.Error, pa.ArrowInvalid)):  # a value that does not fit the column
        lake.append(FLOW, D1, flow(D1, [2, 3]).set_column(2, "premium", pa.array(["x", "y"])))

    def boom(step):
        if step in (fail_at, fail_at.replace("append", "write_day")):
            raise RuntimeError(f"injected failure at {step}")
    monkeypatch.setattr(engine, "crash_point", boom)
    # after the delete ran and the file was registered
    with pytest.raises(RuntimeError, match=f"^injected failure at {fail_at}$"):
        lake.append(FLOW, D1, flow(D1, [2, 3], premium=99))
    with pytest.raises(RuntimeError, match=f"^injected failure at {fail_at.replace('append', 'write_day')}$"):
        lake.write_day(OPTIONS, D1, day_table(D1, 1, version=3))
    assert sort(lake.read_day(FLOW, D1), ("alert_id",)).equals(before)
    assert lake.read_day(OPTIONS, D1).num_rows == 240
    assert plain_rows(plain_glob(lake, OPTIONS, D1)).num_rows == 240
    assert os.listdir(lake.location.tmp_dir) == []
    live = {r[0] for t in ("options", "uw_flow") for r in lake.con.execute(
        "SELECT data_file FROM ducklake_list_files('lake', ?)", [t]).fetchall()}
    assert set(glob.glob(f"{lake.location.data_path}**/*.parquet", recursive=True)) == live


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["ENOSPC", "interrupt"])
def test_a_write_failing_while_its_delete_runs_has_no_effect(lake, monkeypatch, failure):
    """A write's DELETE runs on the commit worker while this thread sorts and encodes the
    file (an appended part's pages going to disk meanwhile on the fsync worker). When the
    encoding fails, the transaction rolls back, the caller gets the error, and the lake works
    at once (the worker must not wait for the caller's lock, nor the fsync worker for a part
    that is no longer written)."""
    import archive_platform.lake.engine as engine
    from archive_platform.lake import catalog, parquet

    for k in range(3):
        lake.append(OPTIONS, D1, snapshot(D1, k))
    lake.write_day(OPTIONS, D2, day_table(D2, 2))

    def state():
        live = {r[0] for r in lake.con.execute(
            "SELECT data_file FROM ducklake_list_files('lake', 'options')").fetchall()}
        return (sort(lake.read_day(OPTIONS, D1), ("snapshot_time", "symbol", "strike", "right")),
                lake.read_day(OPTIONS, D2).num_rows, live, lake.snapshot_id())

    before = state()
    real = parquet.encode

    held = []

    def encode(td, table, day, path, *, compacted, **kw):
        # the transaction (catalog lock, DELETE) is open on the commit worker meanwhile
        for _ in range(500):
            try:
                with catalog.flock(lake.location.lake_dir / "locks" / "_catalog.lock", wait=False):
                    time.sleep(0.01)
            except BlockingIOError:
                held.append(compacted)
                break
        real(td, table.slice(0, 1), day, path, compacted=compacted, **kw)  # a file half made
        raise failure

    monkeypatch.setattr(parquet, "encode", encode)
    with pytest.raises(type(failure)) as compacting:
        lake.compact_day(OPTIONS, D1)
    with pytest.raises(type(failure)) as writing:
        lake.write_day(OPTIONS, D2, day_table(D2, 1, version=3))
    with pytest.raises(type(failure)) as appending:
        lake.append(OPTIONS, D1, snapshot(D1, 3))
    # the caller's own error
    assert compacting.value is failure and writing.value is failure and appending.value is failure
    assert held == [True, True, False]
    # both workers are free: the part's write-back stopped with its failed write
    for name in ("lake-fsync", "lake-commit"):
        assert engine._worker(name).submit(lambda: name).result(timeout=10) == name
    after = state()
    assert after[0].equals(before[0]) and after[1:] == before[1:]
    assert os.listdir(lake.location.tmp_dir) == []
    assert set(glob.glob(f"{lake.location.data_path}**/*.parquet", recursive=True)) == before[2]
    assert plain_glob(lake, OPTIONS, D1) == [] and plain_rows(plain_glob(lake, OPTIONS, D2)).num_rows == 240
    monkeypatch.undo()
    assert lake.append(OPTIONS, D1, snapshot(D1, 3)).rows_written == 120
    w = lake.compact_day(OPTIONS, D1)
    assert w.rows_written == 480 and plain_rows(plain_glob(lake, OPTIONS, D1)).num_rows == 480
    assert lake.write_day(OPTIONS, D2, day_table(D2, 1, version=3)).rows_written == 120


def test_an_interrupt_while_a_whole_day_commits_waits_for_the_commit_and_publishes(lake, monkeypatch):
    """Ctrl-C (or a run's termination) reaches the calling thread, not the commit worker: the
    caller must wait for the worker's transaction to end, even through a second interrupt,
    and a commit that landed is published before the interrupt goes on (else the plain layout
    stayed a version behind and the worker committed on a connection being closed)."""
    import signal
    import threading
    import time

    import archive_platform.lake.engine as engine

    for k in range(3):
        lake.append(OPTIONS, D1, snapshot(D1, k))
    main = threading.main_thread().ident
    seen = []

    def interrupt(step):
        if step == "compact:insert":  # on the commit worker, just before its COMMIT
            seen.append(threading.get_ident() != main)
            for _ in range(2):
                signal.pthread_kill(main, signal.SIGINT)
                time.sleep(0.2)

    monkeypatch.setattr(engine, "crash_point", interrupt)
    with pytest.raises(KeyboardInterrupt):
        lake.compact_day(OPTIONS, D1)
    monkeypatch.undo()
    assert seen == [True]
    assert len(lake.files(OPTIONS, D1)) == 1  # the commit landed
    assert plain_rows(plain_glob(lake, OPTIONS, D1)).num_rows == 360  # and was published
    assert lake.compact_day(OPTIONS, D1).skipped
    assert os.listdir(lake.location.tmp_dir) == []


def test_an_interrupt_while_an_append_commits_waits_and_leaves_the_plain_layout_alone(lake, monkeypatch):
    """An append's transaction runs on the commit worker too: an interrupt while it commits
    waits for the commit, and the appended part never becomes the day's plain-layout file
    (only whole days and compaction publish one)."""
    import signal
    import threading
    import time

    import archive_platform.lake.engine as engine

    for k in range(2):
        lake.append(OPTIONS, D1, snapshot(D1, k))
    lake.compact_day(OPTIONS, D1)
    main = threading.main_thread().ident
    seen = []

    def interrupt(step):
        if step == "append:insert":  # on the commit worker, just before its COMMIT
            seen.append(threading.get_ident() != main)
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(0.2)

    monkeypatch.setattr(engine, "crash_point", interrupt)
    with pytest.raises(KeyboardInterrupt):
        lake.append(OPTIONS, D1, snapshot(D1, 2))
    monkeypatch.undo()
    assert seen == [True]
    assert lake.read_day(OPTIONS, D1).num_rows == 360  # the commit landed
    assert plain_rows(plain_glob(lake, OPTIONS, D1)).num_rows == 240  # still the compacted day
    assert lake.compact_day(OPTIONS, D1).rows_written == 360
    assert plain_rows(plain_glob(lake, OPTIONS, D1)).num_rows == 360
    assert os.listdir(lake.location.tmp_dir) == []


def test_an_interrupt_outranks_the_failed_encoding_it_interrupted(lake, monkeypatch):
    """The encoding fails while the commit worker still waits for the catalog lock (another
    process's commit); Ctrl-C arrives while the caller waits for the worker to roll back. The
    call raises the interrupt (not the disk error, which the store would call retryable), the
    worker has rolled back, and nothing changed."""
    import fcntl
    import signal
    import threading
    import time

    from archive_platform.lake import parquet

    for k in range(3):
        lake.append(OPTIONS, D1, snapshot(D1, k))
    before = (lake.snapshot_id(), sorted(lake.files(OPTIONS, D1)))
    lock = os.open(lake.location.lake_dir / "locks" / "_catalog.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # "another writer is committing"
    main = threading.main_thread().ident

    def later():
        time.sleep(0.3)
        signal.pthread_kill(main, signal.SIGINT)
        time.sleep(0.3)
        os.close(lock)  # the other commit ends; the worker gets the lock and rolls back

    def encode(*args, **kwargs):
        time.sleep(0.2)  # the worker has started, and waits for the lock
        threading.Thread(target=later, daemon=True).start()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(parquet, "encode", encode)
    with pytest.raises(KeyboardInterrupt) as ei:
        lake.compact_day(OPTIONS, D1)
    monkeypatch.undo()
    assert isinstance(ei.value.__cause__, OSError) and ei.value.__cause__.errno == 28
    assert (lake.snapshot_id(), sorted(lake.files(OPTIONS, D1))) == before
    assert os.listdir(lake.location.tmp_dir) == [] and plain_glob(lake, OPTIONS, D1) == []
    assert lake.compact_day(OPTIONS, D1).rows_written == 360


def test_compaction_folds_the_day_into_the_plain_layout(lake):
    for k in range(4):
        lake.append(STOCKS, D1, pa.table({
            "timestamp": pa.array([snap_time(D1, k)] * 2, OPTIONS.schema.field(0).type),
            "symbol": ["AAA", "BBB"], "close": [1.0 + k, 2.0 + k]}, schema=STOCKS.schema))
    assert plain_glob(lake, STOCKS, D1) == []  # intraday rows live in the catalog's files only
    w = lake.compact_day(STOCKS, D1)
    assert w.rows_written == 8 and not w.skipped
    files = plain_glob(lake, STOCKS, D1)
    assert files == [str(lake.root / "stocks" / "date=2025-11-25" / "stocks_1m_20251125.parquet")]
    plain = plain_rows(files)
    assert plain.num_rows == 8 and plain["symbol"].to_pylist() == ["AAA"] * 4 + ["BBB"] * 4  # sorted
    assert lake.compact_day(STOCKS, D1).skipped
    assert len(lake.files(STOCKS, D1)) == 1 and os.path.samefile(lake.files(STOCKS, D1)[0], files[0])
    live = lake.con.execute("SELECT data_file FROM ducklake_list_files('lake', 'stocks_1m')").fetchall()
    assert len(live) == 1 and os.path.samefile(live[0][0], files[0])
    # a late append makes the day compactable again; the plain file keeps the last compaction
    lake.append(STOCKS, D1, pa.table({"timestamp": pa.array([snap_time(D1, 0)], OPTIONS.schema.field(0).type),
                                      "symbol": ["AAA"], "close": [99.0]}, schema=STOCKS.schema))
    assert plain_rows(plain_glob(lake, STOCKS, D1)).num_rows == 8
    assert not lake.compact_day(STOCKS, D1).skipped
    plain = plain_rows(plain_glob(lake, STOCKS, D1))
    assert plain.num_rows == 8 and 99.0 in plain["close"].to_pylist()


def test_time_travel_returns_the_content_before_a_redelivery(lake):
    lake.append(OPTIONS, D1, snapshot(D1, 0, version=1))
    time.sleep(0.05)
    known_at = datetime.now(timezone.utc)
    time.sleep(0.05)
    lake.append(OPTIONS, D1, snapshot(D1, 0, version=2))
    lake.compact_day(OPTIONS, D1)
    now = connect(lake.root)
    then = connect(lake.root, as_of=known_at)
    try:
        assert now.sql("SELECT DISTINCT version FROM options").fetchall() == [(2,)]
        assert then.sql("SELECT DISTINCT version FROM options").fetchall() == [(1,)]
        assert then.sql("SELECT count(*) FROM options").fetchone()[0] == 120
        sql = f"SELECT DISTINCT version FROM lake.options AT (TIMESTAMP => TIMESTAMPTZ '{known_at.isoformat()}')"
        assert now.sql(sql).fetchall() == [(1,)]
    finally:
        now.close()
        then.close()


def test_time_travel_refuses_a_naive_instant_and_explains_one_before_the_archive(lake):
    before = datetime.now(timezone.utc) - timedelta(hours=1)
    lake.append(OPTIONS, D1, snapshot(D1, 0))
    with pytest.raises(ValueError, match="as_of must be a timezone-aware datetime"):
        connect(lake.root, as_of=datetime(2025, 11, 26, 10, 5))  # 10:05 where?
    with pytest.raises(ValueError, match=r"has no snapshot at or before .*before its first write"):
        connect(lake.root, as_of=before)


def test_connect_exposes_each_table_by_name_with_a_date_column(lake):
    lake.write_day(OPTIONS, D1, day_table(D1, 1))
    lake.append(FLOW, D2, flow(D2, [1, 2]))
    con = connect(lake.root)
    try:
        assert con.sql("SELECT date, count(*) FROM options GROUP BY 1").fetchall() == [(D1, 120)]
        assert con.sql("SELECT date, count(*) FROM uw_flow GROUP BY 1").fetchall() == [(D2, 2)]
        types = dict(con.sql("SELECT column_name, column_type FROM (DESCRIBE options)").fetchall())
        assert types["date"] == "DATE" and types["snapshot_time"] == "TIMESTAMP WITH TIME ZONE"
        with pytest.raises(duckdb.InvalidInputException,
                           match='statement of type "DELETE" on database "lake" which is attached in read-only mode'):
            con.execute("DELETE FROM lake.options")
        # a connection sees later commits without reconnecting
        lake.append(FLOW, D2, flow(D2, [3]))
        assert con.sql(f"SELECT count(*), count(DISTINCT {KEY_SQL}) FROM options").fetchone() == (120, 120)
        assert con.sql("SELECT count(*) FROM uw_flow").fetchone()[0] == 3
        # the dataset names are views: writes to them are refused as docs/storage.md says, and
        # what a reader creates or drops stays in its own in-memory database
        with pytest.raises(duckdb.CatalogException, match="options is not an table"):
            con.execute("INSERT INTO options SELECT * FROM options")
        with pytest.raises(duckdb.BinderException, match="Can only delete from base table"):
            con.execute("DELETE FROM options")
        con.execute("DROP VIEW options")
        con.execute("CREATE TABLE options AS SELECT 1 AS x")
        other = connect(lake.root)
        try:
            assert other.sql("SELECT count(*) FROM options").fetchone() == (120,)
        finally:
            other.close()
    finally:
        con.close()
    with pytest.raises(FileNotFoundError, match=r"no lake catalog at .*/nothing-here/_lake/catalog\.sqlite: "
                       r"nothing has been written to .*/nothing-here yet"):
        connect(lake.root.parent / "nothing-here")


def test_expiry_keeps_current_content_and_removes_superseded_files(lake):
    for v in range(3):
        lake.append(OPTIONS, D1, snapshot(D1, 0, version=v))
    lake.compact_day(OPTIONS, D1)
    data = lake.location.data_path
    own = lambda: sorted(glob.glob(f"{data}main/options/date=*/*.parquet"))  # noqa: E731
    assert len(own()) == 4  # three appends + the compacted file
    assert lake.expire() == []  # default retention: 7 days, nothing is that old
    assert len(own()) == 4
    deleted = lake.expire(timedelta(0))
    assert len(deleted) == 3 and len(own()) == 1
    assert versions(lake.read_day(OPTIONS, D1)) == {2}
    assert plain_rows(plain_glob(lake, OPTIONS, D1)).num_rows == 120
    # a later compaction replaces the published file; expiring its predecessor keeps the link
    lake.write_day(OPTIONS, D1, day_table(D1, 2, version=5))
    lake.expire(timedelta(0))
    assert len(own()) == 1
    plain = plain_rows(plain_glob(lake, OPTIONS, D1))
    assert plain.num_rows == 240 and versions(plain) == {5}


def test_table_def_from_the_archive_spec_round_trips_a_real_schema(tmp_path):
    from archive_platform.schemas import spec_for

    spec = spec_for("stocks_1m")
    td = TableDef.from_spec(spec)
    assert (td.directory, td.file_stem, td.snapshot) == ("stocks", "stocks_1m", False)
    with Lake(tmp_path / "a") as lk:
        lk.ensure_table(td)
        assert lk.read_day(td, D1).schema.names == spec.schema.names


def test_the_duckdb_cli_opens_the_archive(lake, tmp_path):
    lake.write_day(OPTIONS, D1, day_table(D1, 2))
    init = write_init_file(lake.root, tmp_path / "init.sql")
    out = subprocess.run(cli_command(init, "SELECT count(*) AS n, min(date) AS d FROM options"),
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert "240" in out.stdout and "2025-11-25" in out.stdout


def test_a_column_added_to_the_schema_is_added_to_the_table(lake):
    lake.append(FLOW, D1, flow(D1, [1]))
    wider = TableDef(FLOW.name, FLOW.schema.append(pa.field("note", pa.string())), FLOW.directory,
                     FLOW.file_stem, FLOW.dedup_key, FLOW.sort_key)
    with Lake(lake.root) as again:
        again.append(wider, D1, flow(D1, [2]).append_column("note", pa.array(["hi"])))
        got = sort(again.read_day(wider, D1), ("alert_id",))
        assert got["note"].to_pylist() == [None, "hi"]
        # compaction reads the older part, which lacks the column, straight from its file
        from archive_platform.lake import parquet, publish

        frame, sizes = parquet.read_day_files(again.location, wider, publish.day_files(again.con, wider, D1))
        assert sizes == [1, 1] and frame["note"].to_list() == [None, "hi"]
        again.compact_day(wider, D1)
        plain = pq.read_table(plain_glob(again, wider, D1)[0])
        assert plain["alert_id"].to_pylist() == ["a1", "a2"] and plain["note"].to_pylist() == [None, "hi"]


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (2, 0, 3, 1)], ids=["in-time-order", "out-of-order"])
def test_compaction_reads_the_parts_directly_and_sorts_like_order_by(lake, order):
    """Parts appended in time order take the direct read and the one-key stable sort; parts
    out of order take the full sort; both give exactly the sort-key order."""
    from archive_platform.lake import parquet, publish

    for k in order:
        lake.append(OPTIONS, D1, snapshot(D1, k))
    files = publish.day_files(lake.con, OPTIONS, D1)
    direct, sizes = parquet.read_day_files(lake.location, OPTIONS, files)
    assert direct.height == 4 * 120 and sizes == [120] * 4  # no deletes: read straight from the files
    runs = parquet._merge_runs(direct, OPTIONS.sort_key[0], sizes)
    assert runs.height == direct.height and runs.n_chunks() == 3 * 4  # 3 symbols x 4 parts, no copy
    assert parquet._in_order(runs, OPTIONS.sort_key) == (order == (0, 1, 2, 3))
    expected = sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key)
    lake.compact_day(OPTIONS, D1)
    plain = pq.read_table(plain_glob(lake, OPTIONS, D1)[0]).select(OPTIONS.schema.names).cast(OPTIONS.schema)
    assert plain.equals(expected)


def test_compaction_after_a_keyed_redelivery_reads_through_the_catalog(lake):
    """A re-delivered key leaves a delete file: only the catalog knows which rows are live."""
    from archive_platform.lake import parquet, publish

    lake.append(FLOW, D1, flow(D1, [3, 1, 2]))
    lake.append(FLOW, D1, flow(D1, [2, 4], premium=50.0))  # a2 re-delivered: deletes one row
    files = publish.day_files(lake.con, FLOW, D1)
    assert any(x is not None for _, x, _ in files)
    assert parquet.read_day_files(lake.location, FLOW, files) is None
    lake.compact_day(FLOW, D1)
    plain = pq.read_table(plain_glob(lake, FLOW, D1)[0])
    assert plain["alert_id"].to_pylist() == ["a1", "a2", "a3", "a4"]  # (timestamp, alert_id) order
    assert plain["premium"].to_pylist() == [2.0, 52.0, 4.0, 54.0]  # a2 from the re-delivery


def test_sort_check_is_strict_and_refuses_null_keys():
    import polars as pl

    from archive_platform.lake.parquet import _in_order, sort_rows

    keys = ("a", "b")
    assert _in_order(pl.DataFrame({"a": [1, 1, 2], "b": [1, 1, 0]}), keys)
    assert not _in_order(pl.DataFrame({"a": [1, 1, 2], "b": [2, 1, 0]}), keys)
    assert not _in_order(pl.DataFrame({"a": [1, None], "b": [1, 2]}), keys)
    got = sort_rows(pl.DataFrame({"a": [2, None, 1, 1], "b": [0, 5, 3, 2]}), keys)
    assert got.rows() == [(1, 2), (1, 3), (2, 0), (None, 5)]  # nulls last, as ORDER BY


EDGE = TableDef(
    "edge_cases",
    pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("key", pa.int64()), ("text", pa.string()),
               ("x", pa.float64()), ("small", pa.int16()), ("mid", pa.int32()), ("flag", pa.bool_()),
               ("day", pa.date32())], metadata={b"description": b"edge values"}),
    directory="edge_cases", file_stem="edge_cases", dedup_key=("key",), sort_key=("timestamp", "key"))


def _bits(table: pa.Table) -> list:
    """Rows with floats as their IEEE bit patterns (NaN, -0.0 and inf compared exactly)."""
    import struct

    def norm(v):
        return ("f", struct.pack("<d", v)) if isinstance(v, float) else v
    return [{k: norm(v) for k, v in row.items()} for row in table.to_pylist()]


def test_edge_values_round_trip_exactly_through_the_writer_and_compaction(lake):
    """The Parquet writer (polars) keeps every value bit for bit: NaN, -0.0, inf, nulls,
    integer extremes, non-ASCII and empty strings, instants before 1970."""
    from datetime import date as d_

    base = datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)
    rows = pa.table({
        "timestamp": pa.array([base + timedelta(seconds=i) for i in range(6)], EDGE.schema.field(0).type),
        "key": pa.array([-2**63, -1, 0, 1, 2**63 - 1, 7]),
        "text": pa.array(["", "Ünïcødé ✓", None, "a\x00b", "x" * 10_000, "🙂"]),
        "x": pa.array([float("nan"), -0.0, float("inf"), float("-inf"), None, 5e-324]),
        "small": pa.array([-32768, 32767, None, 0, 1, -1], pa.int16()),
        "mid": pa.array([-2**31, 2**31 - 1, 0, None, 3, 4], pa.int32()),
        "flag": pa.array([True, False, None, True, False, None]),
        "day": pa.array([d_(1900, 1, 1), d_(2100, 12, 31), None, d_(1970, 1, 1), d_(2025, 1, 1), d_(2000, 2, 29)]),
    }, schema=EDGE.schema)
    lake.write_day(EDGE, D1, rows)
    assert _bits(lake.read_day(EDGE, D1, order_by=EDGE.sort_key)) == _bits(rows)
    plain = pq.read_table(plain_glob(lake, EDGE, D1)[0])
    assert plain.schema.field("text").type == pa.string() and plain.schema.metadata[b"description"] == b"edge values"
    assert _bits(plain.drop_columns(["date"])) == _bits(rows)
    # the same rows appended in two parts, then compacted (direct read of the parts)
    lake.append(EDGE, D2, rows.slice(3))
    lake.append(EDGE, D2, rows.slice(0, 3))
    lake.compact_day(EDGE, D2)
    assert _bits(pq.read_table(plain_glob(lake, EDGE, D2)[0]).drop_columns(["date"])) == _bits(rows)


def test_parts_are_written_uncompressed_and_days_with_zstd(lake):
    """The measured choice (lake/parquet.py): parts on a local disk uncompressed, kept day files zstd."""
    lake.append(OPTIONS, D1, snapshot(D1, 0))
    part = lake.files(OPTIONS, D1)[0]
    assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "UNCOMPRESSED"
    lake.compact_day(OPTIONS, D1)
    day = pq.ParquetFile(plain_glob(lake, OPTIONS, D1)[0]).metadata
    assert {day.row_group(0).column(i).compression for i in range(day.num_columns)} == {"ZSTD"}


def test_a_file_is_on_disk_before_the_commit_that_makes_it_visible(lake, monkeypatch):
    """The fsyncs run on a worker thread beside the catalog statements; the commit waits for them,
    and a failed fsync makes the write fail with no effect."""
    import errno
    import threading

    from archive_platform.lake import engine, publish

    synced, real = threading.Event(), publish.make_durable
    seen = []

    def slow_sync(path, **kw):
        time.sleep(0.3)  # longer than the catalog statements: the commit must wait for it
        real(path, **kw)
        synced.set()

    def check(step):
        if step.endswith(":insert"):
            seen.append((step, synced.is_set()))

    monkeypatch.setattr(publish, "make_durable", slow_sync)
    monkeypatch.setattr(engine, "crash_point", check)
    lake.append(OPTIONS, D1, snapshot(D1, 0))
    synced.clear()
    lake.compact_day(OPTIONS, D1)
    assert seen == [("append:insert", True), ("compact:insert", True)]

    def broken(path, **kw):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(publish, "make_durable", broken)
    before = sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key)
    data = lambda: set(glob.glob(str(lake.root / "_lake" / "data" / "main" / "options" / "date=*" / "*")))  # noqa: E731
    files = data()
    with pytest.raises(OSError, match="Input/output error"):
        lake.append(OPTIONS, D1, snapshot(D1, 1))
    assert sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key).equals(before)
    assert data() == files  # the failed write's file is gone


def test_a_forked_child_gets_its_own_workers(lake):
    """The fsync and commit worker threads do not survive fork: a child using the parent's executor would
    wait forever for its commit. (polars does not survive fork either, which is why writers
    are spawned, not forked: docs/storage.md.)"""
    import multiprocessing

    from archive_platform.lake import engine

    lake.append(OPTIONS, D1, snapshot(D1, 0))  # the parent's workers exist now
    lake.compact_day(OPTIONS, D1)
    parents = {name: engine._worker(name) for name in ("lake-fsync", "lake-commit")}

    def child():
        for name, parent in parents.items():
            worker = engine._worker(name)
            assert worker is not parent
            assert worker.submit(lambda: 42).result(timeout=20) == 42

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, "a forked child's worker did not run"


def test_an_archive_folder_copied_elsewhere_opens_there_and_reads_its_own_files(tmp_path):
    # a backup restored at another path (or a moved checkout) must open; DuckLake stores the
    # absolute data path it was created with, and refuses another one unless told to override
    import shutil

    with Lake(tmp_path / "a") as lk:
        lk.write_day(OPTIONS, D1, day_table(D1, 2))
        lk.append(OPTIONS, D2, snapshot(D2, 0))
    shutil.copytree(tmp_path / "a", tmp_path / "restored", symlinks=True)
    shutil.rmtree(tmp_path / "a")  # the original is gone: the copy must read its own files
    with Lake(tmp_path / "restored") as lk:
        assert lk.read_day(OPTIONS, D1).num_rows == 240 and lk.read_day(OPTIONS, D2).num_rows == 120
        lk.append(OPTIONS, D2, snapshot(D2, 1))  # and it takes new writes
        assert lk.read_day(OPTIONS, D2).num_rows == 240
        assert all(str(p).startswith(str(tmp_path / "restored")) for p in lk.files(OPTIONS, D2))
    con = connect(tmp_path / "restored")
    assert con.execute("SELECT count(*) FROM options").fetchone()[0] == 480
    con.close()


def test_an_archive_whose_data_lives_elsewhere_is_not_silently_split(tmp_path):
    # created with an explicit data path; opened later without it (a setting left unset): the
    # attach must still be refused, not redirected to <root>/_lake/data, where new writes would
    # be invisible once the setting is back
    root, elsewhere = tmp_path / "archive", tmp_path / "external"
    with Lake(root, data_path=str(elsewhere)) as lk:
        lk.write_day(OPTIONS, D1, day_table(D1, 2))
    with pytest.raises(duckdb.Error, match="does not match existing data path"):
        with Lake(root) as lk:
            lk.append(OPTIONS, D2, snapshot(D2, 0))
    with Lake(root, data_path=str(elsewhere)) as lk:
        assert lk.read_day(OPTIONS, D1).num_rows == 240 and lk.days(OPTIONS) == [D1]


def test_a_data_file_lost_on_disk_leaves_the_day_listed_and_the_ledger_finds_it_missing(tmp_path):
    # deleted by hand or a lost volume: status and the recovery sensor must report the day as
    # missing (to be fetched again), not die on DuckDB's "Cannot open file"
    from archive_platform import coverage
    from archive_platform.datasets import BY_NAME
    from archive_platform.store import ArchiveStore
    from archive_platform_tests.store_helpers import FULL_DAY, make_table

    store = ArchiveStore(tmp_path / "a", kind="sim")
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5))
    (lost,) = store.partition_files("gex", FULL_DAY)
    os.unlink(lost)
    assert store.days("gex") == [FULL_DAY]
    assert coverage.first_stored_day([BY_NAME["gex"]], lambda ds: store) == FULL_DAY
    assert coverage.read_stored(store, BY_NAME["gex"], FULL_DAY, ["SPY"]) is None
    # and the recovery's re-fetch replaces the day whole, lost file and all
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 4))
    assert store.read_day("gex", FULL_DAY).num_rows == 4


def _resident_pages(path) -> int:
    """How many of the file's pages are in the page cache (mincore(2) on a mapping that is
    never touched, so looking does not fault anything in)."""
    import ctypes
    import mmap

    size = os.path.getsize(path)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    with open(path, "rb") as fh:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fh.fileno(), 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * pages)()
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    return sum(v & 1 for v in vec)


def _on_tmpfs(path) -> bool:
    best, kind = "", ""
    with open("/proc/mounts") as fh:
        for line in fh:
            _, mount, fstype, *_ = line.split()
            if str(path).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    return kind in ("tmpfs", "ramfs")


@pytest.mark.skipif(not hasattr(os, "posix_fadvise") or not os.path.exists("/proc/mounts"),
                    reason="page-cache hints and mincore are Linux facilities")
def test_appended_parts_leave_the_page_cache_once_on_disk_and_the_day_file_stays(lake):
    """Parts are written once and read once more (at compaction): each leaves the page cache
    as soon as it is on disk, before the append returns, and compaction's read drops them
    again; the compacted day file, which queries read from then on, stays cached."""
    if _on_tmpfs(lake.root):
        pytest.skip("on tmpfs the page cache is the storage: nothing to drop")
    snaps = [snapshot(D1, k, symbols=20, strikes=500) for k in range(2)]  # 20,000 rows each
    for snap in snaps:
        lake.append(OPTIONS, D1, snap)
    parts = lake.files(OPTIONS, D1)
    sizes = [-(-os.path.getsize(p) // 4096) for p in parts]
    assert len(parts) == 2 and min(sizes) > 50
    # at most the footer stays: DuckLake reads it to register the file while the drop runs
    assert [_resident_pages(p) <= 2 for p in parts] == [True, True]
    # a re-sent batch is compared with its part read back, which leaves the cache again
    assert lake.append(OPTIONS, D1, snaps[1]).skipped
    assert [_resident_pages(p) <= 2 for p in parts] == [True, True]
    assert lake.read_day(OPTIONS, D1).num_rows == 40_000  # a reader brings them back
    assert sum(_resident_pages(p) for p in parts) > 50
    day = lake.compact_day(OPTIONS, D1)
    assert [_resident_pages(p) <= 2 for p in parts] == [True, True]
    assert _resident_pages(day.path) > 0
    assert sort(lake.read_day(OPTIONS, D1), OPTIONS.sort_key).equals(
        sort(pa.concat_tables(snaps), OPTIONS.sort_key))


@pytest.mark.skipif(not hasattr(os, "posix_fadvise") or not os.path.exists("/proc/mounts"),
                    reason="page-cache hints and mincore are Linux facilities")
def test_a_part_goes_to_disk_while_it_is_written(tmp_path):
    """``durable.write_back`` (beside an appended part's encoding) starts the written pages
    for the disk and drops those already there, so that the fsync after the last write waits
    for the tail only; it waits for a file not created yet and ends when told, or by itself
    once the file stops growing (its worker must never be held for ever)."""
    import mmap
    import threading

    from archive_platform import durable

    if _on_tmpfs(tmp_path):
        pytest.skip("on tmpfs the page cache is the storage: nothing goes to disk")
    chunk = os.urandom(1 << 20)

    def written(path, back: bool) -> int:
        stop = threading.Event()
        poller = threading.Thread(target=durable.write_back, args=(path, stop), daemon=True)
        try:
            if back:
                poller.start()
                time.sleep(0.02)  # it waits for the file to appear
            with open(path, "wb", buffering=0) as fh:
                for _ in range(12):
                    fh.write(chunk)
                    time.sleep(0.03)
            resident = _resident_pages(path)
        finally:
            stop.set()
        if back:
            poller.join(timeout=5)
            assert not poller.is_alive()
        durable.fsync_file(path)
        assert open(path, "rb").read() == chunk * 12  # content untouched
        return resident

    pages = 12 * (1 << 20) // mmap.PAGESIZE
    assert written(tmp_path / "plain.bin", back=False) >= pages * 0.9  # dirty, so cached
    assert written(tmp_path / "back.bin", back=True) < pages // 2  # most already on disk
    never_told = threading.Event()
    started = time.monotonic()
    durable.write_back(tmp_path / "back.bin", never_told, idle=0.3)  # returns: not growing
    durable.write_back(tmp_path / "missing.bin", never_told, idle=0.3)  # returns: never made
    assert not never_told.is_set() and time.monotonic() - started < 30


def test_writes_leave_duckdb_threads_to_the_encoding_beside_them(lake):
    """A snapshot append's catalog statements run on one DuckDB thread beside the part's
    encoding, a whole day's on one core fewer than the default (more threads only slowed the
    encoding); keyed appends (their DELETE joins the day's rows) and reads through the Lake
    keep DuckDB's default."""
    threads = lambda: lake.con.execute("SELECT current_setting('threads')").fetchone()[0]  # noqa: E731
    default = threads()
    if default == 1:
        pytest.skip("one core: DuckDB's default is one thread already")
    lake.append(OPTIONS, D1, snapshot(D1, 0))
    assert threads() == 1
    assert lake.read_day(OPTIONS, D1).num_rows == 120
    assert threads() == default
    lake.append(OPTIONS, D1, snapshot(D1, 1))
    lake.append(FLOW, D1, flow(D1, [1, 2]))
    assert threads() == default
    lake.append(OPTIONS, D1, snapshot(D1, 2))
    lake.close()  # a new connection starts at the default
    assert threads() == default
    lake.append(OPTIONS, D1, snapshot(D1, 3))
    assert threads() == 1
    assert lake.compact_day(OPTIONS, D1).rows_written == 480
    assert threads() == default - 1
    assert lake.read_day(OPTIONS, D1).num_rows == 480
    assert threads() == default
