"""The project's definitions with the two defs-level changes bench/backfill.py measures: assets fed
by the simulated market get a larger backfill chunk (``ARCHIVE_BENCH_CHUNK`` sessions per run),
and every job runs its steps in the run worker's process. Not for production: it shows what the
proposed change to archive_platform/defs would buy before it is made there.

    dagster api grpc -m bench.backfill_tuned_defs ...   (bench/backfill.py --tuned does this)
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

from archive_platform.defs import build_definitions

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@dg.definitions
def defs() -> dg.Definitions:
    base = build_definitions()
    chunk = int(os.environ.get("ARCHIVE_BENCH_CHUNK", "64"))
    assets = []
    for a in base.assets or []:
        if isinstance(a, dg.AssetsDefinition) and a.partitions_def is not None and a.op.pool is None:
            a = a.with_attributes(backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=chunk))
        assets.append(a)
    return dg.Definitions(assets=assets, jobs=base.jobs, schedules=base.schedules, sensors=base.sensors,
                          resources=base.resources, executor=dg.in_process_executor)
