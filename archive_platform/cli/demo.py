"""``archive-platform demo``: the README's main job on the simulated market, through Dagster."""

from __future__ import annotations

import os
import sys
import time
from datetime import date, datetime

import click

from archive_platform.cli.common import quiet_dagster
from archive_platform.cli.common import QUIET_LOGS, IsoDate, console, dagster_home, human, print_table, progress
from archive_platform.cli.common import instance as dagster_instance


@click.command()
@click.option("--days", default=5, show_default=True, type=click.IntRange(1, 250),
              help="How many of the last closed NYSE sessions to archive.")
@click.option("--as-of", "as_of", default=None, type=IsoDate(), help="Pretend today is this date (YYYY-MM-DD).")
def demo(days: int, as_of: date | None) -> None:
    """Archive the last N sessions of every NYSE dataset from the simulated market through Dagster."""
    import dataclasses

    from archive_platform import calendar
    from archive_platform.cli.demo_report import print_backtest_report
    from archive_platform.cli.demo_crypto import archive_crypto
    from archive_platform.config import source_env_var
    from archive_platform.datasets import DATASETS
    from archive_platform.defs import build_definitions
    from archive_platform.partitions import latest_complete_session
    from archive_platform.schemas import ArchiveType
    from archive_platform.settings import DEFAULT_START_DATE, Settings

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
        if as_of > now.astimezone(calendar.ET).date():
            raise click.BadParameter(f"{as_of} is in the future (today is {now.astimezone(calendar.ET).date()} "
                                     "in New York): the demo archives closed sessions only", param_hint="'--as-of'")
        # the end of that day, or now when it is today (its session may not be over yet)
        now = min(now, datetime.combine(as_of, datetime.max.time(), tzinfo=calendar.ET))
    last = latest_complete_session(now, DATASETS)
    sessions = calendar.last_trading_days(days, as_of=last)
    if settings.start_date is None or settings.start_date > sessions[0]:
        # the demo's own definitions start where its data starts
        settings = dataclasses.replace(settings, start_date=sessions[0])
    quiet_dagster()  # before the definitions load, which flags beta/preview APIs
    defs = build_definitions(settings=settings)
    n_types = sum(d.calendar_name == "nyse" for d in DATASETS)
    instance = dagster_instance()
    job = defs.resolve_job_def("archive_all")
    resources = defs.resources
    archive = resources["archive"]

    out = console()
    out.print(
        f"Archiving {len(sessions)} NYSE session{'s' if len(sessions) != 1 else ''} "
        f"({sessions[0]} .. {sessions[-1]}) of {n_types} archive "
        f"types from the simulated market into {archive.root('sim')}", markup=False
    )
    out.print(f"Dagster instance: {dagster_home()}", markup=False)
    totals: dict[str, dict[str, float]] = {}
    with progress(len(sessions), "sessions", out) as step:
        for i, day in enumerate(sessions, 1):
            t0 = time.monotonic()
            result = job.execute_in_process(
                partition_key=day.isoformat(), instance=instance, run_config=QUIET_LOGS,
                tags={"archive/trigger": "demo"}, raise_on_error=False,
            )
            if not result.success:
                step(f"[{i}/{len(sessions)}] {day} failed")
                for ev in result.all_events:
                    if ev.event_type_value == "STEP_FAILURE":
                        click.echo(ev.event_specific_data.error.to_string(), err=True)
                sys.exit(1)
            step(f"[{i}/{len(sessions)}] {day} {time.monotonic() - t0:.1f} s  ({_session_line(result, totals)})")

    archive_crypto(defs, instance, sessions, QUIET_LOGS)  # the UTC days around them (docs/crypto.md)
    # the coverage ledger (the `coverage` table the README queries), as its daily schedule would
    ledger = defs.resolve_job_def("coverage_ledger").execute_in_process(
        instance=instance, run_config=QUIET_LOGS, tags={"archive/trigger": "demo"}, raise_on_error=False)
    if not ledger.success:
        out.print("Coverage ledger: FAILED (see the run in the UI)", markup=False)
    views = defs.resolve_job_def("refresh_views").execute_in_process(
        instance=instance, run_config=QUIET_LOGS, tags={"archive/trigger": "demo"}
    )
    db = archive.duckdb_path("sim")
    out.print(f"DuckDB views refreshed: {db}" if views.success else "DuckDB views: refresh FAILED", markup=False)

    rows = [
        (name, f"{int(t['rows']):,}", human(t["disk"]), f"{t['mem'] / t['disk']:.1f}x" if t["disk"] else "-")
        for name, t in sorted(totals.items())
    ]
    out.print()
    print_table(["dataset", "rows", "on disk", "compression"], rows, title="Archive summary", out=out)

    from archive_platform.queries import STRADDLE_BACKTEST, run_query

    cols, result_rows = run_query(archive.root("sim"), STRADDLE_BACKTEST, {"symbol": "SPY"})
    print_table(cols, result_rows, out=out,
                title="Example backtest query (SPY ATM straddle bought 10:00 ET, marked at the close)")
    print_backtest_report(instance, sessions[-1])
    out.print(f"Done in {time.monotonic() - started:.0f} s. Next: ./run dev  (UI at http://127.0.0.1:3000)",
              markup=False)
    if not os.environ.get("ARCHIVE_START_DATE"):
        out.print(f"The UI's partitions start at {DEFAULT_START_DATE} (ARCHIVE_START_DATE); to see only "
                  f"the demo's days: ARCHIVE_START_DATE={sessions[0]} ./run dev", markup=False)


def _session_line(result, totals: dict) -> str:
    """Rows per dataset and the check tally of one session's run (adds to ``totals``)."""
    parts = []
    for ev in result.get_asset_materialization_events():
        m = ev.event_specific_data.materialization
        meta = {k: v.value for k, v in m.metadata.items()}
        name = m.asset_key.to_user_string()
        if "dagster/row_count" not in meta:
            continue  # not a dataset (the `backtests` asset): no rows to count; its report follows
        rows = meta.get("dagster/row_count") or 0
        disk = meta.get("dagster/size_bytes") or 0
        tot = totals.setdefault(name, {"rows": 0, "disk": 0, "mem": 0})
        tot["rows"] += rows
        tot["disk"] += disk
        tot["mem"] += (meta.get("compression_ratio") or 0) * disk
        parts.append(f"{name} {rows:,}")
    evals = result.get_asset_check_evaluations()
    failed = [e for e in evals if not e.passed]
    checks = f"{len(evals) - len(failed)} checks passed"
    if failed:
        checks += ", FAILED: " + ", ".join(f"{e.asset_key.to_user_string()}.{e.check_name}" for e in failed)
    return f"{', '.join(sorted(parts))} rows; {checks}"
