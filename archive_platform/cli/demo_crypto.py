"""The demo's crypto part: the UTC days around the NYSE sessions the demo archived, offline.

Crypto trades around the clock. ``crypto_days`` spans the sessions from the day after the
session before the first one to the day before the session after the last one (weekends and
holidays included), up to the last closed UTC day; ``archive_crypto`` keeps those that are
partitions, and since the demo's definitions start where its data starts (the UTC partitions
too), that is every UTC day from the first session on. It runs the ``archive_all_utc`` job of
the simulated venue for each: the books and trades, then the datasets derived from them
(``crypto_daily_bars``, ``crypto_candles``, ``orderbook_features``), day after day so each day
finds the previous one's tail. ``cli/demo.py`` calls ``archive_crypto`` once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

import click

UTC = timezone.utc


def crypto_days(sessions: Sequence[date], now: datetime) -> list[date]:
    """The UTC days spanning ``sessions`` (with the non-session days around them), all closed."""
    from archive_platform import calendar

    if not sessions:
        return []
    first = calendar.previous_trading_day(sessions[0]) + timedelta(days=1)
    last = min(calendar.next_trading_day(sessions[-1]) - timedelta(days=1),
               now.astimezone(UTC).date() - timedelta(days=1))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def archive_crypto(defs, instance, sessions: Sequence[date], run_config=None) -> list[date]:
    """Materialize the crypto datasets of the simulated venue for the UTC days around ``sessions``."""
    import dagster as dg

    from archive_platform.crypto.daily import SIM_BOOK_MS, SIM_SYMBOLS
    from archive_platform.defs.crypto_derived import RECONCILE

    archive = defs.resources["archive"]
    if defs.resolve_assets_def("crypto_trades").tags_by_key[dg.AssetKey("crypto_trades")].get("archive/source") != "sim":
        click.echo("\nCrypto: skipped (ARCHIVE_CRYPTO_CAPTURE is on: the crypto days come from the capture spool)")
        return []
    now = defs.resources["sources"].now()
    job = defs.resolve_job_def("archive_all_utc")
    with dg.partition_loading_context(effective_dt=now):
        days = [d for d in crypto_days(sessions, now) if job.partitions_def.has_partition_key(d.isoformat())]
    if not days:
        return []
    weekend = [d for d in days if d.weekday() >= 5]
    click.echo(f"\nCrypto: {len(days)} UTC days ({days[0]} .. {days[-1]}, {len(weekend)} weekend days) of "
               f"{', '.join(SIM_SYMBOLS)} from the simulated venue (books every {SIM_BOOK_MS} ms), "
               f"with {', '.join(RECONCILE)} derived from them, into {archive.root('sim')}")
    for i, day in enumerate(days, 1):
        t0 = time.monotonic()
        click.echo(f"[{i}/{len(days)}] {day} {day:%a} ...", nl=False)
        result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, run_config=run_config,
                                        tags={"archive/trigger": "demo"}, raise_on_error=False)
        if not result.success:
            click.echo(" failed")
            for ev in result.all_events:
                if ev.event_type_value == "STEP_FAILURE":
                    click.echo(ev.event_specific_data.error.to_string(), err=True)
            sys.exit(1)
        rows = {}
        for ev in result.get_asset_materialization_events():
            m = ev.event_specific_data.materialization
            rows[m.asset_key.to_user_string()] = m.metadata["dagster/row_count"].value
        evals = result.get_asset_check_evaluations()
        failed = [f"{e.asset_key.to_user_string()}.{e.check_name}" for e in evals if not e.passed]
        checks = f"{len(evals) - len(failed)} checks passed" + (f", FAILED: {', '.join(failed)}" if failed else "")
        click.echo(f" {time.monotonic() - t0:.1f} s  ({', '.join(f'{k} {v:,}' for k, v in sorted(rows.items()))} "
                   f"rows; {checks})")
    return days
