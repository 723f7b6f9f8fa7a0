"""``archive-platform status [--json]``: per dataset, what is stored and whether it is healthy.

Exit code 0 when every dataset is healthy, 1 otherwise, so a monitoring probe can run it; 2 when
status cannot tell because of a bad setting or an archive it cannot read (one line on stderr, no
traceback), an instance that does not load included.
Reads the store, the declarations and the Dagster instance (``$DAGSTER_HOME``); writes nothing.

The NYSE datasets are judged by the coverage ledger. With ``ARCHIVE_CRYPTO_CAPTURE`` on, the
crypto datasets (UTC days, in the live archive under ``ARCHIVE_ROOT``) are judged the same way on
their own calendar, and the captured ones (``capture_gaps``, ``crypto_trades``, ``orderbook_l2``)
also by the capture service's heartbeat, read as the ``capture_alive`` check reads it: no
heartbeat, a stale one or a silent stream makes them unhealthy.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click
import duckdb
import pyarrow as pa


def capture_heartbeat(root, now: datetime) -> dict:
    """The capture service's heartbeat under ``root`` as status shows it: when it was written,
    by which process, how many streams, and its problems (``capture_problems``; empty: fresh)."""
    from archive_platform.crypto.health import capture_problems, read_heartbeat
    from archive_platform.crypto.spool import heartbeat_path

    beat = read_heartbeat(root)
    try:
        problems = capture_problems(beat, now)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a heartbeat not of our making
        problems = [f"capture heartbeat {heartbeat_path(root)} is unreadable ({type(exc).__name__}: {exc})"]
    beat = beat if isinstance(beat, dict) else {}
    streams = beat.get("streams")
    return {"path": str(heartbeat_path(root)), "written_at": beat.get("written_at"), "pid": beat.get("pid"),
            "streams": len(streams) if isinstance(streams, dict) else 0, "problems": problems}


def capture_status(settings, parts, instance, now: datetime) -> tuple[list[dict], dict]:
    """(status lines of the UTC-day datasets, the heartbeat) when capture is configured."""
    from archive_platform.crypto.declare import CapturedDataset
    from archive_platform.datasets import DATASETS
    from archive_platform.defs.recovery import LedgerContext
    from archive_platform.status import dataset_status

    root = settings.root(settings.crypto_kind)  # the live archive, capture being on
    utc = [d for d in DATASETS if d.calendar_name == "utc"]
    ctx = LedgerContext(settings, utc, parts)  # its store_for follows crypto_kind
    beat = capture_heartbeat(root, now)
    entries = ctx.entries(instance, now)
    first = ctx.first_day()
    lines = [dataset_status(ds, [e for e in entries if e.dataset == ds.name], now,
                            lookback=settings.recovery_lookback, first=first,
                            heartbeat=beat["problems"] if isinstance(ds, CapturedDataset) else None)
             for ds in utc]
    return lines, beat


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Days stored, rows, bytes, freshness and gaps per dataset (with ARCHIVE_CRYPTO_CAPTURE on,
    the crypto datasets and the capture heartbeat too); exit 1 when unhealthy."""
    from archive_platform.cli.common import instance
    from archive_platform.datasets import DATASETS
    from archive_platform.defs import automation
    from archive_platform.defs.coverage_assets import ledger_status
    from archive_platform.defs.recovery import LedgerContext
    from archive_platform.partitions import partitions_for
    from archive_platform.settings import Settings
    from archive_platform.status import render_text

    settings = Settings.from_env()
    parts = {d.calendar_name: partitions_for(d.calendar_name, settings.start_date) for d in DATASETS}
    # the ledger judges NYSE sessions; the UTC days of capture are judged on their own calendar
    ctx = LedgerContext(settings, [d for d in DATASETS if d.calendar_name == "nyse"], parts)
    now = automation.utcnow()
    beat = None
    try:
        with instance() as inst:
            _, report = ledger_status(ctx, inst, now)
            if settings.crypto_capture:
                lines, beat = capture_status(settings, parts, inst, now)
                report["datasets"] += lines
                report["healthy"] = all(x["healthy"] for x in report["datasets"])
    except (OSError, duckdb.Error, pa.ArrowException) as exc:
        # a corrupt catalog, an unreadable root or file: one line, exit 2 (status unknown)
        roots = ", ".join(sorted({str(settings.root(k)) for k in ("sim", "live")}))
        first = (str(exc).strip().splitlines() or [""])[0]
        click.echo(f"error: cannot read the archive ({roots}): {type(exc).__name__}: {first}", err=True)
        sys.exit(2)
    report["capture"] = beat
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        text = render_text(report).split("\n")
        if beat is not None:
            state = "; ".join(beat["problems"]) or (
                f"ok (written {beat['written_at']}, pid {beat['pid']}, {beat['streams']} streams)")
            text.insert(-1, f"capture heartbeat ({beat['path']}): {state}")
        click.echo("\n".join(text))
    sys.exit(0 if report["healthy"] else 1)
