"""Backfills and run retries through the daemon's own code paths, in process: the code location
``archive_platform.definitions`` loaded as ``dagster dev`` loads it, the backfill daemon's
iteration (``execute_backfill_iteration``) and the run-retry daemon's
(``consume_new_runs_for_automatic_reexecution``) with the instance's run-retry settings from
``deploy/instance/dagster.yaml``, and a launcher that runs each submitted run at once.

* a backfill over 2025-11-26..2025-12-01 (Thanksgiving, then a weekend) as ``archive-platform
  backfill`` plans it: the NYSE assets get the three sessions only, in one chunked run, each
  day with its own materialization and its own result of every check; the UTC asset gets all
  six days, one run each;
* a run whose worker died is retried by the daemon (same partition and tags, retry number 1) and
  the partition converges: materialized, checks current and passing, nothing left to recover;
* a step failure is not retried by the daemon (``retry_on_asset_or_op_failure: false``); the
  recovery sensor requests the day once it can be archived, and that run converges.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import consume_new_runs_for_automatic_reexecution
from dagster._daemon.backfill import execute_backfill_iteration

from archive_platform.backfill import IN_PROCESS, plan_backfill
from archive_platform.defs import automation
from archive_platform.defs.assets import CHECKS
from archive_platform.defs.resources import SourcesResource
from archive_platform_tests.dagster_helpers import QUIET, defs_for, sim_env

UTC = timezone.utc
REPO = Path(__file__).resolve().parents[1]
LOCATION = "archive_platform"
LOG = logging.getLogger("test_orchestration_backfill")
SESSIONS = ["2025-11-26", "2025-11-28", "2025-12-01"]
UTC_DAYS = ["2025-11-26", "2025-11-27", "2025-11-28", "2025-11-29", "2025-11-30", "2025-12-01"]


def _instance_settings() -> dict:
    """The repository's run-retry and run-monitoring settings, with a launcher that executes a
    submitted run at once in this process (the daemon's queue and subprocesses left out)."""
    cfg = yaml.safe_load((REPO / "deploy" / "instance" / "dagster.yaml").read_text())
    return {
        "run_retries": cfg["run_retries"], "run_monitoring": cfg["run_monitoring"],
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
        "run_launcher": {"module": "dagster._core.launcher.sync_in_memory_run_launcher",
                         "class": "SyncInMemoryRunLauncher"},
    }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """(tmp, instance, workspace context) over the code location as the daemon loads it."""
    tmp = tmp_path_factory.mktemp("daemon")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in sim_env(tmp, ARCHIVE_SYMBOLS="SPY").items():
            mp.setenv(k, v)
        with instance_for_test(overrides=_instance_settings()) as instance:
            target = InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(
                LoadableTargetOrigin(executable_path=sys.executable, module_name="archive_platform.definitions",
                                     working_directory=str(REPO)), location_name=LOCATION))
            with create_test_daemon_workspace_context(target, instance) as ctx:
                yield tmp, instance, ctx


def _materialized(instance, asset: str) -> list[str]:
    recs = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
    return sorted(r.event_log_entry.asset_materialization.partition for r in recs)


def _check_days(instance, asset: str, check: str) -> dict:
    info = instance.event_log_storage.get_asset_check_partition_info([dg.AssetCheckKey(dg.AssetKey(asset), check)])
    return {i.partition_key: (i.latest_execution_status.value, i.is_current) for i in info}


