"""The definitions graph compared with a committed snapshot (as dagster-open-platform's
``test_defs.py`` does): an unintended change to assets, partitions, checks, kinds, tags, groups,
schedules, sensors or jobs fails here. After an intended change, regenerate the file with
``./run python -m archive_platform_tests.test_defs_snapshot`` and review the diff."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg

from archive_platform.calendars import CALENDARS
from archive_platform.defs import build_definitions
from archive_platform.partitions import partitions_for

SNAPSHOT = Path(__file__).with_name("defs_snapshot.json")
#: partitions are listed as of this instant, so the snapshot does not move with the clock
AS_OF = datetime(2025, 12, 1, 12, 0, tzinfo=timezone.utc)
ENV = {
    "ARCHIVE_SIM_ROOT": "/snap/sim", "ARCHIVE_SIM_DUCKDB": "/snap/sim.duckdb",
    "ARCHIVE_ROOT": "/snap/live", "ARCHIVE_DUCKDB": "/snap/live.duckdb",
    "ARCHIVE_SYMBOLS": "SPY,QQQ", "ARCHIVE_START_DATE": "2025-01-02",
}


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        entry = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "tags": dict(sorted(node.tags.items())),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": sorted(k.name for k in node.check_keys),
        }
        pd = node.partitions_def
        if pd is not None:
            with dg.partition_loading_context(effective_dt=AS_OF):
                keys = pd.get_partition_keys()
            entry["partitions"] = {"timezone": pd.timezone, "first": keys[0], "last": keys[-1],
                                   "count": len(keys)}
        assets[key.to_user_string()] = entry
    blocking = {
        s.key.to_user_string(): True
        for a in defs.assets for s in getattr(a, "check_specs", []) if s.blocking
    }
    jobs = {}
    for job in sorted(defs.jobs, key=lambda j: j.name):
        resolved = defs.resolve_job_def(job.name)
        jobs[job.name] = sorted(k.to_user_string() for k in resolved.asset_layer.executable_asset_keys) \
            if hasattr(resolved, "asset_layer") else []
    schedules = {s.name: {"cron": s.cron_schedule, "timezone": s.execution_timezone,
                          "job": s.job_name, "status": s.default_status.value}
                 for s in sorted(defs.schedules, key=lambda s: s.name)}
    sensors = {s.name: {"status": s.default_status.value,
                        "job": s.job_name if s.has_jobs else None}
               for s in sorted(defs.sensors, key=lambda s: s.name)}
    calendars = {}
    for name in sorted(CALENDARS):  # every calendar's partitions, used by a dataset or not
        pd = partitions_for(name, date(2025, 1, 2))
        with dg.partition_loading_context(effective_dt=AS_OF):
            keys = pd.get_partition_keys()
        calendars[name] = {"timezone": pd.timezone, "first": keys[0], "last": keys[-1],
                           "count": len(keys), "has_saturday": "2025-11-29" in keys}
    return {"assets": assets, "blocking_checks": sorted(blocking), "jobs": jobs,
            "schedules": schedules, "sensors": sensors, "calendars": calendars}


def current() -> dict:
    return json.loads(json.dumps(describe(build_definitions(ENV)), default=str))


def test_definitions_match_the_committed_snapshot():
    want = json.loads(SNAPSHOT.read_text())
    got = current()
    for section in ("assets", "blocking_checks", "jobs", "schedules", "sensors", "calendars"):
        assert got[section] == want[section], f"{section} changed; see {SNAPSHOT.name}"


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}", file=sys.stderr)
