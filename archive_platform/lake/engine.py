"""The lake engine: day-partitioned DuckLake tables with whole-day replacement, idempotent
last-write-wins appends, compaction into the seed's plain layout, time travel and expiry.

Every write is one catalog transaction: a write that raises has no effect, one that returns is
fully visible, and retrying a batch converges to the same content. See docs/storage.md.
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.compute as pc
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from archive_platform import durable
from archive_platform.lake import parquet, publish
from archive_platform.lake.catalog import ALIAS, LakeLocation, ident, is_retryable
from archive_platform.lake.remote import LakeConfig
from archive_platform.lake.tables import LakeWrite, TableDef, crash_point

DEFAULT_RETENTION = timedelta(days=7)
RETRY_SECONDS = 120.0  # give up on catalog contention after this long
_DAY_DIR = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")


def _retrying() -> Retrying:
    return Retrying(retry=retry_if_exception(is_retryable), reraise=True,
                    wait=wait_random_exponential(multiplier=0.02, max=1.0),
                    stop=stop_after_delay(RETRY_SECONDS))


class Lake:
    """One archive root as a DuckLake. Keep one instance per process: attaching costs ~0.5 s.

    Thread-safe (one connection, one lock). Pass ``TableDef``s (``TableDef.from_spec(spec)``).
    """

    def __init__(self, root: str | Path, *, catalog: str | None = None,
                 data_path: str | None = None, config: LakeConfig | None = None) -> None:
        self.location = LakeLocation.for_root(root, catalog, data_path, config)
        self.root = self.location.root
        self._con: duckdb.DuckDBPyConnection | None = None
        self._mutex = threading.RLock()
        self._known: set[str] = set()
        self._commit_failed = False
        self._threads = self._threads_default = 0  # DuckDB's threads setting, once connected

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    # -- connection ------------------------------------------------------------------------
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self.location.prepare()
            con = self.location.open(read_only=False)
            # small batches become files too: one kind of storage to compact and reason about.
            # A bound parameter on purpose: DuckDB's Python client imports pandas and numpy
            # on a process's first one (1.0-2.0 s, measured 2026-12-03), which must happen
            # here and not inside a write's transaction, where it held the catalog lock and so
            # stalled every other writer for that long
            for attempt in _retrying():
                with attempt:
                    if con.execute(f"SELECT value FROM {ALIAS}.options() WHERE option_name = ?",
                                   ["data_inlining_row_limit"]).fetchall() != [("0",)]:
                        con.execute(f"CALL {ALIAS}.set_option('data_inlining_row_limit', 0)")
            self._threads = self._threads_default = con.execute(
                "SELECT current_setting('threads')").fetchone()[0]
            self._con = con
        return self._con

    def _set_threads(self, n: int | None, spare: int = 0) -> None:
        """DuckDB's thread count for the next statements: ``n``, or None for its default (one
        per core) less ``spare``, at least one. Setting it costs about 0.3 ms, so it changes
        only when the work does."""
        con = self.con  # first, as (re)connecting resets ``_threads`` and learns the default
        n = max(1, self._threads_default - spare) if n is None else n
        if self._threads != n:
            con.execute(f"SET threads = {int(n)}")
            self._threads = n

    def _write_threads(self, td: TableDef, beside: bool, whole_day: bool = False) -> None:
        """DuckDB's threads for a write's catalog statements while something runs ``beside``
        them in this process (the file's encoding, the read-back of a re-sent batch), measured
        2026-12-03 on 2 cores (docs/performance.md, "An append's DELETE beside its encoding"):

        - a snapshot append: one. Its DELETE is pruned to one snapshot's files; with DuckDB's
          default of one thread per core, an options part's encoding took 28-32 ms beside it
          against 22-28 ms;
        - a whole day or compaction: one core fewer than the default, leaving one to the
          encoding (compaction 1.86-2.13 s against 2.21-2.54 s, four interleaved pairs);
        - a keyed append, whose DELETE joins the batch with the day's stored rows, and anything
          with nothing beside it (S3, reads): the default.

        ``read_range`` gets the default back."""
        if not beside or not (td.snapshot or whole_day):
            self._set_threads(None)
        elif whole_day:
            self._set_threads(None, spare=1)
        else:
            self._set_threads(1)

    def close(self) -> None:
        with self._mutex:
            self._drop_con()

    def _drop_con(self) -> None:
        con, self._con = self._con, None
        self._threads = 0
        if con is not None:
            con.close()

    def __enter__(self) -> "Lake":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self, body, *args):
        """Run ``body(con, *args)`` inside BEGIN/COMMIT, retried whole on catalog contention."""
        for attempt in _retrying():
            with attempt:
                con = self.con  # connected (0.5 s or more the first time) before queueing
                with self.location.catalog_lock():
                    con.execute("BEGIN TRANSACTION")
                    try:
                        out = body(con, *args)
                        try:
                            con.execute("COMMIT")
                        except BaseException:
                            self._commit_failed = True
                            raise
                    except BaseException as exc:
                        rolled_back = False
                        try:
                            con.execute("ROLLBACK")
                            rolled_back = True
                        except duckdb.Error:
                            pass
                        # start the next attempt on a fresh connection: DuckDB 1.5.5 + ducklake
                        # crashed (SIGSEGV) in ducklake_add_data_files during concurrent commits.
                        # Not close(): this may run on the commit worker while the caller's
                        # thread holds the mutex (a local write, _commit_file). Kept when
                        # only the file failed (no statement did) and the rollback went through:
                        # reattaching costs ~0.5 s
                        if not (isinstance(exc, _NotWritten) and rolled_back):
                            self._drop_con()
                        raise
        return out

    def _snapshot_id(self) -> int:
        return self.con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0]

    # -- tables ----------------------------------------------------------------------------
    def ensure_table(self, td: TableDef) -> None:
        """Create the table (partitioned by ``date``) or add columns the schema gained."""
        self.ensure_tables([td])

    def ensure_tables(self, tds: Iterable[TableDef]) -> None:
        """Create each table (partitioned by ``date``) or add the columns its schema gained, all
        in one transaction (the store calls this before its first write, so every dataset has
        its table before any reader lists them; 17 tables one by one cost ~0.9 s, together
        a fraction of that)."""
        todo = [td for td in tds if td.name not in self._known]
        if not todo:
            return
        with self._mutex:
            def body(con: duckdb.DuckDBPyConnection) -> None:
                have: dict[str, set[str]] = {}
                for table, column in con.execute(
                        "SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_catalog = ?", [ALIAS]).fetchall():
                    have.setdefault(table, set()).add(column)
                for td in todo:
                    cols = have.get(td.name, set())
                    if set(td.schema.names) <= cols:
                        continue
                    con.register("__empty", td.schema.empty_table())
                    try:
                        name = f"{ALIAS}.{ident(td.name)}"
                        if not cols:
                            con.execute(f"CREATE TABLE {name} AS SELECT *, CAST(NULL AS DATE) AS date "
                                        "FROM __empty WITH NO DATA")
                            con.execute(f"ALTER TABLE {name} SET PARTITIONED BY (date)")
                            continue
                        types = dict(con.execute("SELECT column_name, column_type FROM "
                                                 "(DESCRIBE SELECT * FROM __empty)").fetchall())
                        for col in td.schema.names:
                            if col not in cols:
                                con.execute(f"ALTER TABLE {name} ADD COLUMN {ident(col)} {types[col]}")
                    finally:
                        con.unregister("__empty")
            self._transaction(body)
            self._known.update(td.name for td in todo)

    def tables(self) -> list[str]:
        with self._mutex:
            return [r[0] for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? "
                "ORDER BY 1", [ALIAS]).fetchall()]

    # -- writes ----------------------------------------------------------------------------
    # Every write writes its Parquet file itself (pyarrow: ~2x faster than DuckDB's writer
    # here, measured in bench/lake.py's notes) and registers it with ducklake_add_data_files in
    # the transaction that deletes what it replaces.
    def write_day(self, td: TableDef, day: date, table: pa.Table) -> LakeWrite:
        """Replace the day whole with ``table`` (already validated, deduplicated and sorted):
        one compacted file registered in the same transaction that removes the old rows."""
        self.ensure_table(td)
        delete = (f"DELETE FROM {ALIAS}.{ident(td.name)} WHERE date = ?", [day])

        def write() -> LakeWrite:
            with self._mutex, self.location.writer_lock(td.name, day.isoformat()):
                return self._commit_file(td, day, lambda con: table, delete, "write_day")
        return self._minding_lost_files(td, day, write)

    def append(self, td: TableDef, day: date, batch: pa.Table) -> LakeWrite:
        """Add a batch, last write wins: a snapshot type replaces every ``snapshot_time`` the
        batch carries, others replace rows with the batch's dedup keys. Idempotent."""
        if batch.num_rows == 0:
            return LakeWrite(td.name, day, 0, None, 0, skipped=True)
        self.ensure_table(td)
        name = f"{ALIAS}.{ident(td.name)}"
        if td.snapshot:  # constants, so DuckLake prunes files by their snapshot_time stats
            times = pc.unique(batch["snapshot_time"]).to_pylist()
            delete = (f"DELETE FROM {name} WHERE date = ? AND snapshot_time IN "
                      f"({', '.join('?' * len(times))})", [day, *times])
        else:
            # a nullable key part (orderbook_l2's update_id) matches NULL to NULL: with "=" a
            # re-appended row whose part is NULL was never replaced but stored twice
            match = " AND ".join(
                f"b.{ident(k)} IS NOT DISTINCT FROM t.{ident(k)}" if td.schema.field(k).nullable
                else f"b.{ident(k)} = t.{ident(k)}" for k in td.dedup_key)
            delete = (f"DELETE FROM {name} AS t WHERE t.date = ? AND EXISTS "
                      f"(SELECT 1 FROM __batch AS b WHERE {match})", [day],
                      batch.select(list(td.dedup_key)))

        tag = parquet.batch_tag(batch) if self.location.s3 is None else ""

        def write() -> LakeWrite:
            with self._mutex, self.location.writer_lock(td.name, day.isoformat()):
                if self._holds_already(td, day, batch, tag):
                    return LakeWrite(td.name, day, batch.num_rows, None, 0, skipped=True)
                return self._commit_file(td, day, lambda con: batch, delete, "append", tag)
        return self._minding_lost_files(td, day, write)

    def _holds_already(self, td: TableDef, day: date, batch: pa.Table, tag: str) -> bool:
        """Whether the latest snapshot already holds ``batch`` as one of its parts, whole: a
        re-delivered batch (a retried run, a re-polled snapshot) then has nothing to change.

        The DELETE + INSERT it would otherwise run costs DuckLake 1.5.5 about 0.3 us per
        stored row it removes (it records each position before it drops the file whole): a
        re-delivered 112,000-row snapshot took 1.5-2x ArcticDB's ``update()``, and left one more
        snapshot and one more superseded file per retry. Sound because a part whose every
        row the latest snapshot shows holds every live row of its keys: each append first
        deletes the stored rows of its keys (or snapshot times), so no other live file can
        hold one, and the DELETE would remove exactly this part's rows for the INSERT to put
        them back.

        Cost: a new batch (no part of its ``parquet.batch_tag`` in the day's folder) pays one
        folder listing and the tag (about 0.3 ms of a 40-50 ms append). For parts with its tag,
        DuckDB counts the rows the latest snapshot shows of each (10-20 ms, DuckLake's
        ``filename`` column; a count equal to the batch's means no delete of any kind touched
        it), while the worker thread reads them back and compares them value by value (about
        30-40 ms for 112,000 equal rows from disk). A corrected snapshot (same first and last
        rows, other values changed) pays the count and the columns up to the first that
        differs (about 15 ms) on top of its DELETE + INSERT. Runs under the day's writer lock,
        so no other writer changes the day meanwhile."""
        paths = publish.tagged_parts(self.location, td, day, tag)
        if not paths:
            return False
        self._write_threads(td, beside=True)  # the count runs beside the read-back
        # one or two candidates (the usual case) are read on the worker thread while the
        # DuckDB counts (both release the GIL): 30-40 + 10-20 ms one after the other
        reads = {p: _worker("lake-fsync").submit(parquet.holds, p, td, batch) for p in paths} if len(paths) <= 2 else {}
        try:
            # rows each candidate shows the latest snapshot: all of the batch's, or it is not
            # whole (superseded: 0; a delete file or inlined deletes against it: fewer)
            for attempt in _retrying():
                with attempt:
                    shown = dict(self.con.execute(
                        f"SELECT filename, count(*) FROM {ALIAS}.{ident(td.name)} WHERE date = ? AND "
                        f"filename IN ({', '.join('?' * len(paths))}) GROUP BY filename",
                        [day, *map(str, paths)]).fetchall())
            return any(reads[p].result() if p in reads else parquet.holds(p, td, batch)
                       for p in paths if shown.get(str(p)) == batch.num_rows)
        finally:
            wait(list(reads.values()))

    def compact_day(self, td: TableDef, day: date) -> LakeWrite:
        """Fold the day's files into one file and publish it at the plain-layout path.
        No-op (still re-publishing, in case a crash interrupted it) when already compacted."""
        self.ensure_table(td)
        return self._minding_lost_files(td, day, lambda: self._compact_day(td, day))

    def _compact_day(self, td: TableDef, day: date) -> LakeWrite:
        with self._mutex, self.location.writer_lock(td.name, day.isoformat()):
            files = publish.day_files(self.con, td, day)
            if publish.is_compacted(td, day, files, self.location):
                path = publish.publish(self.location, td, day, files[0][0])
                return LakeWrite(td.name, day, files[0][2], path, 0, skipped=True)
            if not files:
                # nothing registered: either never written, or written whole with no rows,
                # whose empty published file says "archived, no rows" and stays
                plain = publish.plain_file(self.location, td, day)
                empty = plain.exists() and (  # on S3 only an empty write_day leaves one here
                    not isinstance(plain, Path) or pq.ParquetFile(plain).metadata.num_rows == 0)
                if not empty:
                    publish.unpublish(self.location, td, day)
                    plain = None
                return LakeWrite(td.name, day, 0, plain, 0, skipped=True)
            cols = ", ".join(ident(c) for c in td.schema.names)
            sql = f"SELECT {cols} FROM {ALIAS}.{ident(td.name)} WHERE date = ?"

            def rows(con: duckdb.DuckDBPyConnection):
                got = parquet.read_day_files(self.location, td, files)
                if got is None:  # deletes, a remote data path or files that disagree: ask DuckDB
                    self._set_threads(None)
                    return parquet.sort_rows(con.execute(sql, [day]).pl(), td.sort_key)
                frame, sizes = got
                # sorted on this thread while the DELETE runs on the commit worker
                return lambda: parquet.sort_rows(frame, td.sort_key, sizes)

            delete = (f"DELETE FROM {ALIAS}.{ident(td.name)} WHERE date = ?", [day])
            return self._commit_file(td, day, rows, delete, "compact")

    def _minding_lost_files(self, td: TableDef, day: date, write):
        """``write()``; when it fails because a data file the catalog lists for the day is gone
        from storage: a compacted day file whose plain-layout link (on S3: copy) still holds it
        is put back and the write runs again; any other lost file is a ``LostDataFiles`` naming
        them (DuckLake reads a file to delete its rows, so the day cannot be replaced without
        it). Only the failure path asks the catalog (an append pays nothing)."""
        try:
            return write()
        except (duckdb.IOException, FileNotFoundError) as exc:
            try:
                with self._mutex, self.location.writer_lock(td.name, day.isoformat()):
                    lost = publish.lost_files(self.location, self.con, td, day)
                    left = publish.restore_from_plain(self.location, td, day, lost) if lost else []
            except (duckdb.Error, OSError):
                raise exc from None  # cannot tell (the catalog or the disk failing too): as it was
            if not lost:
                raise
            if left:
                raise publish.LostDataFiles(td, day, left) from None
        return write()

    def _commit_file(self, td: TableDef, day: date, rows, delete: tuple, step: str,
                     tag: str = "") -> LakeWrite:
        """Get the rows and write them as a new file (outside the catalog: the partition lock
        keeps other writers of the day away); one transaction runs ``delete`` and registers
        the file once it is written (on a local data path the transaction starts before, on
        the commit worker: see ``ready`` below; on S3 once the file is uploaded).
        ``write_day``/``compact`` then publish it at the plain path."""
        whole_day = step != "append"
        table = rows(self.con)
        final = publish.new_file(self.location, td, day, compacted=whole_day, tag=tag)
        self.location.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.location.tmp_dir / f"{final.name}.{os.getpid()}.tmp"
        # a whole day with no rows still gets its (empty) file: "archived, nothing happened"
        # must differ from "never archived" for the coverage ledger and plain-layout readers
        keep = whole_day or bool(len(table))
        self._commit_failed = False

        syncing = None
        # The transaction (BEGIN, the DELETE) runs on the commit worker while this thread
        # finishes the rows (``rows`` may return a function that does so without the
        # connection: compaction's sort) and encodes the file; it registers the file and
        # commits once the file is written (``ready``), or rolls back if that failed. DuckLake
        # records each stored row a DELETE removes: 0.3-0.4 s of one core for a 3 M-row day,
        # while the encoding leaves the other core partly idle; an append's DELETE (6-9 ms)
        # leaves the commit waiting only for ``ducklake_add_data_files`` once the part is
        # written, as the part's pages go to disk while it is encoded (``durable.write_back``).
        # The catalog lock is held meanwhile: a whole day's encoding, about a second once a
        # day per dataset, or an append's 15-25 ms. Not on S3: an upload may take seconds, too
        # long to hold the catalog lock.
        ready: Future | None = Future() if self.location.s3 is None else None
        self._write_threads(td, beside=ready is not None, whole_day=whole_day)

        def body(con: duckdb.DuckDBPyConnection) -> None:
            if self._commit_failed and str(final) in self._live_files(td):
                return  # an earlier attempt's COMMIT raised but landed
            if len(delete) > 2:
                con.register("__batch", delete[2])
            con.execute(delete[0], delete[1])
            if ready is not None:
                ready.result()  # raises _NotWritten if the file failed: the DELETE rolls back
            if keep:
                con.execute("CALL ducklake_add_data_files(?, ?, ?)", [ALIAS, td.name, str(final)])
            if syncing is not None:
                syncing.result()  # the file is on disk before the commit makes it visible
            crash_point(f"{step}:insert")

        # the worker's outcome; created here, so that an interrupt even inside submit() leaves
        # a future the caller can cancel (not started yet) or wait for
        committing: Future | None = Future() if ready is not None else None

        def commit() -> None:
            if not committing.set_running_or_notify_cancel():
                return  # cancelled before it started: the caller gave up
            try:
                committing.set_result(self._transaction(body))
            except BaseException as exc:
                committing.set_exception(exc)

        try:
            if committing is not None:
                _worker("lake-commit").submit(commit)
            if callable(table):
                table = table()
            if keep:
                # a local file's fsyncs (I/O waits: ~2 ms a snapshot, ~40 ms an 85 MB day) run
                # on the fsync worker while the catalog statements run; an appended part
                # then leaves the page cache (durable.drop_cached: the next part's pages)
                local = isinstance(final, Path)
                # an appended part's pages start for the disk while it is encoded (they are
                # dropped once there anyway), on the fsync worker, idle until the fsync
                stop = threading.Event()
                try:
                    if local and not whole_day:
                        _worker("lake-fsync").submit(durable.write_back, tmp, stop)
                    size = publish.write_file(td, table, day, tmp, final, compacted=whole_day,
                                              durable=not local)
                finally:
                    stop.set()
                if local:
                    syncing = _worker("lake-fsync").submit(
                        publish.make_durable, final, drop_cache=not whole_day)
            else:
                size = 0
            crash_point(f"{step}:file")
            if ready is None:
                self._transaction(body)
            else:
                ready.set_result(None)
                interrupted = _wait_out(committing)
                if interrupted is not None:  # the handler below finds out whether it landed
                    raise interrupted
                committing.result()  # the transaction's own error, if any
        except BaseException as exc:
            if ready is not None and not ready.done():  # the file failed (or an interrupt came
                # before ``ready`` was resolved): the worker rolls back with an exception of its
                # own, the caller re-raises its own
                ready.set_exception(_NotWritten(f"{td.name} {day}: the file was not written"))
            # the worker's transaction ends (committed or rolled back) before anything else
            # happens here: it holds the catalog lock and uses this Lake's connection
            held = None
            if committing is not None and not committing.cancel():
                held = _wait_out(committing)
            # an interrupt outranks the error it interrupted (a failed encoding, a rollback)
            first = held if held is not None and isinstance(exc, Exception) else None
            if committing is not None and not committing.cancelled() and committing.exception() is None:
                # an interrupt (Ctrl-C, a run's termination) arrived while the worker
                # committed: the write is done, so a whole day is published before the
                # interrupt goes on (an appended part is never the plain-layout file)
                try:
                    if whole_day:
                        publish.publish(self.location, td, day, str(final))
                except OSError:
                    pass  # the plain layout stays one version behind, as after a crash here
            else:
                if syncing is not None:
                    wait([syncing])  # never delete a file a worker still has open
                self._drop_unregistered(td, [tmp, final])
            if first is not None:
                raise first from exc
            raise
        crash_point(f"{step}:commit")
        n = len(table)
        path = None
        if whole_day:
            try:
                path = publish.publish(self.location, td, day, str(final))
            except OSError as exc:  # committed: the error must not claim that nothing changed
                raise publish.PublishFailed(exc, publish.plain_file(self.location, td, day)) from exc
            crash_point(f"{step}:publish")
        return LakeWrite(td.name, day, n, path, size)

    def _live_files(self, td: TableDef) -> set[str]:
        return {r[0] for r in self.con.execute(
            "SELECT data_file FROM ducklake_list_files(?, ?)", [ALIAS, td.name]).fetchall()}

    def snapshot_id(self) -> int:
        """The latest committed DuckLake snapshot (``AT (VERSION => id)`` reads it back)."""
        with self._mutex:
            return self._snapshot_id()

    def _drop_unregistered(self, td: TableDef, paths: list) -> None:
        """After a failed write: delete its temp files, and its data files unless the catalog
        references them (a commit that raised yet succeeded). If the catalog cannot be asked
        (disk full), data files stay as orphans that ``expire`` removes."""
        for p in paths:
            if isinstance(p, Path) and p.suffix == ".tmp":
                p.unlink(missing_ok=True)
        if self._commit_failed:  # the commit may have landed: leave the files to expiry
            return
        try:
            live = self._live_files(td)
        except duckdb.Error:
            return
        for p in paths:
            if str(p) not in live and not (isinstance(p, Path) and p.suffix == ".tmp"):
                try:
                    publish.delete_file(p)
                except OSError:  # bucket unreachable: an orphan that expire() removes
                    pass

    # -- reads -----------------------------------------------------------------------------
    def read_day(self, td: TableDef, day: date, columns: Sequence[str] | None = None,
                 order_by: Sequence[str] | None = None) -> pa.Table:
        """The day's rows as of the latest snapshot, cast to the table's schema."""
        return self.read_range(td, day, day, columns, order_by)

    def read_range(self, td: TableDef, start: date, end: date,
                   columns: Sequence[str] | None = None,
                   order_by: Sequence[str] | None = None) -> pa.Table:
        """Rows with ``start <= date <= end`` (``date`` is not returned; ask for it by name)."""
        wanted = list(columns) if columns is not None else td.schema.names
        unknown = [c for c in wanted if c not in td.schema.names and c != "date"]
        if unknown:
            raise ValueError(f"{td.name}: unknown columns {unknown}")
        if td.name not in self.tables():
            return _schema(td, wanted).empty_table()
        order = f" ORDER BY {', '.join(ident(c) for c in order_by)}" if order_by else ""
        with self._mutex:
            self._set_threads(None)
            try:
                out = self.con.execute(
                    f"SELECT {', '.join(ident(c) for c in wanted)} FROM {ALIAS}.{ident(td.name)} "
                    f"WHERE date BETWEEN ? AND ?{order}", [start, end]).to_arrow_table()
            except duckdb.IOException as exc:
                # on S3 the store names the bucket's settings with the missing object (a wrong
                # URL or credentials look the same from here)
                lost = self._lost_in(td, start, end) if self.location.s3 is None else None
                if lost is None:
                    raise
                raise lost from exc
        return _cast(td, out, wanted)

    def _lost_in(self, td: TableDef, start: date, end: date) -> "publish.LostDataFiles | None":
        """After a failed read: the first day in ``start..end`` with data files gone from
        storage, as the error to raise (None: none is, or the catalog cannot say)."""
        try:
            for day in (d for d in self.days(td) if start <= d <= end):
                lost = publish.lost_files(self.location, self.con, td, day)
                if lost:
                    return publish.LostDataFiles(td, day, lost, writing=False)
        except (duckdb.Error, OSError):
            return None
        return None

    def files(self, td: TableDef, day: date) -> list:
        """The data files the latest snapshot reads for the day (not the plain-layout link):
        ``Path``s, or ``RemoteFile``s (``s3://`` URLs with ``stat()``) on S3."""
        if td.name not in self.tables():
            return []
        with self._mutex:
            return [publish.as_file(self.location, f) for f, _, _ in publish.day_files(self.con, td, day)]

    def plain_file(self, td: TableDef, day: date):
        """The plain-layout file of a compacted day (``Path`` or ``RemoteFile``)."""
        return publish.plain_file(self.location, td, day)

    def days(self, td: TableDef | str) -> list[date]:
        name = td if isinstance(td, str) else td.name
        if name not in self.tables():
            return []
        # from the catalog's file list (every data file sits in its date=YYYY-MM-DD folder), not
        # a scan of the data: a day whose file was lost on disk is still a day the archive
        # claims, which the coverage ledger then finds missing, instead of an IO error here
        with self._mutex:
            rows = self.con.execute("SELECT data_file FROM ducklake_list_files(?, ?)", [ALIAS, name]).fetchall()
        return sorted({date.fromisoformat(m.group(1)) for (f,) in rows if (m := _DAY_DIR.search(f))})

    # -- maintenance -----------------------------------------------------------------------
    def expire(self, retention: timedelta = DEFAULT_RETENTION) -> list[str]:
        """Expire snapshots older than ``retention`` and delete files that only they needed,
        once those were scheduled for deletion ``retention`` ago. Returns the deleted paths.
        A negative ``retention`` (a cutoff in the future) is a ``ValueError``; nothing is
        expired."""
        if not isinstance(retention, timedelta) or retention < timedelta(0):
            raise ValueError(f"retention must be a timedelta of zero or more, got {retention!r}")
        secs = int(retention.total_seconds())
        cutoff = f"now() - INTERVAL {secs} SECOND"
        with self._mutex:
            for attempt in _retrying():
                with attempt:
                    # by id, not ``older_than``: the snapshot that was current at the cutoff
                    # still describes the archive at every instant from it to the next commit,
                    # inside the window (after a quiet weekend, ``as_of`` three days ago reads
                    # it); ``older_than`` expired it too
                    old = [r[0] for r in self.con.execute(
                        f"SELECT snapshot_id FROM ducklake_snapshots('{ALIAS}') WHERE snapshot_id < "
                        f"(SELECT max(snapshot_id) FROM ducklake_snapshots('{ALIAS}') "
                        f"WHERE snapshot_time <= {cutoff})").fetchall()]
                    if old:
                        self.con.execute(f"CALL ducklake_expire_snapshots('{ALIAS}', versions => "
                                         f"[{', '.join(str(int(i)) for i in old)}])")
                    gone = self.con.execute(
                        f"CALL ducklake_cleanup_old_files('{ALIAS}', older_than => {cutoff})").fetchall()
                    gone += self.con.execute(
                        f"CALL ducklake_delete_orphaned_files('{ALIAS}', older_than => {cutoff})").fetchall()
        publish.remove_stale_temps(self.location, retention)
        return [r[0] for r in gone]


def _wait_out(future: Future) -> BaseException | None:
    """Wait until ``future`` is done, whatever is raised in this thread meanwhile (an interrupt:
    KeyboardInterrupt, a run's termination), and return the first such exception for the
    caller to raise once it has dealt with the outcome. Once its file is ready, the commit
    worker's transaction ends within milliseconds (if the file failed, once the worker has the
    catalog lock and has rolled back); leaving it running would let the caller release the
    day's lock, or close the connection the worker uses, mid-commit."""
    held = None
    while True:
        try:
            wait([future])
            return held
        except BaseException as exc:
            held = held or exc


class _NotWritten(Exception):
    """Ends a write's transaction on the commit worker (rolled back) when writing
    its file failed; the caller re-raises what made it fail."""


_WORKERS: dict[str, tuple[int, ThreadPoolExecutor]] = {}


def _worker(name: str) -> ThreadPoolExecutor:
    """This process's one-thread worker ``name`` ("lake-fsync": fsyncs and read-backs;
    "lake-commit": a local write's transaction). A forked child gets its own: the parent's
    thread does not exist there, and its executor would never run the work (the commit would
    wait forever)."""
    pid, pool = _WORKERS.get(name, (None, None))
    if pool is None or pid != os.getpid():
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        _WORKERS[name] = (os.getpid(), pool)
    return pool


def _schema(td: TableDef, wanted: Iterable[str]) -> pa.Schema:
    fields = [td.schema.field(c) if c != "date" else pa.field("date", pa.date32()) for c in wanted]
    return pa.schema(fields, metadata=td.schema.metadata)


def _cast(td: TableDef, table: pa.Table, wanted: Iterable[str]) -> pa.Table:
    return table.cast(_schema(td, wanted))
