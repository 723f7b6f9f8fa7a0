"""``archive-platform sql``: the DuckDB CLI (pinned version) on the archive, read-only, with
every dataset queryable by name, as ``archive_platform.connect()`` gives Python."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click


@click.command()
@click.option("-c", "command", default=None, help="Run one SQL statement and exit.")
@click.option("--sim", is_flag=True, help="Open the simulated archive ($ARCHIVE_SIM_ROOT).")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="Archive root.")
@click.option("--as-of", "as_of", default=None,
              help="Time travel: the archive as it stood at this ISO instant (with its UTC offset).")
def sql(command: str | None, sim: bool, root: Path | None, as_of: str | None) -> None:
    """Open the archive in the duckdb shell (or run one statement with -c)."""
    from datetime import datetime

    from archive_platform.lake import shell
    from archive_platform.store import default_root

    stamp = None
    if as_of:
        try:
            stamp = datetime.fromisoformat(as_of)
        except ValueError:
            raise click.BadParameter(f"{as_of!r} is not an ISO instant", param_hint="--as-of") from None
        if stamp.tzinfo is None:
            raise click.BadParameter("give a UTC offset, e.g. 2025-11-26T10:05-05:00", param_hint="--as-of")
    path = root or default_root("sim" if sim else "live")
    fd, init = tempfile.mkstemp(prefix="archive-sql-", suffix=".sql")
    os.close(fd)
    try:
        shell.write_init_file(path, init, as_of=stamp)
    except FileNotFoundError as exc:
        Path(init).unlink(missing_ok=True)
        raise click.UsageError(str(exc)) from None
    argv = shell.cli_command(Path(init), command)
    os.execv(argv[0], argv)  # the init file is tiny; the shell reads it at start
