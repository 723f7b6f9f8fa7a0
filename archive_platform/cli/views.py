"""``archive-platform views``: rebuild the DuckDB views through Dagster."""

from __future__ import annotations

import click

from archive_platform.cli.common import quiet_dagster
from archive_platform.cli.common import QUIET_LOGS, instance


@click.command()
def views() -> None:
    """Rebuild the DuckDB views over the archive (sim and/or live, as configured)."""
    from archive_platform.defs import build_definitions

    quiet_dagster()  # before the definitions load, which flags beta/preview APIs
    defs = build_definitions()
    res = defs.resolve_job_def("refresh_views").execute_in_process(instance=instance(), run_config=QUIET_LOGS)
    for ev in res.get_asset_materialization_events():
        for k, v in ev.event_specific_data.materialization.metadata.items():
            click.echo(f"{k}: {v.value}")
