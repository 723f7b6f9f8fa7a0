"""``archive-platform migrate``: convert an archive of the old file layout (daily files plus
intraday parts) into the lake, in place or into a new root. Losing nothing; safe to re-run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--sim", is_flag=True, help="Migrate the simulated archive ($ARCHIVE_SIM_ROOT).")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Archive root to migrate (default: $ARCHIVE_ROOT, or the sim one with --sim).")
@click.option("--to", "new_root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the lake here instead of in place.")
def migrate(sim: bool, root: Path | None, new_root: Path | None) -> None:
    """Convert an archive written by the old store into the lake layout."""
    from archive_platform.lake import TableDef
    from archive_platform.lake import migrate as run
    from archive_platform.lake.migrate import MigrationFailed
    from archive_platform.schemas import SPECS
    from archive_platform.store import default_root
    from archive_platform.store.marker import read_marker_kind

    old = (root or default_root("sim" if sim else "live")).absolute()
    if not old.is_dir():
        raise click.UsageError(f"{old} is not a directory")
    kind = read_marker_kind(old)
    if sim and kind is not None and kind != "sim":
        raise click.UsageError(f"--sim given but {old} is a {kind} archive")
    kind = kind or ("sim" if sim else None)
    from archive_platform.settings import lake_config

    if lake_config(kind or "live", secrets=False) is not None:
        # the store of this kind reads a lake on PostgreSQL/S3; this writes a local one
        raise click.UsageError(f"the {kind or 'live'} archive is configured on PostgreSQL/S3; migrate "
                               "writes a local lake only: run it with those settings unset")
    if new_root is not None and kind is not None:  # the new root keeps the archive's kind
        from archive_platform.store.marker import ensure_marker
        from archive_platform.store.errors import ArchiveKindError

        try:
            ensure_marker(new_root.absolute(), kind)
        except ArchiveKindError as exc:
            raise click.UsageError(str(exc)) from None
    from archive_platform.datasets.coverage import DATASET as COVERAGE

    # the coverage ledger's folder is the archive's own (written by the `coverage` asset, read
    # in place, never in the lake): nothing to migrate and nothing to warn about
    known = {s.directory for s in SPECS.values()} | {COVERAGE.directory}
    for e in sorted(old.iterdir()):
        if e.is_dir() and e.name not in known and not e.name.startswith(("_", ".")):
            click.echo(f"warning: {e.name}/ is not a dataset of this version: not migrated", err=True)
    specs = {s.name: s for s in SPECS.values()}

    def report(m) -> None:
        if m.skipped:
            return
        extra = []
        if m.lake_rows is not None:
            extra.append(f"merged with {m.lake_rows:,} rows already in the lake, which win per key")
        if m.duplicates:
            extra.append(f"{m.duplicates:,} duplicate or superseded rows dropped, last write kept")
        tail = f" ({'; '.join(extra)})" if extra else ""
        click.echo(f"{m.table} {m.day}: {m.rows_before:,} rows -> {m.rows_after:,}{tail}")
        for note in m.notes:
            click.echo(f"  note: {note}")
        try:
            session = specs[m.table].calendar.is_session(m.day)
        except (KeyError, ValueError):
            session = True
        if not session:
            click.echo(f"  warning: {m.day} is not a session of {m.table}'s calendar", err=True)

    from archive_platform.store.validate import check_rows, conform_column

    def check(td, day, table):
        # the rules a write of the store holds rows to (kind unknown without a marker: the
        # source is then not checked); the day itself may be off the calendar (warned above)
        check_rows(specs[td.name], table, day, kind)
        return table

    failed: list[str] = []
    try:
        done = run(old, [TableDef.from_spec(s) for s in SPECS.values()], new_root, progress=report,
                   cast=conform_column, check=check)
    except MigrationFailed as exc:
        done, failed = exc.done, exc.errors
    except OSError as exc:  # the lake itself cannot be opened or created (a read-only root...)
        raise click.ClickException(f"cannot migrate {old}: {exc}") from None
    moved = [m for m in done if not m.skipped]
    lost = [m for m in done if m.missing]
    click.echo(f"{len(moved)} partition(s) migrated, {len(done) - len(moved)} already done, into "
               f"{(new_root or old).absolute()}")
    for err in failed:
        click.echo(f"error: {err}", err=True)
    if lost:
        raise click.ClickException("keys of the old layout missing from the lake for " +
                                   ", ".join(f"{m.table} {m.day} ({m.missing})" for m in lost))
    if failed:
        raise click.ClickException(f"{len(failed)} partition(s) not migrated (their files are untouched)")
