"""``archive-platform sql``: the DuckDB CLI (pinned version) on the archive, read-only, with
every dataset queryable by name, as ``archive_platform.connect()`` gives Python."""

from __future__ import annotations

import os
import shutil
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
    from archive_platform.lake.connect import utc_stamp
    from archive_platform.store import default_root

    stamp = None
    if as_of is not None:  # an empty --as-of (an unset variable) is refused, not read as "now"
        try:
            stamp = datetime.fromisoformat(as_of)
        except ValueError:
            raise click.BadParameter(f"{as_of!r} is not an ISO instant", param_hint="--as-of") from None
        if stamp.tzinfo is None:
            raise click.BadParameter("give a UTC offset, e.g. 2025-11-26T10:05-05:00", param_hint="--as-of")
        try:
            utc_stamp(stamp)
        except ValueError:
            raise click.BadParameter(f"{as_of!r} is out of range in UTC", param_hint="--as-of") from None
    from archive_platform.serving import cli_statements
    from archive_platform.settings import lake_config
    from archive_platform.store.errors import ArchiveKindError
    from archive_platform.store.marker import resolve_kind

    path = root or default_root("sim" if sim else "live")
    try:  # --root without --sim: the root's marker decides; else it must be the kind asked for
        kind = resolve_kind(Path(path), "sim" if sim else (None if root else "live"))
    except ArchiveKindError as exc:
        raise click.UsageError(f"{exc}{'' if sim else ' (add --sim)'}") from None
    # the catalog and data path (PostgreSQL, S3) as archive_platform.connect() reads them; the
    # init script names the secrets' variables (getenv), never their values
    config = lake_config(kind)
    workdir = Path(tempfile.mkdtemp(prefix="archive-sql-"))
    init, days = workdir / "init.sql", workdir / "trading_days.parquet"
    try:
        from archive_platform.lake.connect import connect, table_names

        # with --as-of, the tables as they stood then; an instant before the first write or
        # older than the retention is refused here, in one line, as connect(as_of=...) refuses it
        con = connect(path, config=config, as_of=stamp)
        try:
            have = table_names(con)
        finally:
            con.close()
        init.write_text(shell.init_sql(path, have, as_of=stamp, config=config,
                                       extra=cli_statements(have, days, Path(path)),
                                       cleanup=[init, days, workdir],
                                       secret_ref=lambda var: f"getenv('{var}')"))
    except FileNotFoundError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise click.UsageError(str(exc)) from None
    except ValueError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if stamp is None or "no snapshot at or before" not in str(exc):
            raise  # a setting's ConfigError (a ValueError too): the group prints it as one line
        # --as-of before the archive's first write, or older than the retention
        raise click.BadParameter(str(exc), param_hint="--as-of") from None
    except BaseException:  # nothing of ours is left in /tmp by a call that failed here
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    argv = shell.cli_command(init, command)
    os.execv(argv[0], argv)  # the script deletes its folder once the shell has read it
