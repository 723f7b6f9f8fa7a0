"""A run killed mid-step (SIGKILL) stays STARTED in Dagster and its partition IN_PROGRESS; the
recovery sensor must see that no live run holds the partition and request it again (issue 11,
item 9). Real Dagster instance on a temp DAGSTER_HOME, real process, real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timezone

import dagster as dg
import pytest

from archive_platform.coverage import Entry
from archive_platform.datasets import DATASETS as ALL_DATASETS

DATASETS = [d for d in ALL_DATASETS if d.calendar_name == "nyse"]  # the ledger judges NYSE sessions
from archive_platform.defs import automation
from archive_platform.defs.recovery import LedgerContext
from archive_platform.partitions import partitions_for
from archive_platform.settings import Settings
from archive_platform_tests.dagster_helpers import defs_for, sim_env

# A run of an asset keyed `uw_flow` on the archive's partitions whose step blocks: the process
# writes its pid to a file once the step runs, then sleeps until it is killed.
WORKER = '''
import os, sys, time
from datetime import date
import dagster as dg
from archive_platform.partitions import partitions_for

@dg.asset(name="uw_flow", partitions_def=partitions_for("nyse", date(2025, 1, 2)))
def uw_flow():
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)

job = dg.Definitions(assets=[uw_flow], jobs=[dg.define_asset_job("hang", selection=["uw_flow"])]).resolve_job_def("hang")
with dg.DagsterInstance.get() as instance:
    job.execute_in_process(instance=instance, partition_key="2025-11-26")
'''
THANKSGIVING = datetime(2025, 11, 27, 23, 0, tzinfo=timezone.utc)  # closed sessions: 11-25, 11-26


def _requests(defs, instance):
    sensor = next(s for s in defs.sensors if s.name == "recover_missing_partitions")
    res = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    return {rr.partition_key: sorted(k.to_user_string() for k in rr.asset_selection)
            for rr in res.run_requests}


def _entry(tmp, instance) -> Entry:
    ctx = LedgerContext(Settings.from_env(sim_env(tmp, ARCHIVE_SYMBOLS="SPY")), DATASETS,
                        {"nyse": partitions_for("nyse", date(2025, 1, 2))})
    return next(e for e in ctx.entries(instance, THANKSGIVING) if (e.dataset, e.day) == ("uw_flow", date(2025, 11, 26)))


@pytest.mark.slow
def test_a_killed_run_is_requested_again(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "worker.py").write_text(WORKER)
    marker = tmp_path / "started"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(marker)], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the worker's step never started"
            time.sleep(0.2)
        monkeypatch.setattr(automation, "utcnow", lambda: THANKSGIVING)
        defs = defs_for(tmp_path, ARCHIVE_SYMBOLS="SPY", ARCHIVE_RECOVERY_LOOKBACK="2")
        others = sorted(d.name for d in DATASETS if d.name != "uw_flow")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            (run,) = instance.get_runs()
            assert run.status == dg.DagsterRunStatus.STARTED
            # alive: the partition is in progress and not requested
            assert _requests(defs, instance)["2025-11-26"] == others
            assert _entry(tmp_path, instance).state == "in-progress"

            os.killpg(proc.pid, signal.SIGKILL)  # mid-step: no event, no status change
            proc.wait(timeout=30)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
            e = _entry(tmp_path, instance)
            assert (e.state, e.dagster_status) == ("missing", "LOST")
            got = _requests(defs, instance)
            assert got["2025-11-26"] == sorted([*others, "uw_flow"])
            assert got["2025-11-25"] == sorted(d.name for d in DATASETS)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
