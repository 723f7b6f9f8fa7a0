"""Compatibility layer: a DuckDB file of views over the archive's *plain layout*.

The reader entry point is ``archive_platform.connect()`` (the lake: intraday data, snapshot
isolation, time travel). This file serves tools that cannot load the DuckLake extension (another
DuckDB version, a BI tool that opens a ``.duckdb`` file): one typed view per dataset over the
compacted days ``<root>/<dir>/date=*/*.parquet``, which every write of a whole day or compaction
publishes atomically. Intraday appends show up here only once the day is compacted.

The file only holds view definitions (a few KB), so it is rebuilt into a temp file and swapped
in with ``os.replace``: analysts holding the old file read-only keep reading it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from archive_platform.datasets import DATASETS
from archive_platform.schemas import ArchiveSpec, ArchiveType
from archive_platform.durable import fsync_dir
from archive_platform.procs import pid_alive
from archive_platform.store.layout import plain_glob

Kind = Literal["live", "sim"]
DEFAULT_DUCKDB: dict[str, str] = {"live": "data/archive.duckdb", "sim": "data/sim/archive.duckdb"}
VIEW_NAMES: frozenset[str] = frozenset(t.value for t in ArchiveType)


DUCKDB_ENV: dict[str, str] = {"live": "ARCHIVE_DUCKDB", "sim": "ARCHIVE_SIM_DUCKDB"}


def default_duckdb_path(kind: Kind = "live", env: Mapping[str, str] | None = None) -> Path:
    """``$ARCHIVE_DUCKDB`` / ``data/archive.duckdb`` (live), ``$ARCHIVE_SIM_DUCKDB`` /
    ``data/sim/archive.duckdb`` (sim). ``env`` defaults to the process environment."""
    if kind not in DEFAULT_DUCKDB:
        raise ValueError(f"kind must be 'live' or 'sim', got {kind!r}")
    if env is None:
        from archive_platform.settings import environment

        env = environment()
    value = env.get(DUCKDB_ENV[kind])
    return Path(value) if value else Path(DEFAULT_DUCKDB[kind])


def duckdb_type(t: pa.DataType) -> str:
    """The DuckDB type of a canonical Arrow type (the only place the mapping is spelled)."""
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return "TIMESTAMP"
        if t.tz.upper() != "UTC":
            raise ValueError(f"archive timestamps are UTC, got {t}")
        return "TIMESTAMPTZ"
    simple = {
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.bool_(): "BOOLEAN",
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.date32(): "DATE",
    }
    if t in simple:
        return simple[t]
    if pa.types.is_list(t):  # order-book levels: list<double> -> DOUBLE[]
        return duckdb_type(t.value_type) + "[]"
    raise ValueError(f"no DuckDB type for Arrow type {t}")


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A single-quoted SQL string literal (embedded quotes doubled)."""
    if "\x00" in text:
        raise ValueError("NUL byte in SQL literal")
    return "'" + text.replace("'", "''") + "'"


def parquet_glob(root: Path, spec: ArchiveSpec) -> str:
    """Glob of a type's compacted days in the plain layout (glob characters of the root escaped)."""
    return plain_glob(root, spec.directory)


def _source(root: Path, spec: ArchiveSpec) -> str:
    """The ``read_parquet`` of a type's compacted days (all files' columns, by name)."""
    return (f"read_parquet({quote_literal(parquet_glob(root, spec))}, hive_partitioning = true, "
            "hive_types = {'date': DATE}, union_by_name = true)")


def view_sql(root: Path, spec: ArchiveSpec, *, has_files: bool,
             present: frozenset[str] | None = None) -> str:
    """``CREATE VIEW`` for one type: canonical columns cast to canonical types, plus ``date``.

    Without files the view is an empty typed SELECT, since ``read_parquet`` fails on an empty
    glob; refresh the views once a first day of the type is compacted. ``present``: the columns
    the files have (None: all); a column no file has yet (the schema gained it) is a typed NULL.
    """
    # never build SQL from anything but registered names or plain identifiers
    if spec.name not in VIEW_NAMES and not spec.name.isidentifier():
        raise ValueError(f"unknown archive type {spec.name!r}")
    name = quote_ident(spec.name)
    if has_files:
        cols = [
            f"CAST({quote_ident(f.name) if present is None or f.name in present else 'NULL'} "
            f"AS {duckdb_type(f.type)}) AS {quote_ident(f.name)}"
            for f in spec.schema
        ]
        cols.append('CAST("date" AS DATE) AS "date"')
        return f"CREATE VIEW {name} AS SELECT {', '.join(cols)} FROM {_source(root, spec)}"
    cols = [f"CAST(NULL AS {duckdb_type(f.type)}) AS {quote_ident(f.name)}" for f in spec.schema]
    cols.append('CAST(NULL AS DATE) AS "date"')
    return f"CREATE VIEW {name} AS SELECT {', '.join(cols)} WHERE false"


