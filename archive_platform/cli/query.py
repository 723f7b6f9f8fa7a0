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
@click.option("--db", type=click.Path(path_type=Path), default=None, help="Views file (default: the sim one).")
def query(name: str, symbol: str, at: datetime | None, day: date | None, db: Path | None) -> None:
    """Run one of the example queries against the DuckDB views."""
    from archive_platform.queries import EXAMPLES, run_query

    params: dict = {"symbol": symbol.upper()}
    if name == "latest_chain":
        params["at"] = at or datetime.now().astimezone()
    if name == "atm_iv_through_day":
        if not day:
            raise click.UsageError("atm_iv_through_day needs --day YYYY-MM-DD")
        params["day"] = day
    from archive_platform.views import default_duckdb_path

    path = db or default_duckdb_path("sim")
    if not path.exists():
        raise click.UsageError(f"{path} does not exist; run `./run demo` (or archive-platform views) first")
    cols, rows = run_query(path, EXAMPLES[name], params)
    print_table(cols, rows)
