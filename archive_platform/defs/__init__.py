"""The Dagster shell: assets, checks, jobs, schedules, sensors and resources, built from settings.

Everything per dataset comes from its declaration (``archive_platform.datasets``): one asset
each, partitioned by its calendar; jobs and schedules select datasets by cadence and calendar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from archive_platform.datasets import DATASETS, Dataset
from archive_platform.defs.assets import build_archive_asset, build_views_asset
from archive_platform.defs.automation import build_automation
from archive_platform.datasets.coverage import DATASET as COVERAGE
from archive_platform.defs.coverage_assets import build_coverage_asset
from archive_platform.defs.crypto import build_crypto_asset, build_crypto_automation, is_captured
from archive_platform.defs.derived_assets import build_derived_extras
from archive_platform.defs.recovery import LedgerContext
from archive_platform.defs.resources import can_backfill, resources_from_settings
from archive_platform.partitions import partitions_for
from archive_platform.settings import Settings

ARCHIVE_KEYS = [dg.AssetKey(d.name) for d in DATASETS]


def _keys(datasets: Sequence[Dataset], **match) -> list[dg.AssetKey]:
    return [dg.AssetKey(d.name) for d in datasets
            if all(getattr(d, k) == v for k, v in match.items())]


def build_definitions(
    env: Mapping[str, str] | None = None,
    *,
    settings: Settings | None = None,
    datasets: Sequence[Dataset] = DATASETS,
) -> dg.Definitions:
    """Everything Dagster shows, configured from ``settings`` (default: built once from ``env``,
    itself the process environment by default).

    Raises ``ConfigError`` with a message naming the variable when the configuration is invalid,
    so ``dagster definitions validate`` and the UI show the problem at load time. ``datasets``
    defaults to the registry; a test may add a dataset of its own.
    """
    settings = settings or Settings.from_env(env)
    selection = settings.sources
    resources = resources_from_settings(settings)
    parts = {d.calendar_name: partitions_for(d.calendar_name, settings.start_date) for d in datasets}

    archive_assets = [build_crypto_asset(d, parts[d.calendar_name], settings) if is_captured(d)
                      else build_archive_asset(d, parts[d.calendar_name], selection, datasets)
                      for d in datasets]
    extras = build_derived_extras(parts["nyse"], selection, datasets)  # backtests, input checks

    nyse = [d for d in datasets if d.calendar_name == "nyse"]
    # the grid datasets others are derived from, with those derived ones (options and gex)
    grid = [d for d in nyse if d.cadence == "grid"]
    inputs = {n for d in grid for n in d.derived_from}
    options_family = [d for d in grid if d.name in inputs or inputs & set(d.derived_from)]
    jobs = {
        "archive_all": dg.define_asset_job(
            "archive_all", selection=dg.AssetSelection.assets(*_keys(nyse), *extras.keys),
            description="Every NYSE dataset for a trading day (end of day, backfills, demo).",
        ),
        "options_snapshot": dg.define_asset_job(
            "options_snapshot", selection=dg.AssetSelection.assets(*_keys(options_family)),
            description="One options snapshot and its gex.",
        ),
        "uw_flow": dg.define_asset_job(
            "uw_flow_poll", selection=dg.AssetSelection.assets(*_keys(nyse, cadence="poll")),
            description="One flow-alert poll.",
        ),
        "iv_rank": dg.define_asset_job(
            "iv_rank_snapshot", selection=dg.AssetSelection.assets(*_keys(nyse, cadence="times")),
            description="One IV-rank snapshot.",
        ),
        "views": dg.define_asset_job(
            "refresh_views", selection=dg.AssetSelection.assets("duckdb_views"),
            description="Rebuild the DuckDB views.",
        ),
    }
    others = [d for d in nyse if d.cadence == "grid" and d not in options_family]
    if others:  # a vendor outage of options must not hold back (or be held back by) these
        jobs["grid_snapshot"] = dg.define_asset_job(
            "grid_snapshot", selection=dg.AssetSelection.assets(*_keys(others)),
            description="One snapshot of the other datasets on the snapshot grid (vix).",
        )
    for cal in sorted(set(parts) - {"nyse"}):  # one whole-day job per other calendar
        jobs[f"archive_all_{cal}"] = dg.define_asset_job(
            f"archive_all_{cal}",
            selection=dg.AssetSelection.assets(*_keys(datasets, calendar_name=cal)),
            description=f"Every dataset on the {cal} calendar for one of its days.",
        )
    recoverable = [d for d in nyse if can_backfill(selection, d)]
    schedules, sensors = build_automation(
        parts["nyse"], jobs,
        snapshot_minutes=settings.snapshot_minutes,
        iv_rank_times=settings.iv_rank_times,
        recoverable=recoverable, recovery_lookback=settings.recovery_lookback,
        ledger=LedgerContext(settings, recoverable, parts),
    )
    # the coverage ledger: an asset, its job and a nightly schedule; the views show it too
    # the ledger judges NYSE sessions; 24/7 capture days are judged by their coverage checks
    ledger = build_coverage_asset(settings, nyse, parts)
    views = build_views_asset(settings.dataset_kind, [*datasets, COVERAGE],
                              retention_days=settings.lake_retention_days)
    jobs["coverage"] = dg.define_asset_job("coverage_ledger", selection=[ledger.key])
    schedules.append(dg.ScheduleDefinition(
        name="coverage_ledger", job=jobs["coverage"], cron_schedule="40 20 * * *",
        execution_timezone="America/New_York", default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rebuilds the coverage ledger nightly (before the views refresh)."))
    checks = list(extras.checks)
    if "utc" in parts:  # UTC days: daily schedule, recovery, capture heartbeat (defs/crypto.py)
        utc_schedules, utc_sensors, utc_jobs, utc_checks = build_crypto_automation(
            [d for d in datasets if d.calendar_name == "utc"], parts["utc"], jobs["archive_all_utc"], settings)
        schedules, sensors = [*schedules, *utc_schedules], [*sensors, *utc_sensors]
        jobs.update({j.name: j for j in utc_jobs})
        checks += utc_checks
    return dg.Definitions(
        assets=[*archive_assets, views, ledger, *extras.assets],
        asset_checks=checks,
        jobs=list(jobs.values()),
        schedules=schedules,
        sensors=sensors,
        resources=resources,
    )