def _has_files(root: Path, spec: ArchiveSpec) -> bool:
    base = Path(root) / spec.directory
    return base.is_dir() and any(
        e.is_dir() and e.name.startswith("date=") and any(n.endswith(".parquet") for n in os.listdir(e.path))
        for e in os.scandir(base))


def _temp_name(db_path: Path, pid: int) -> Path:
    return db_path.with_name(f".{db_path.name}.{pid}.{secrets.token_hex(4)}.tmp")


def remove_dead_temps(db_path: Path) -> list[Path]:
    """Delete temp files (and their ``.wal``) left by a refresh whose process died."""
    gone = []
    prefix = f".{db_path.name}."
    for e in os.scandir(db_path.parent):
        rest = e.name[len(prefix):] if e.name.startswith(prefix) else ""
        pid = rest.split(".", 1)[0]
        if (rest.endswith(".tmp") or rest.endswith(".tmp.wal")) and pid.isdigit() and not pid_alive(int(pid)):
            Path(e.path).unlink(missing_ok=True)
            gone.append(Path(e.path))
    return gone


def refresh_views(root: Path, db_path: Path, datasets=DATASETS) -> list[str]:
    """(Re)build ``db_path`` so it holds exactly one view per archive type over ``root``.

    Builds into a temp file beside ``db_path`` and atomically replaces it: no lock on the live
    file is ever needed, and open read-only connections keep their (old) file. Returns the view
    names created. A ``root`` that does not exist while ``db_path`` has views over files is a
    FileNotFoundError, the file untouched.
    """
    root = Path(root).absolute()
    db_path = Path(db_path).absolute()
    if not root.is_dir() and _reads_files(db_path):
        # a mistyped root would replace the views of a real archive with empty ones; a views
        # file of empty views only (nothing written yet) is rebuilt as usual
        raise FileNotFoundError(f"archive root {root} does not exist; the views file {db_path} is "
                                "left as it is (check ARCHIVE_ROOT / ARCHIVE_SIM_ROOT)")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(db_path)
    # hidden and ending .tmp, so nothing mistakes it for the database
    tmp = _temp_name(db_path, os.getpid())
    names: list[str] = []
    try:
        con = duckdb.connect(str(tmp))
        try:
            for spec in datasets:
                has = _has_files(root, spec)
                present = frozenset(r[0] for r in con.execute(
                    f"DESCRIBE SELECT * FROM {_source(root, spec)}").fetchall()) if has else None
                con.execute(view_sql(root, spec, has_files=has, present=present))
                names.append(spec.name)
            from archive_platform import macros

            macros.install_for_views(con)  # the trading-day helpers, as connect() has them
            con.execute("CHECKPOINT")
        finally:
            con.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, db_path)
        fsync_dir(db_path.parent)  # the rename itself survives a power cut
    except (OSError, duckdb.Error) as exc:
        raise OSError(getattr(exc, "errno", None) or 5,
                      f"refreshing the views file {db_path} (temp {tmp.name}) failed: {exc}") from exc
    finally:
        for leftover in (tmp, Path(str(tmp) + ".wal")):
            try:  # never let the cleanup's own error (read-only file system) hide the real one
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
    return names


def _reads_files(db_path: Path) -> bool:
    """Whether the views file at ``db_path`` has a view over Parquet files (an archive's data)."""
    if not db_path.exists():
        return False
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error:
        return False  # not a views file we can read: replacing it is what a refresh is for
    try:
        return con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal "
                           "AND sql ILIKE '%read_parquet(%'").fetchone()[0] > 0
    finally:
        con.close()


def connect(db_path: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the views file; read-only by default so writers' refreshes are never blocked."""
    return duckdb.connect(str(db_path), read_only=read_only)
