"""``archive-platform demo``: the README's main job on the simulated market, through Dagster."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime

import click

from archive_platform.cli.common import QUIET_LOGS, dagster_home, human, table
from archive_platform.cli.common import instance as dagster_instance


@click.command()
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
    instance = dagster_instance()
    job = defs.resolve_job_def("archive_all")
    resources = defs.resources
    archive = resources["archive"]

    click.echo(
        f"Archiving {len(sessions)} NYSE session{'s' if len(sessions) != 1 else ''} "
        f"({sessions[0]} .. {sessions[-1]}) of {n_types} archive "
        f"types from the simulated market into {archive.root('sim')}"
    )
    click.echo(f"Dagster instance: {dagster_home()}")
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
        (name, f"{int(t['rows']):,}", human(t["disk"]), f"{t['mem'] / t['disk']:.1f}x" if t["disk"] else "-")
        for name, t in sorted(totals.items())
    ]
    click.echo(table(["type", "rows", "on disk", "compression"], rows))

    from archive_platform.queries import STRADDLE_BACKTEST, run_query

    click.echo("\nExample backtest query (SPY ATM straddle bought 10:00 ET, marked at the close):")
    cols, result_rows = run_query(archive.root("sim"), STRADDLE_BACKTEST, {"symbol": "SPY"})
    click.echo(table(cols, result_rows))
    click.echo(f"\nDone in {time.monotonic() - started:.0f} s. Next: ./run dev  (UI at http://127.0.0.1:3000)")
