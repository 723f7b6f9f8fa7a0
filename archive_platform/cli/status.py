"""``archive-platform status [--json]``: per dataset, what is stored and whether it is healthy.

Exit code 0 when every dataset is healthy, 1 otherwise, so a monitoring probe can run it.
Reads the store, the declarations and the Dagster instance (``$DAGSTER_HOME``); writes nothing.
"""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Days stored, rows, bytes, freshness and gaps per dataset; exit 1 when unhealthy."""
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
    # the ledger judges NYSE sessions; 24/7 capture days are judged by their coverage checks
    ctx = LedgerContext(settings, [d for d in DATASETS if d.calendar_name == "nyse"], parts)
    with instance() as inst:
        _, report = ledger_status(ctx, inst, automation.utcnow())
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))
    sys.exit(0 if report["healthy"] else 1)
