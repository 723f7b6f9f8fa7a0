"""Where a lake lives (catalog + data path), how to attach it, and how writers take turns.

Default, for a local archive root ``<root>``::

    <root>/_lake/catalog.sqlite   the DuckLake catalog (SQLite, WAL journal)
    <root>/_lake/data/            files DuckLake writes itself, plus our compacted day files
    <root>/_lake/tmp/             our temp files (same file system, so renames are atomic)
    <root>/_lake/locks/           one flock file per (table, day) for writers

A ``LakeConfig`` (lake/remote.py) may instead put the catalog on PostgreSQL
(``postgres:<conninfo>``, loads ``postgres_scanner``; writers of a (table, day) then take turns on
a PostgreSQL advisory lock, so they may run on several machines) and the data path on S3
(``s3://bucket/prefix/_lake/data/``, loads ``httpfs``). The local ``<root>/_lake/tmp`` and
``locks`` folders are still used. Secrets come from the config (DuckDB secrets), never from here.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb

from archive_platform.lake.remote import LakeConfig

LAKE_DIR = "_lake"
ALIAS = "lake"  # the name the lake is attached under in every connection
#: SQLite busy timeout (ms): how long a writer waits for another writer's catalog commit
BUSY_TIMEOUT_MS = 30_000
#: DuckLake's refusal of a DATA_PATH other than the one its catalog stores, and that path
_STORED_PATH = re.compile(r'does not match existing data path in the catalog "([^"]+)"')
#: catalogs (of self-contained archives) found moved to their current root in this process
_MOVED: set[str] = set()
_RETRYABLE = re.compile(r"database is locked|database is busy|SQLITE_BUSY|conflict|"
                        r"Could not commit|could not serialize|deadlock", re.IGNORECASE)


def is_retryable(exc: BaseException) -> bool:
    """Catalog contention (SQLite lock, DuckLake write-write conflict): safe to retry whole."""
    return isinstance(exc, duckdb.Error) and bool(_RETRYABLE.search(str(exc)))


@dataclass(frozen=True)
class LakeLocation:
    root: Path
    catalog: str  # "sqlite:<path>" or "postgres:<conninfo>"
    data_path: str  # local directory (ending in /) or s3:// URL
    config: LakeConfig = field(default_factory=LakeConfig, compare=False)
    #: catalog and data both in their default places under ``root``: the archive is one folder
    #: that may be moved or restored elsewhere (see ``attach_sql``)
    self_contained: bool = False

    @classmethod
    def for_root(cls, root: str | Path, catalog: str | None = None,
                 data_path: str | None = None, config: LakeConfig | None = None) -> "LakeLocation":
        root = Path(root).absolute()
        config = config or LakeConfig()
        cat = catalog or config.catalog or f"sqlite:{root / LAKE_DIR / 'catalog.sqlite'}"
        if not (cat.startswith("sqlite:") or cat.startswith("postgres:")):
            raise ValueError(f"lake catalog must start with 'sqlite:' or 'postgres:', got {cat[:9]!r}")
        data = data_path or (config.s3.data_path if config.s3 else str(root / LAKE_DIR / "data"))
        own = not (catalog or config.catalog or data_path or config.s3)
        if catalog and catalog != config.catalog and cat.startswith("postgres:"):
            # the config is what opens PostgreSQL (advisory locks, the password): a catalog
            # given here must reach it, or the first write failed on an assertion
            config = replace(config, catalog=cat)
        return cls(root, cat, data.rstrip("/") + "/", config, own)

    @property
    def postgres(self) -> bool:
        return self.catalog.startswith("postgres:")

    @property
    def s3(self):
        """The ``S3Location`` of the data path, or None for a local one."""
        return self.config.s3 if not self.local_data else None

    def setup_sql(self) -> list[str]:
        """Secrets to create in a connection before ``attach_sql`` (never log these)."""
        return self.config.setup_sql()

    @property
    def local_data(self) -> bool:
        return "://" not in self.data_path

    @property
    def lake_dir(self) -> Path:
        return self.root / LAKE_DIR

    @property
    def tmp_dir(self) -> Path:
        return self.lake_dir / "tmp"

    def extensions(self) -> tuple[str, ...]:
        out = ["ducklake", "sqlite_scanner" if self.catalog.startswith("sqlite:") else "postgres_scanner"]
        if not self.local_data:
            out.append("httpfs")
        return tuple(out)

    def prepare(self) -> None:
        """Create local folders and switch a new SQLite catalog to WAL (readers never block
        the writer, the writer never blocks readers; WAL is a property of the file)."""
        for d in (self.lake_dir, self.tmp_dir, self.lake_dir / "locks"):
            d.mkdir(parents=True, exist_ok=True)
        if self.local_data:
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        if self.catalog.startswith("sqlite:"):
            path = Path(self.catalog[len("sqlite:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                # WAL is a property of the file, set by whoever created it. Never open an
                # existing catalog with Python's own SQLite: closing that handle drops the POSIX
                # locks the ducklake extension's SQLite holds on the same file in this process
                # ("disk I/O error" seen with two lakes of one root in one Dagster run).
                return
            con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode=WAL")
            finally:
                con.close()

    def open(self, *, read_only: bool, as_of: str | None = None) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection with the extensions loaded, the secrets created and the
        lake attached as ``lake``."""
        from archive_platform.lake.extensions import new_connection

        con = new_connection(self.extensions())
        try:
            for stmt in self.setup_sql():
                try:
                    con.execute(stmt)
                except duckdb.Error as exc:  # the statement holds a secret: never echo it
                    raise duckdb.InvalidInputException(
                        f"creating the lake's {stmt.split('(')[1].split(',')[0]} secret failed "
                        f"({type(exc).__name__})") from None
            try:
                con.execute(self.attach_sql(read_only=read_only, as_of=as_of))
            except duckdb.Error as exc:
                if self._moved_here(exc):
                    con.execute(self.attach_sql(read_only=read_only, as_of=as_of))
                else:
                    clear = self._data_path_refusal(exc) or self.postgres_refusal(exc)
                    if clear is None:
                        raise
                    raise clear from None  # the driver's text, scrubbed, is in the message
        except BaseException:
            con.close()
            raise
        return con

    def _data_path_refusal(self, exc: duckdb.Error) -> Exception | None:
        """A remote lake (S3 data or a PostgreSQL catalog) whose catalog holds its data at
        another path than this machine's settings give: one machine's ARCHIVE_S3_URL differs
        from the writers' (a typo, a prefix, unset). Refused, naming both paths and the setting:
        overriding it (DuckDB's hint) would split the archive."""
        found = _STORED_PATH.search(str(exc))
        if not found or not (self.config.s3 is not None or self.config.postgres):
            return None
        kind = {"ARCHIVE_LAKE_CATALOG": "", "ARCHIVE_SIM_LAKE_CATALOG": "SIM_"}.get(self.config.catalog_var)
        url_var = f"ARCHIVE_{kind}S3_URL" if kind is not None else "ARCHIVE_S3_URL (ARCHIVE_SIM_S3_URL)"
        here = self.data_path if self.config.s3 is not None else f"{self.data_path} ({url_var} not set)"
        catalog = (f"{self.config.catalog_var} (PostgreSQL {self.catalog[len('postgres:'):]})"
                   if self.postgres else self.catalog)
        return catalog_error(f"the lake catalog {catalog} holds this archive's data at {found.group(1)}, "
                             f"but the settings here give {here}: set {url_var} as on the machines "
                             "that write it (refused rather than split the archive)")

    def postgres_refusal(self, exc: duckdb.Error) -> Exception | None:
        """What an ATTACH refused by a PostgreSQL catalog means, as one clear exception naming
        the setting (None: not such a refusal). Read-only and nothing written yet:
        ``FileNotFoundError``, as for a local root; the server unreachable or refusing the
        connection (password, database, host): ``catalog_error``. Secrets never appear."""
        if not self.postgres:
            return None
        text = str(exc)
        where = (f"{self.config.catalog_var} (PostgreSQL {self.catalog[len('postgres:'):]}, "
                 f"schema {self.config.pg_schema or 'main'})")
        if "creating a new DuckLake is explicitly disabled" in text:
            return FileNotFoundError(f"no lake catalog in {where}: nothing has been written to this "
                                     "archive yet, or the setting names another database")
        found = re.search(r'Unable to connect to Postgres at "[^"]*":\s*(.*)', text, re.DOTALL)
        if not found:
            return None
        return catalog_error(f"cannot open the lake catalog of {where}: "
                             f"{self.config.scrub(_one_line(found.group(1)))}{_hint(found.group(1))}")

    def _moved_here(self, exc: duckdb.Error) -> bool:
        """Whether an ATTACH refused for a data path mismatch is this archive folder opened at
        a new place (copied, restored from a backup, moved with the checkout): the catalog is
        the default one under the root and the path it stores is the default data folder of an
        archive root elsewhere. Then (and only then) the lake is attached again with
        OVERRIDE_DATA_PATH: the catalog names its files relative to the data path, so it reads
        its own files. A catalog created with its data elsewhere (on S3, or an explicit data
        path since left unset) keeps DuckLake's refusal: overriding it would split the archive."""
        found = _STORED_PATH.search(str(exc))
        if not (self.self_contained and found):
            return False
        stored = found.group(1)
        if "://" in stored or not stored.rstrip("/").endswith(f"/{LAKE_DIR}/data"):
            return False
        _MOVED.add(self.catalog)
        return True

    def attach_sql(self, *, read_only: bool, as_of: str | None = None, alias: str = ALIAS) -> str:
        opts = [f"DATA_PATH {_lit(self.data_path)}"]
        if self.catalog in _MOVED:  # this archive folder was moved here: see _moved_here
            opts.append("OVERRIDE_DATA_PATH true")
        if self.catalog.startswith("sqlite:"):
            opts.append(f"META_BUSY_TIMEOUT {BUSY_TIMEOUT_MS}")
        if self.postgres and self.config.pg_schema:
            opts.append(f"METADATA_SCHEMA {_lit(self.config.pg_schema)}")
        if read_only:
            opts.append("READ_ONLY")
        if as_of is not None:
            opts.append(f"SNAPSHOT_TIME {_lit(as_of)}")
        return f"ATTACH {_lit('ducklake:' + self.catalog)} AS {alias} ({', '.join(opts)})"

    @contextmanager
    def catalog_lock(self) -> Iterator[None]:
        """Queue catalog transactions of one SQLite catalog on a flock (SQLite has one writer
        at a time anyway; queueing replaces spinning on SQLITE_BUSY and DuckLake's retry
        path). Held for delete + register + commit; on a local data path the transaction's
        DELETE runs while the file is encoded, so the lock then spans the encoding (an
        append's part: 15-25 ms; a whole day: about a second). On S3 the file is uploaded
        before. A PostgreSQL catalog needs no such lock."""
        if not self.catalog.startswith("sqlite:"):
            yield
            return
        with flock(self.lake_dir / "locks" / "_catalog.lock"):
            yield

    @contextmanager
    def writer_lock(self, table: str, day: str) -> Iterator[None]:
        """Serialise writers of one (table, day): DuckLake detects conflicting deletes but not
        two concurrent inserts of the same key, so without this two writers of one partition
        could both insert a key. ``flock`` dies with its holder (a SIGKILLed writer never
        wedges the partition). With a PostgreSQL catalog, writers on several machines take a
        session advisory lock in the catalog database instead; it too dies with its holder's
        connection."""
        if self.postgres:
            with self._advisory_lock(f"{self.config.pg_schema}.{table}.{day}"):
                yield
            return
        with flock(self.lake_dir / "locks" / f"{table}.{day}.lock"):
            yield

    def pg_connect(self, purpose: str, doing: str):
        """A psycopg2 connection to the PostgreSQL catalog's database (``purpose``: its
        application name). A server that refuses it is a ``LakeCatalogError`` saying what was
        being done (``doing``), naming the setting, scrubbed of secrets (a write wraps it as an
        ``OSError`` naming its partition)."""
        import psycopg2  # installed with dagster-postgres

        try:
            return psycopg2.connect(connect_timeout=30, application_name=f"archive_platform {purpose}",
                                    **self.config.pg_connect_kwargs())
        except psycopg2.OperationalError as exc:
            raise catalog_error(f"cannot {doing} of {self.config.catalog_var} (PostgreSQL "
                                f"{self.catalog[len('postgres:'):]}): "
                                f"{self.config.scrub(_one_line(str(exc)))}{_hint(str(exc))}") from None

    @contextmanager
    def _advisory_lock(self, name: str) -> Iterator[None]:
        conn = self.pg_connect("lake lock", "take the writer lock in the lake catalog")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:  # two int4 keys: a namespace and the name's hash
                cur.execute("SELECT pg_advisory_lock(hashtext('archive_platform.lake'), hashtext(%s))", (name,))
            yield
        finally:
            conn.close()  # closing the session releases the lock


