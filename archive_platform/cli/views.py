"""``archive-platform views``: rebuild the DuckDB views through Dagster."""

from __future__ import annotations

import click

from archive_platform.cli.common import instance, quiet_dagster

#: the step's own failure is printed below as one line; the run log keeps the traceback
SILENT_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@click.command()
def views() -> None:
    """Daily serving maintenance, now: expire lake snapshots and superseded files older than the
    retention (ARCHIVE_LAKE_RETENTION_DAYS, 7 by default; time travel reaches back that far), then rebuild the DuckDB views files
    over the archive (sim and/or live, as configured). The scheduled refresh_views job does the
    same every day."""
    from archive_platform.defs import build_definitions

    quiet_dagster()  # before the definitions load, which flags beta/preview APIs
    defs = build_definitions()
    res = defs.resolve_job_def("refresh_views").execute_in_process(
        instance=instance(), run_config=SILENT_LOGS, raise_on_error=False)
    if not res.success:
        errors = [ev.event_specific_data.error for ev in res.all_events if ev.event_type_value == "STEP_FAILURE"]
        cause = (errors[0].cause or errors[0]) if errors else None
        click.echo(f"error: refreshing the views failed: {cause.message.strip() if cause else 'see the run log'}",
                   err=True)
        raise SystemExit(1)
    for ev in res.get_asset_materialization_events():
        for k, v in ev.event_specific_data.materialization.metadata.items():
            click.echo(f"{k}: {v.value}")
