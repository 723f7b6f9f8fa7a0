"""DuckDB views over the archive: one typed view per dataset, in a file holding nothing else.

The Parquet files are the truth; the DuckDB file only holds view definitions (a few KB), so it
is rebuilt from scratch into a temp file and swapped in with ``os.replace``. Analysts holding
the old file read-only keep reading it; new connections see the new views. DuckDB refuses a
read-write connection while another process has the file open read-only, so rebuilding in place
would need every reader to go away first.
"""

from __future__ import annotations

import os
from glob import escape as glob_escape
from pathlib import Path
from collections.abc import Mapping
from typing import Literal

import duckdb
import pyarrow as pa

from archive_platform.datasets import DATASETS
from archive_platform.schemas import ArchiveSpec, ArchiveType
from archive_platform.store.files import fsync_dir, temp_path
from archive_platform.store.layout import parquet_glob as _glob

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
    """Glob of every file of a type: daily files and not-yet-compacted parts."""
    return _glob(root, spec.directory)


def view_sql(root: Path, spec: ArchiveSpec, *, has_files: bool) -> str:
    """``CREATE VIEW`` for one type: canonical columns cast to canonical types, plus ``date``.

    Without files the view is an empty typed SELECT, since ``read_parquet`` fails on an empty
    glob; refresh the views once data lands (the Dagster layer does so after each write).
    """
    # never build SQL from anything but registered names or plain identifiers
    if spec.name not in VIEW_NAMES and not spec.name.isidentifier():
        raise ValueError(f"unknown archive type {spec.name!r}")
    name = quote_ident(spec.name)
    if has_files:
        cols = [
            f"CAST({quote_ident(f.name)} AS {duckdb_type(f.type)}) AS {quote_ident(f.name)}"
            for f in spec.schema
        ]
        cols.append('CAST("date" AS DATE) AS "date"')
        src = (
            f"read_parquet({quote_literal(parquet_glob(root, spec))}, hive_partitioning = true, "
            "hive_types = {'date': DATE}, union_by_name = true)"
        )
        return f"CREATE VIEW {name} AS SELECT {', '.join(cols)} FROM {src}"
    cols = [f"CAST(NULL AS {duckdb_type(f.type)}) AS {quote_ident(f.name)}" for f in spec.schema]
    cols.append('CAST(NULL AS DATE) AS "date"')
    return f"CREATE VIEW {name} AS SELECT {', '.join(cols)} WHERE false"


def _has_files(root: Path, spec: ArchiveSpec) -> bool:
    base = Path(root) / spec.directory
    return base.is_dir() and any(base.glob("date=*/*.parquet"))


def refresh_views(root: Path, db_path: Path, datasets=DATASETS) -> list[str]:
    """(Re)build ``db_path`` so it holds exactly one view per archive type over ``root``.

    Builds into a temp file beside ``db_path`` and atomically replaces it: no lock on the live
    file is ever needed, and open read-only connections keep their (old) file. Returns the view
    names created.
    """
    root = Path(root).absolute()
    db_path = Path(db_path).absolute()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # the store's temp naming: hidden, ending .tmp, so nothing mistakes it for the database
    _remove_dead_temps(db_path)
    tmp = temp_path(db_path)
    names: list[str] = []
    try:
        con = duckdb.connect(str(tmp))
        try:
            for spec in datasets:
                con.execute(view_sql(root, spec, has_files=_has_files(root, spec)))
                names.append(spec.name)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, db_path)
        fsync_dir(db_path.parent)  # the rename itself survives a power cut
    finally:
        for leftover in (tmp, Path(str(tmp) + ".wal")):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:  # e.g. a read-only file system: the error that got us here matters
                pass
    return names


def _remove_dead_temps(db_path: Path) -> None:
    """Temp files of refreshes whose process died (``.<name>.<pid>.<hex>.tmp`` and its ``.wal``)."""
    prefix = f".{db_path.name}."
    for entry in db_path.parent.glob(f"{glob_escape(prefix)}*.tmp*"):
        pid = entry.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def connect(db_path: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the views file; read-only by default so writers' refreshes are never blocked."""
    return duckdb.connect(str(db_path), read_only=read_only)
