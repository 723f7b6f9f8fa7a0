"""Shared helpers for tests of the Dagster layer: definitions over temp roots, quiet runs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from archive_platform.defs import build_definitions

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SYMBOLS = "SPY,QQQ,AAPL"


def sim_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "ARCHIVE_SIM_ROOT": str(tmp_path / "sim"),
        "ARCHIVE_SIM_DUCKDB": str(tmp_path / "sim.duckdb"),
        "ARCHIVE_ROOT": str(tmp_path / "live"),
        "ARCHIVE_DUCKDB": str(tmp_path / "live.duckdb"),
        "ARCHIVE_SYMBOLS": SYMBOLS,
        "ARCHIVE_START_DATE": "2025-01-02",
    }
    env.update(extra)
    return env


def run_job(defs: dg.Definitions, job: str, instance, *, partition_key=None, tags=None, raise_on_error=True):
    return defs.resolve_job_def(job).execute_in_process(
        partition_key=partition_key, instance=instance, run_config=QUIET, tags=tags or {},
        raise_on_error=raise_on_error,
    )


def materializations(result) -> dict[str, dict]:
    """asset key -> metadata values of its materialization in a run result."""
    out = {}
    for ev in result.get_asset_materialization_events():
        m = ev.event_specific_data.materialization
        out[m.asset_key.to_user_string()] = {k: v.value for k, v in m.metadata.items()}
    return out


def checks(result) -> dict[tuple[str, str], object]:
    """(asset, check) -> the check evaluation of a run result."""
    return {
        (e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()
    }


def defs_for(tmp_path: Path, **extra: str) -> dg.Definitions:
    return build_definitions(sim_env(tmp_path, **extra))
