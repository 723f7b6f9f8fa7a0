"""The one reader entry point: a DuckDB connection with every dataset queryable by its name."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from archive_platform.lake.catalog import ALIAS, LakeLocation, catalog_error, ident
from archive_platform.lake.remote import LakeConfig

#: what SQLite (through DuckDB) says of a catalog file that is not a whole SQLite database
_DAMAGED = re.compile(r"file is not a database|database disk image is malformed|"
                      r"file is encrypted or is not a database")


def utc_stamp(as_of: datetime) -> str:
    """``as_of`` as the UTC ISO instant DuckLake's ``SNAPSHOT_TIME`` takes; ValueError for
    anything but a timezone-aware datetime, or an instant outside UTC's range. The one check
    of every time-travel entry (``connect``, the shell's init script, ``sql --as-of``)."""
    if not isinstance(as_of, datetime) or as_of.utcoffset() is None:
        # 10:05 meant in New York but read as UTC would be a 5-hour look-ahead (a tzinfo
        # whose utcoffset() is None is naive too: astimezone would read it as local time)
        raise ValueError(f"as_of must be a timezone-aware datetime (e.g. tzinfo=timezone.utc or "
                         f"ZoneInfo('America/New_York')), got {as_of!r}")
    try:
        return as_of.astimezone(timezone.utc).isoformat()
    except OverflowError:  # year 9999 in New York is year 10000 in UTC
        raise ValueError(f"as_of {as_of!r} is out of range in UTC") from None


def connect(root: str | Path, read_only: bool = True, as_of: datetime | None = None, *,
            catalog: str | None = None, data_path: str | None = None,
            config: LakeConfig | None = None) -> duckdb.DuckDBPyConnection:
    """Open the archive at ``root``: each table is a view of the same name (``options``,
    ``uw_flow``, ...; ``date`` is a DATE column), and the lake itself is attached as ``lake``.
    ``archive_platform.connect()`` adds the not-yet-written datasets and the macros.

    ``as_of``: the archive as it stood at that instant (a timezone-aware datetime; a naive one
    is refused, as the CLI refuses a time without offset). Read-only connections take no lock a writer waits for (SQLite catalog in WAL mode).
    Each statement sees the latest committed snapshot when it starts, whole.
    ``config``: a catalog on PostgreSQL and/or the data on S3 (``settings.lake_config``).
    """
    loc = LakeLocation.for_root(root, catalog, data_path, config)
    if loc.catalog.startswith("sqlite:") and not Path(loc.catalog[len("sqlite:"):]).exists():
        raise FileNotFoundError(f"no lake catalog at {loc.catalog[len('sqlite:'):]}: "
                                f"nothing has been written to {loc.root} yet (or migrate it)")
    if as_of is not None and not read_only:
        raise ValueError("time travel (as_of) is read-only")
    stamp = None if as_of is None else utc_stamp(as_of)
    try:
        con = loc.open(read_only=read_only, as_of=stamp)
    except duckdb.Error as exc:
        if read_only and not loc.postgres and "creating a new DuckLake is explicitly disabled" in str(exc):
            # the catalog file exists but holds no lake yet (a writer is creating it, or died
            # doing so): as for a root without a catalog
            raise FileNotFoundError(f"no lake in the catalog {loc.catalog[len('sqlite:'):]}: nothing has "
                                    f"been written to {loc.root} yet (or migrate it)") from None
        clear = None if loc.postgres else _sqlite_refusal(exc, Path(loc.catalog[len("sqlite:"):]))
        if clear is not None:
            raise clear from None
        if stamp is None or "No snapshot found" not in str(exc):
            raise
        raise ValueError(f"the archive at {loc.root} has no snapshot at or before {stamp}: that is "
                         "before its first write, or older than the retention of old snapshots "
                         "(ARCHIVE_LAKE_RETENTION_DAYS, 7 days by default); see "
                         "ducklake_snapshots('lake') for what it holds") from None
    try:
        names = table_names(con)
        probe_data(con, loc, names)
        for name in names:  # the same statement the CLI init script runs (shell.init_sql)
            con.execute(f"CREATE VIEW memory.main.{ident(name)} AS SELECT * FROM {ALIAS}.main.{ident(name)}")
    except (duckdb.Error, OSError) as exc:
        con.close()
        clear = read_error(exc, loc)
        if clear is None:
            raise
        raise clear from None  # the driver's text, scrubbed, is in the message
    return con


def _sqlite_refusal(exc: duckdb.Error, catalog: Path) -> Exception | None:
    """A SQLite catalog that cannot be opened, as one line naming it (a ``LakeCatalogError``):
    a damaged file (a truncated copy, a bad restore, a disk fault), or a folder SQLite cannot
    write to. None: another failure."""
    damaged = _DAMAGED.search(str(exc))
    if damaged:
        return catalog_error(f"the lake catalog {catalog} cannot be read ({damaged[0]}): it is "
                             "damaged or not a DuckLake catalog; restore it from a backup "
                             "(docs/deployment.md, Backup)")
    if "unable to open database file" in str(exc) and not os.access(catalog.parent, os.W_OK):
        return catalog_error(f"the lake catalog in {catalog.parent} cannot be opened: that folder is "
                             "not writable (a read-only mount or copy), and SQLite in WAL mode creates "
                             "its shared-memory file beside the catalog even to read; copy the "
                             "archive to a writable place or mount it read-write")
    return None


def probe_data(con: duckdb.DuckDBPyConnection, loc: LakeLocation, names: list[str]) -> None:
    """With the data on S3: ask the bucket for one object the catalog names (a HEAD request, the
    reader's own DuckDB secret), so wrong credentials, a wrong bucket or endpoint, or an
    endpoint that is down fail here, once, naming the setting (``read_error``), instead of as
    DuckDB's HTTP error at the first query. An object that is missing is left to the query that
    needs it: the rest of the archive stays readable."""
    if loc.s3 is None:
        return
    for name in names:
        row = con.execute("SELECT data_file FROM ducklake_list_files(?, ?) LIMIT 1", [ALIAS, name]).fetchone()
        if row is None:
            continue
        try:
            con.execute("SELECT size FROM read_blob(?)", [row[0]]).fetchall()
        except duckdb.Error as exc:
            hint = loc.config.storage_problem(str(exc)) or ""
            if "missing from" in hint:  # that one object: not a verdict on the archive
                return
            raise
        return


def read_error(exc: BaseException, loc: LakeLocation, *, kind: str | None = None) -> Exception | None:
    """A reader's failure on a remote lake as one clear exception naming the setting to check,
    with no secret in it: the PostgreSQL catalog unreachable or refusing (a ``LakeCatalogError``,
    also mid-run, when the server went away after the lake was attached), or the bucket
    refusing or failing (a ``LakeStorageError``). None: not such a failure (re-raise it)."""
    if isinstance(exc, duckdb.Error):
        # a failure inside a query (the server gone mid-run) carries DuckDB's "LINE 2: SELECT *
        # FROM postgres_query(..." context after the driver's reason: not the user's SQL, drop it
        text = re.sub(r"\s*\bLINE \d+:.*", "", str(exc), flags=re.DOTALL)
        if text != str(exc):
            try:
                exc = type(exc)(text)
            except Exception:  # noqa: BLE001 - a type that cannot be rebuilt: keep the original
                pass
        clear = loc.postgres_refusal(exc)
        if clear is not None:
            return clear
    return loc.config.storage_error(exc, kind=kind)


def table_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables of the attached lake."""
    return [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND "
        "table_schema = 'main' ORDER BY 1", [ALIAS]).fetchall()]
