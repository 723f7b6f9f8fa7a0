"""``archive-platform``: the command line (click, which Dagster already ships).

``archive-platform demo`` is the README's main job: it archives the last N closed NYSE sessions
of every NYSE dataset through Dagster (runs recorded in the instance under $DAGSTER_HOME, so
``dagster dev`` shows them materialized), refreshes the DuckDB views and prints a summary.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import date, datetime
from pathlib import Path

import click

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _instance():
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        home = Path(".dagster_home").absolute()
        home.mkdir(exist_ok=True)
        if Path("dagster.yaml").exists() and not (home / "dagster.yaml").exists():
            shutil.copy("dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def _human(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:,.1f} {unit}"
    raise AssertionError("unreachable")


def _table(cols: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in cols]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@click.group()
def main() -> None:
    """archive_platform: a market-data archive on Dagster."""
    import warnings

    import dagster as dg

    # Dagster flags backfill policies and partitioned checks as beta/preview on every load;
    # that is for the developers who chose them, not for someone running the archive.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@main.command()
@click.option("--days", default=5, show_default=True, type=click.IntRange(1, 250),
              help="How many of the last closed NYSE sessions to archive.")
@click.option("--as-of", "as_of", default=None, help="Pretend today is this date (YYYY-MM-DD).")
def demo(days: int, as_of: str | None) -> None:
    """Archive the last N sessions of every NYSE dataset from the simulated market through Dagster."""
    import dataclasses

    from archive_platform import calendar
    from archive_platform.config import source_env_var
    from archive_platform.datasets import DATASETS
    from archive_platform.defs import build_definitions
    from archive_platform.partitions import latest_closed_session
    from archive_platform.schemas import ArchiveType
    from archive_platform.settings import Settings

    started = time.monotonic()
    settings = Settings.from_env()
    selection = settings.sources
    for t in ArchiveType:
        if not selection.is_sim(t):
            raise click.UsageError(
                f"demo archives the simulated market; unset {source_env_var(t)} (it is "
                f"{selection[t]!r}) or use `dagster dev` / a backfill for live sources"
            )
    now = datetime.now(calendar.UTC)
    if as_of:
        now = datetime.combine(date.fromisoformat(as_of), datetime.max.time(), tzinfo=calendar.ET)
    last = latest_closed_session(now)
    sessions = calendar.last_trading_days(days, as_of=last)
    if settings.start_date is None:
        settings = dataclasses.replace(settings, start_date=min(sessions[0], date(2024, 1, 2)))
    defs = build_definitions(settings=settings)
    n_types = sum(d.calendar_name == "nyse" for d in DATASETS)
    instance = _instance()
    job = defs.resolve_job_def("archive_all")
    resources = defs.resources
    archive = resources["archive"]

    click.echo(
        f"Archiving {len(sessions)} NYSE session{'s' if len(sessions) != 1 else ''} "
        f"({sessions[0]} .. {sessions[-1]}) of {n_types} archive "
        f"types from the simulated market into {archive.root('sim')}"
    )
    click.echo(f"Dagster instance: {os.environ['DAGSTER_HOME']}")
    totals: dict[str, dict[str, float]] = {}
    for i, day in enumerate(sessions, 1):
        t0 = time.monotonic()
        click.echo(f"[{i}/{len(sessions)}] {day} ...", nl=False)
        result = job.execute_in_process(
            partition_key=day.isoformat(), instance=instance, run_config=QUIET_LOGS,
            tags={"archive/trigger": "demo"}, raise_on_error=False,
        )
        if not result.success:
            click.echo(" failed")
            for ev in result.all_events:
                if ev.event_type_value == "STEP_FAILURE":
                    click.echo(ev.event_specific_data.error.to_string(), err=True)
            sys.exit(1)
        parts = []
        for ev in result.get_asset_materialization_events():
            m = ev.event_specific_data.materialization
            meta = {k: v.value for k, v in m.metadata.items()}
            name = m.asset_key.to_user_string()
            tot = totals.setdefault(name, {"rows": 0, "disk": 0, "mem": 0})
            tot["rows"] += meta.get("rows") or 0
            tot["disk"] += meta.get("bytes_on_disk") or 0
            tot["mem"] += (meta.get("compression_ratio") or 0) * (meta.get("bytes_on_disk") or 0)
            parts.append(f"{name} {meta.get('rows', 0):,}")
        failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
        checks = f"{len(result.get_asset_check_evaluations()) - len(failed)} checks passed"
        if failed:
            checks += ", FAILED: " + ", ".join(f"{e.asset_key.to_user_string()}.{e.check_name}" for e in failed)
        click.echo(f" {time.monotonic() - t0:.1f} s  ({', '.join(sorted(parts))} rows; {checks})")

    views = defs.resolve_job_def("refresh_views").execute_in_process(
        instance=instance, run_config=QUIET_LOGS, tags={"archive/trigger": "demo"}
    )
    db = archive.duckdb_path("sim")
    click.echo(f"DuckDB views refreshed: {db}" if views.success else "DuckDB views: refresh FAILED")

    click.echo("\nArchive summary")
    rows = [
        (name, f"{int(t['rows']):,}", _human(t["disk"]), f"{t['mem'] / t['disk']:.1f}x" if t["disk"] else "-")
        for name, t in sorted(totals.items())
    ]
    click.echo(_table(["type", "rows", "on disk", "compression"], rows))

    from archive_platform.queries import STRADDLE_BACKTEST, run_query

    click.echo("\nExample backtest query (SPY ATM straddle bought 10:00 ET, marked at the close):")
    cols, result_rows = run_query(db, STRADDLE_BACKTEST, {"symbol": "SPY"})
    click.echo(_table(cols, result_rows))
    click.echo(f"\nDone in {time.monotonic() - started:.0f} s. Next: ./run dev  (UI at http://127.0.0.1:3000)")


@main.command()
def views() -> None:
    """Rebuild the DuckDB views over the archive (sim and/or live, as configured)."""
    from archive_platform.defs import build_definitions

    defs = build_definitions()
    res = defs.resolve_job_def("refresh_views").execute_in_process(instance=_instance(), run_config=QUIET_LOGS)
    for ev in res.get_asset_materialization_events():
        for k, v in ev.event_specific_data.materialization.metadata.items():
            click.echo(f"{k}: {v.value}")


@main.command()
@click.argument("name", type=click.Choice(["latest_chain", "atm_iv_through_day", "flow_with_chain", "straddle_backtest"]))
@click.option("--symbol", default="SPY", show_default=True)
@click.option("--at", default=None, help="Instant for latest_chain (ISO, with offset).")
@click.option("--day", default=None, help="Day for atm_iv_through_day (YYYY-MM-DD).")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="Views file (default: the sim one).")
def query(name: str, symbol: str, at: str | None, day: str | None, db: Path | None) -> None:
    """Run one of the example queries against the DuckDB views."""
    from archive_platform.queries import EXAMPLES, run_query

    params: dict = {"symbol": symbol.upper()}
    if name == "latest_chain":
        params["at"] = datetime.fromisoformat(at) if at else datetime.now().astimezone()
    if name == "atm_iv_through_day":
        if not day:
            raise click.UsageError("atm_iv_through_day needs --day YYYY-MM-DD")
        params["day"] = date.fromisoformat(day)
    from archive_platform.views import default_duckdb_path

    path = db or default_duckdb_path("sim")
    if not path.exists():
        raise click.UsageError(f"{path} does not exist; run `./run demo` (or archive-platform views) first")
    cols, rows = run_query(path, EXAMPLES[name], params)
    click.echo(_table(cols, rows))


if __name__ == "__main__":
    main()