def test_a_backfill_over_a_holiday_and_a_weekend_targets_only_valid_partitions(daemon):
    _, instance, ctx = daemon
    plans = plan_backfill(date(2025, 11, 26), date(2025, 12, 1), ["stocks_1m", "daily_bars", "capture_gaps"],
                          now=datetime(2025, 12, 2, 12, 0, tzinfo=UTC), first=date(2025, 1, 2))
    assert {p.calendar: list(p.keys) for p in plans} == {"nyse": SESSIONS, "utc": UTC_DAYS}
    graph = ctx.create_request_context().asset_graph
    ids = []
    for i, plan in enumerate(plans):  # what the CLI sends: one asset backfill per calendar
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id=f"bf{i}", asset_graph=graph, partition_names=list(plan.keys),
            asset_selection=[dg.AssetKey(a) for a in plan.assets], backfill_timestamp=time.time(), tags={},
            dynamic_partitions_store=instance, all_partitions=False, title=None, description=None,
            run_config=IN_PROCESS)
        instance.add_backfill(backfill)
        ids.append(backfill.backfill_id)
    for _ in range(20):
        list(execute_backfill_iteration(ctx, LOG))
        if all(instance.get_backfill(b).status != BulkActionStatus.REQUESTED for b in ids):
            break
    assert [instance.get_backfill(b).status for b in ids] == [BulkActionStatus.COMPLETED_SUCCESS] * 2
    runs = [r.dagster_run for r in instance.get_run_records()]
    nyse = [r for r in runs if dg.AssetKey("stocks_1m") in (r.asset_selection or ())]
    # one chunked run over the range (its keys are the definition's: sessions only)
    assert [(r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end"))
            for r in nyse] == [("2025-11-26", "2025-12-01")]
    utc = sorted(r.tags["dagster/partition"] for r in runs if dg.AssetKey("capture_gaps") in (r.asset_selection or ()))
    assert utc == UTC_DAYS
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert _materialized(instance, "stocks_1m") == _materialized(instance, "daily_bars") == SESSIONS
    assert _materialized(instance, "capture_gaps") == UTC_DAYS
    # every day its own result of every check, current, passing
    for check in CHECKS:
        assert _check_days(instance, "stocks_1m", check) == dict.fromkeys(SESSIONS, ("SUCCEEDED", True)), check
    assert _check_days(instance, "daily_bars", "matches_inputs") == dict.fromkeys(SESSIONS, ("SUCCEEDED", True))
    assert _check_days(instance, "capture_gaps", "schema") == dict.fromkeys(UTC_DAYS, ("SUCCEEDED", True))


def test_a_run_whose_worker_died_is_retried_and_converges(daemon, monkeypatch):
    tmp, instance, ctx = daemon
    day = "2025-11-21"
    assets = [dg.AssetKey("stocks_1m"), dg.AssetKey("daily_bars")]
    location = ctx.create_request_context().get_code_location(LOCATION)
    remote = location.get_job(JobSubsetSelector(location_name=LOCATION, repository_name="__repository__",
                                                job_name="archive_all", op_selection=None, asset_selection=assets))
    defs = defs_for(tmp, ARCHIVE_SYMBOLS="SPY")
    # launched, then its worker was killed before any step ran: the run failed, not a step
    run = instance.create_run_for_job(
        defs.resolve_job_def("archive_all"), run_config=IN_PROCESS, tags={"dagster/partition": day},
        status=dg.DagsterRunStatus.STARTED, asset_selection=frozenset(assets),
        remote_job_origin=remote.get_remote_origin(), job_code_origin=remote.get_python_origin())
    instance.report_run_failed(run, "Run execution process was terminated by signal 9 (SIGKILL)")
    list(consume_new_runs_for_automatic_reexecution(ctx, [instance.get_run_record_by_id(run.run_id)], LOG))
    retries = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run.run_id}))
    (retry,) = retries
    assert retry.tags["dagster/retry_number"] == "1" and retry.tags["dagster/root_run_id"] == run.run_id
    assert retry.tags["dagster/partition"] == day and retry.status == dg.DagsterRunStatus.SUCCESS
    assert day in _materialized(instance, "stocks_1m") and day in _materialized(instance, "daily_bars")
    status = instance.get_status_by_partition(dg.AssetKey("stocks_1m"), [day],
                                              defs.resolve_job_def("archive_all").partitions_def)
    assert status[day].value == "MATERIALIZED"
    assert _check_days(instance, "daily_bars", "matches_inputs")[day] == ("SUCCEEDED", True)
    # consuming the same failure again launches nothing more
    list(consume_new_runs_for_automatic_reexecution(ctx, [instance.get_run_record_by_id(run.run_id)], LOG))
    assert len(instance.get_runs(dg.RunsFilter(tags={"dagster/root_run_id": run.run_id}))) == 1


def test_a_step_failure_is_left_to_the_recovery_sensor_which_converges(daemon, monkeypatch):
    tmp, instance, ctx = daemon
    day = "2025-11-20"
    defs = defs_for(tmp, ARCHIVE_SYMBOLS="SPY", ARCHIVE_RECOVERY_LOOKBACK="1")
    # archived at 11:00 ET that day: the bars are not final, the step fails
    early = dg.Definitions(assets=defs.assets, jobs=defs.jobs, asset_checks=defs.asset_checks, resources={
        **defs.resources, "sources": SourcesResource(symbols=["SPY"], as_of="2025-11-20T11:00:00-05:00")})
    failed = early.resolve_job_def("archive_all").execute_in_process(
        instance=instance, partition_key=day, run_config=QUIET, raise_on_error=False,
        asset_selection=[dg.AssetKey("stocks_1m")])
    assert not failed.success
    record = instance.get_run_record_by_id(failed.run_id)
    list(consume_new_runs_for_automatic_reexecution(ctx, [record], LOG))
    assert instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": failed.run_id})) == []
    assert instance.get_run_by_id(failed.run_id).tags.get("dagster/will_retry") == "false"
    # the next morning the recovery sensor asks for the day, and its run converges
    monkeypatch.setattr(automation, "utcnow", lambda: datetime(2025, 11, 21, 13, 0, tzinfo=UTC))
    ctx_sensor = dg.build_sensor_context(instance=instance, definitions=defs)
    reqs = defs.resolve_sensor_def("recover_missing_partitions").evaluate_tick(ctx_sensor).run_requests
    (req,) = [r for r in reqs if r.partition_key == day]
    assert dg.AssetKey("stocks_1m") in req.asset_selection
    again = defs.resolve_job_def("archive_all").execute_in_process(
        instance=instance, partition_key=day, run_config=QUIET, tags=req.tags, asset_selection=req.asset_selection)
    assert again.success
    assert _check_days(instance, "stocks_1m", "complete")[day] == ("SUCCEEDED", True)
    reqs = defs.resolve_sensor_def("recover_missing_partitions").evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs)).run_requests
    assert [r for r in reqs if r.partition_key == day] == []
