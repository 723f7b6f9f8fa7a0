"""``archive-platform query``: the README's example queries, without loading Dagster."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click

from archive_platform.cli.common import AwareInstant, IsoDate, print_table


@click.command()
@click.argument("name", type=click.Choice(["latest_chain", "atm_iv_through_day", "flow_with_chain", "straddle_backtest"]))
@click.option("--symbol", default="SPY", show_default=True)
@click.option("--at", default=None, type=AwareInstant(),
              help="Instant for latest_chain, ISO 8601 with its UTC offset (e.g. 2025-11-26T15:30:00-05:00 "
                   "or ...Z); default: now.")
@click.option("--day", default=None, type=IsoDate(), help="Day for atm_iv_through_day (YYYY-MM-DD).")
@click.option("--live", is_flag=True,
              help="Read the live archive ($ARCHIVE_ROOT and its lake settings) instead of the simulated one.")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Archive root (default: $ARCHIVE_SIM_ROOT, or $ARCHIVE_ROOT with --live).")
def query(name: str, symbol: str, at: datetime | None, day: date | None, live: bool, root: Path | None) -> None:
    """Run one of the example queries against the archive (archive_platform.connect())."""
    from archive_platform.queries import EXAMPLES, run_query

    import re

    # a bound parameter, so nothing unsafe could happen; but "../etc" is certainly a typo
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,12}", symbol):
        raise click.BadParameter(f"{symbol!r} is not a ticker symbol (letters, digits, '.', '-', '_')",
                                 param_hint="'--symbol'")
    params: dict = {"symbol": symbol.upper()}
    if name == "latest_chain":
        params["at"] = at or datetime.now().astimezone()
    if name == "atm_iv_through_day":
        if not day:
            raise click.UsageError("atm_iv_through_day needs --day YYYY-MM-DD")
        from archive_platform import calendar

        if not calendar.is_trading_day(day):
            raise click.BadParameter(f"{day} is not an NYSE session (the previous one is "
                                     f"{calendar.previous_trading_day(day)})", param_hint="'--day'")
        params["day"] = day
    from archive_platform.store import default_root
    from archive_platform.store.errors import ArchiveKindError
    from archive_platform.store.marker import resolve_kind

    path = root or default_root("live" if live else "sim")
    try:  # --root without --live: the root's marker decides; else it must be the kind asked for
        kind = resolve_kind(Path(path), "live" if live else (None if root else "sim"), default="sim")
    except ArchiveKindError as exc:
        raise click.UsageError(f"{exc}{' (drop --live)' if live else ' (add --live)'}") from None
    try:
        cols, rows = run_query(path, EXAMPLES[name], params, kind=kind)
    except FileNotFoundError as exc:
        # `./run demo` writes the simulated archive only: it is no remedy for an empty live one
        hint = ("run `./run demo` first" if kind == "sim" else
                "the live archive is written by vendor-backed runs (`./run dev`, a backfill); "
                "drop --live to read the simulated archive `./run demo` writes")
        raise click.UsageError(f"{exc}; {hint}") from None
    except Exception as exc:
        # the query itself failed on a remote lake (an object missing from the bucket, the
        # catalog's server gone after connect): one line naming the setting, no secret
        import duckdb

        if not isinstance(exc, (duckdb.Error, OSError)):
            raise
        from archive_platform.lake.catalog import LakeLocation
        from archive_platform.lake.connect import read_error
        from archive_platform.settings import lake_config

        clear = read_error(exc, LakeLocation.for_root(path, config=lake_config(kind)), kind=kind)
        if clear is None:
            raise
        raise clear from None
    print_table(cols, rows)
    if not rows:
        click.echo(f"(no rows: the archive at {path} holds nothing for {params['symbol']} there)", err=True)
