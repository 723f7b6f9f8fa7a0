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
    from archive_platform.schemas import SPECS
    from archive_platform.store import default_root
    from archive_platform.store.marker import read_marker_kind

    old = (root or default_root("sim" if sim else "live")).absolute()
    if not old.is_dir():
        raise click.UsageError(f"{old} is not a directory")
    kind = read_marker_kind(old)
    if new_root is not None and kind is not None:  # the new root keeps the archive's kind
        from archive_platform.store.marker import ensure_marker

        ensure_marker(new_root.absolute(), kind)
    done = run(old, [TableDef.from_spec(s) for s in SPECS.values()], new_root)
    moved = [m for m in done if not m.skipped]
    for m in moved:
        click.echo(f"{m.table} {m.day}: {m.rows_before:,} rows -> {m.rows_after:,}")
    lost = [m for m in done if m.rows_after != m.rows_before]
    click.echo(f"{len(moved)} partition(s) migrated, {len(done) - len(moved)} already done, into "
               f"{(new_root or old).absolute()}")
    if lost:
        raise click.ClickException("row counts differ for " + ", ".join(f"{m.table} {m.day}" for m in lost))
