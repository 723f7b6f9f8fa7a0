"""The DuckDB CLI on the archive: the init script that gives it what ``connect()`` gives Python.

``archive-platform sql`` runs the ``duckdb`` CLI of the pinned version (package ``duckdb-cli``)
with an init script that loads the extensions from the installed wheels, creates the lake's
secrets from the environment (the CLI's getenv function, so no secret is written to the script),
attaches the lake read-only, creates one view per table, then runs ``extra`` statements (the
serving layer's empty datasets and macros) and finally deletes its own files.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from archive_platform.lake.catalog import ALIAS, LakeLocation, ident
from archive_platform.lake.extensions import extension_directory
from archive_platform.lake.remote import LakeConfig


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def init_sql(root: str | Path, tables: list[str], *, as_of: datetime | None = None,
             catalog: str | None = None, data_path: str | None = None,
             config: LakeConfig | None = None, extra: list[str] = (),
             cleanup: list[Path] = (), secret_ref: Callable[[str], str] | None = None) -> str:
    """The init script; ``secret_ref`` maps a secret's variable name to the SQL that reads it."""
    loc = LakeLocation.for_root(root, catalog, data_path, config)
    from archive_platform.lake.connect import utc_stamp

    stamp = None if as_of is None else utc_stamp(as_of)
    lines = [
        # statements print their result (CREATE SECRET a "Success" table): the script's go
        # nowhere, so the user sees only what they ask; errors still reach stderr
        ".output /dev/null",
        "SET autoinstall_known_extensions = false;",
        "SET autoload_known_extensions = false;",
        f"SET extension_directory = {_lit(str(extension_directory()))};",
        *[f"LOAD {e};" for e in loc.extensions()],
        "SET TimeZone = 'UTC';",
        *[s + ";" for s in loc.config.setup_sql(ref=secret_ref)],
        loc.attach_sql(read_only=True, as_of=stamp) + ";",
        *[f"CREATE VIEW memory.main.{ident(t)} AS SELECT * FROM {ALIAS}.main.{ident(t)};" for t in tables],
        *[s.strip().rstrip(";") + ";" for s in extra],
        ".output",
    ]
    if cleanup:  # the shell has read the script and built what it needs from these files
        lines.append(".shell rm -rf " + " ".join(_lit(str(p)) for p in cleanup))
    return "\n".join(lines) + "\n"


def duckdb_cli() -> str:
    """Path of the ``duckdb`` CLI installed with the project (same version as the library)."""
    here = Path(sys.executable).parent / "duckdb"
    if here.exists():
        return str(here)
    found = shutil.which("duckdb")
    if not found:
        raise FileNotFoundError("the duckdb CLI is not installed (package duckdb-cli)")
    return found


def cli_command(init_file: Path, sql: str | None = None) -> list[str]:
    """argv for the CLI: interactive, or running one statement (``-c``)."""
    # ".read" rather than -init, which prints "-- Loading resources from ..." on every call
    cmd = [duckdb_cli(), "-cmd", f".read {_lit(str(init_file))}"]
    return cmd + (["-c", sql] if sql is not None else [])


def write_init_file(root: str | Path, path: str | Path, *, as_of: datetime | None = None,
                    catalog: str | None = None, data_path: str | None = None,
                    config: LakeConfig | None = None, extra: list[str] = (),
                    cleanup: list[Path] = ()) -> Path:
    """Write the CLI init script for the archive's tables to ``path``: those it has now, or
    with ``as_of`` those it had then (an instant it does not hold is refused here, as
    ``connect(as_of=...)`` refuses it)."""
    from archive_platform.lake.connect import connect, table_names

    con = connect(root, as_of=as_of, catalog=catalog, data_path=data_path, config=config)
    try:
        names = table_names(con)
    finally:
        con.close()
    path = Path(path)
    path.write_text(init_sql(root, names, as_of=as_of, catalog=catalog, data_path=data_path,
                             config=config, extra=extra, cleanup=cleanup))
    return path
