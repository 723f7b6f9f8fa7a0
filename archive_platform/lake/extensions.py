"""Offline loading of the DuckDB extensions the lake needs (no download, no autoload).

The extensions ship as PyPI wheels of the pinned DuckDB version (``duckdb-extension-ducklake``,
``-sqlite``, ``-postgres``, ``-httpfs``); each wheel holds ``extensions/v<ver>/<name>.duckdb_extension``.
DuckDB looks for ``<extension_directory>/v<ver>/<platform>/<name>.duckdb_extension`` and names
the SQLite and PostgreSQL scanners ``sqlite_scanner`` / ``postgres_scanner``, so we lay out a
private extension directory with symlinks once per process.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import duckdb

# wheel module suffix -> name DuckDB loads it by
_WHEELS = {"ducklake": "ducklake", "sqlite": "sqlite_scanner", "postgres": "postgres_scanner",
           "httpfs": "httpfs"}
_EXT_DIR: Path | None = None


def duckdb_version() -> str:
    return "v" + duckdb.__version__


def _wheel_file(name: str) -> Path:
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the DuckDB extension wheel duckdb-extension-{name} is not installed")
    base = Path(list(spec.submodule_search_locations)[0]) / "extensions" / duckdb_version()
    path = base / f"{name}.duckdb_extension"
    if not path.is_file():
        found = sorted(p.name for p in base.parent.glob("*"))
        raise RuntimeError(f"duckdb-extension-{name} has no build for DuckDB {duckdb_version()} "
                           f"(found {found}); pin the wheel to the DuckDB version")
    return path


def extension_directory() -> Path:
    """A directory laid out as DuckDB expects, linking to the installed extension wheels."""
    global _EXT_DIR
    if _EXT_DIR is not None and _EXT_DIR.is_dir():
        return _EXT_DIR
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    from archive_platform.settings import environment

    root = Path(environment().get("ARCHIVE_DUCKDB_EXTENSIONS") or
                Path(tempfile.gettempdir()) / f"archive_platform-duckdb-ext-{os.getuid()}")
    target = root / duckdb_version() / platform
    target.mkdir(parents=True, exist_ok=True)
    for wheel, name in _WHEELS.items():
        link = target / f"{name}.duckdb_extension"
        src = _wheel_file(wheel)
        if link.is_symlink() and os.readlink(link) == str(src):
            continue
        tmp = target / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(src, tmp)
        os.replace(tmp, link)  # atomic: concurrent processes agree on the final link
    _EXT_DIR = root
    return root


def new_connection(extensions: tuple[str, ...] = ("ducklake", "sqlite_scanner")) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the given extensions loaded from the wheels."""
    con = duckdb.connect(config={
        "extension_directory": str(extension_directory()),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })
    for name in extensions:
        con.execute(f"LOAD {name}")
    con.execute("SET TimeZone = 'UTC'")
    return con