@functools.cache
def _catalog_error_type() -> type:
    # created on first use: archive_platform.config (ConfigError) imports every dataset
    from archive_platform.config import ConfigError

    class LakeCatalogError(ConfigError, OSError):
        """The lake's PostgreSQL catalog cannot be opened (server unreachable, password,
        database). A ``ConfigError`` (the CLI prints its one line, naming the setting) and an
        ``OSError`` (a write re-raises it as ``ArchiveWriteError`` naming the partition)."""

    LakeCatalogError.__module__ = __name__
    return LakeCatalogError


def catalog_error(message: str) -> Exception:
    """A ``LakeCatalogError`` (see ``_catalog_error_type``) with ``message``."""
    return _catalog_error_type()(message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _hint(reason: str) -> str:
    """What to check, for the usual reasons a PostgreSQL server refuses a connection."""
    low = reason.lower()
    if "password" in low:
        return " (check ARCHIVE_LAKE_PG_PASSWORD, or DAGSTER_PG_PASSWORD, which it falls back to)"
    if "database" in low and "does not exist" in low:
        return " (create the database, or correct ARCHIVE_LAKE_PG_DB / the catalog's dbname)"
    if "is the server running" in low:  # libpq said it already
        return ""
    if any(w in low for w in ("connection refused", "could not translate", "timeout", "timed out",
                              "could not connect", "no route", "network is unreachable")):
        return " (is the server running and reachable at that host and port?)"
    return ""


@contextmanager
def flock(path: Path, *, wait: bool = True) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), released when the block ends
    or the process dies. ``wait=False``: ``BlockingIOError`` at once if another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def _lit(text: str) -> str:
    if "\x00" in text:
        raise ValueError("NUL byte in SQL literal")
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
