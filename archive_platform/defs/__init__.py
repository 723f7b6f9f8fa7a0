"""The Dagster shell: assets, checks, jobs, schedules, sensors and resources, built from config."""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from archive_platform.config import SourceSelection, parse_times
from archive_platform.defs.assets import build_archive_asset, build_views_asset
from archive_platform.defs.automation import build_automation
from archive_platform.defs.resources import can_backfill, resources_from_env
from archive_platform.partitions import parse_start_date, trading_day_partitions
from archive_platform.schemas import ArchiveType

ARCHIVE_KEYS = [dg.AssetKey(t.value) for t in ArchiveType]


def build_definitions(env: Mapping[str, str] | None = None) -> dg.Definitions:
    """Everything Dagster shows, configured from ``env`` (``os.environ`` by default).

    Raises ``ConfigError`` with a message naming the variable when the configuration is invalid,
    so ``dagster definitions validate`` and the UI show the problem at load time.
    """
    env = dict(os.environ if env is None else env)
    selection = SourceSelection.from_env(env)
    resources = resources_from_env(env)
    settings = resources["sources"].settings()
    start = env.get("ARCHIVE_START_DATE") or None
    if start is not None:  # validate here so the message names the variable, not an argument
        start = parse_start_date(start.strip(), source="environment variable ARCHIVE_START_DATE")
    partitions_def = trading_day_partitions(start)

    archive_assets = [build_archive_asset(t, partitions_def, selection) for t in ArchiveType]
    views = build_views_asset(selection)

    jobs = {
        "archive_all": dg.define_asset_job(
            "archive_all", selection=dg.AssetSelection.assets(*ARCHIVE_KEYS),
            description="All six archive types for a trading day (end of day, backfills, demo).",
        ),
        "options_snapshot": dg.define_asset_job(
            "options_snapshot", selection=dg.AssetSelection.assets("options", "gex"),
            description="One options snapshot and its gex.",
        ),
        "uw_flow": dg.define_asset_job(
            "uw_flow_poll", selection=dg.AssetSelection.assets("uw_flow"),
            description="One flow-alert poll.",
        ),
        "iv_rank": dg.define_asset_job(
            "iv_rank_snapshot", selection=dg.AssetSelection.assets("iv_rank"),
            description="One IV-rank snapshot.",
        ),
        "views": dg.define_asset_job(
            "refresh_views", selection=dg.AssetSelection.assets("duckdb_views"),
            description="Rebuild the DuckDB views.",
        ),
    }
    recoverable = [t for t in ArchiveType if can_backfill(selection, t)]
    lookback = int(env.get("ARCHIVE_RECOVERY_LOOKBACK") or 10)
    schedules, sensors = build_automation(
        partitions_def, jobs,
        snapshot_minutes=int(settings.snapshot_every.total_seconds() // 60),
        iv_rank_times=settings.iv_rank_times or parse_times(None, (), ""),
        recoverable=recoverable, recovery_lookback=lookback,
    )
    return dg.Definitions(
        assets=[*archive_assets, views],
        jobs=list(jobs.values()),
        schedules=schedules,
        sensors=sensors,
        resources=resources,
    )
