"""Backfill throughput through the Dagster daemon (not in-process), on SQLite and on PostgreSQL.

    ./run python bench/backfill.py                       # 20 sessions, both storages
    ./run python bench/backfill.py --sessions 252        # a year (the issue's target: <= 120 s)
    ./run python bench/backfill.py --storage sqlite --symbols SPY,QQQ

For each storage: a fresh instance from deploy/instance/ (PostgreSQL: a throwaway server), the
code server, webserver and daemon as separate processes (schedules and sensors off), then an asset
backfill of ``--asset`` over the first N sessions of 2025 launched through the webserver's GraphQL
API, exactly as ``archive-platform backfill`` does. Reports total time, partitions per second and
where the time of each run went, from the run's own event log:

  plan     backfill requested -> its first run created (the backfill daemon ticks every 30 s)
  queued   run created -> dequeued by the run coordinator (max_concurrent_runs, pools)
  launch   dequeued -> RUN_START (run worker process start + loading the definitions)
  step     STEP_WORKER_STARTING -> STEP_START (multiprocess executor only: the per-step
           subprocess, importing Dagster and loading the definitions again)
  work     STEP_START -> STEP_SUCCESS (fetch, write, read back, checks)
  finish   last step end -> RUN_SUCCESS

Baseline, measured in the same run: the same partitions materialized in-process in ONE run by
``dagster.materialize`` (one process, no daemon, no subprocesses). The ratio daemon/in-process is
the orchestration overhead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archive_platform.backfill import IN_PROCESS, launch_asset_backfill, wait_for_backfill  # noqa: E402
from archive_platform.calendar import trading_days  # noqa: E402


def sessions(n: int) -> list[str]:
    from datetime import date, timedelta

    days = trading_days(date(2025, 1, 2), date(2025, 1, 2) + timedelta(days=2 * n + 30))
    return [d.isoformat() for d in days[:n]]


def archive_env(tmp: Path, symbols: str | None) -> dict[str, str]:
    env = {"ARCHIVE_SIM_ROOT": str(tmp / "sim"), "ARCHIVE_SIM_DUCKDB": str(tmp / "sim.duckdb"),
           "ARCHIVE_ROOT": str(tmp / "live"), "ARCHIVE_DUCKDB": str(tmp / "live.duckdb"),
           "ARCHIVE_START_DATE": "2025-01-02"}
    if symbols:
        env["ARCHIVE_SYMBOLS"] = symbols
    return env


def breakdown(instance, backfill_id: str) -> dict:
    """Per-run phase durations (seconds) from the event log of the backfill's runs."""
    import dagster as dg
    from dagster._core.events import DagsterEventType as T

    runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    phases = defaultdict(list)
    requested = instance.get_backfill(backfill_id).backfill_timestamp
    if runs:  # the backfill daemon's tick (every 30 s) and planning, before any run exists
        phases["plan"].append(min(r.create_timestamp.timestamp() for r in runs) - requested)
    for rec in runs:
        events = instance.all_logs(rec.dagster_run.run_id)
        first: dict = {}
        step_start, step_end, worker_start = {}, {}, {}
        for e in events:
            if not e.is_dagster_event:
                continue
            et = e.dagster_event.event_type
            first.setdefault(et, e.timestamp)
            key = e.step_key
            if et == T.STEP_WORKER_STARTING:
                worker_start.setdefault(key, e.timestamp)
            elif et == T.STEP_START:
                step_start[key] = e.timestamp
            elif et in (T.STEP_SUCCESS, T.STEP_FAILURE):
                step_end[key] = e.timestamp
        created = rec.create_timestamp.timestamp()
        starting = first.get(T.RUN_STARTING, first.get(T.RUN_DEQUEUED, created))
        run_start = first.get(T.RUN_START)
        run_end = first.get(T.RUN_SUCCESS) or first.get(T.RUN_FAILURE)
        if run_start is None or run_end is None:
            continue
        phases["queued"].append(starting - created)
        phases["launch"].append(run_start - starting)
        phases["step"].append(sum(step_start[k] - worker_start[k] for k in step_start if k in worker_start))
        phases["work"].append(sum(step_end[k] - step_start[k] for k in step_end if k in step_start))
        phases["finish"].append(run_end - max(step_end.values(), default=run_start))
        phases["run"].append(run_end - created)
        phases["partitions"].append(len(rec.dagster_run.tags.get("dagster/asset_partition_range_start", "")) and
                                    _range_len(rec.dagster_run.tags))
    return phases


def _range_len(tags) -> int:
    from datetime import date

    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    return len(trading_days(date.fromisoformat(start), date.fromisoformat(end))) if start and end else 1


def through_daemon(storage: str, keys: list[str], asset: str, symbols: str | None, executor: str,
                   tuned_chunk: int | None = None) -> dict:
    from dagster import DagsterInstance

    from archive_platform_tests.deploy_helpers import install_instance, topology
    from archive_platform_tests.pg_helpers import postgres_server

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-backfill-{storage}-")))
        env = archive_env(tmp, symbols)
        if storage == "postgres":
            pg = stack.enter_context(postgres_server())
            env.update(pg.env())
        home = tmp / "home"
        install_instance(home, storage)
        module = "archive_platform.definitions"
        if tuned_chunk:  # the proposed defs changes (bench/backfill_tuned_defs.py)
            module = "bench.backfill_tuned_defs"
            env.update(ARCHIVE_BENCH_CHUNK=str(tuned_chunk), PYTHONPATH=str(REPO))
        t0 = time.perf_counter()
        topo = stack.enter_context(topology(home, env, module=module))
        t_ready = time.perf_counter() - t0
        t1 = time.perf_counter()
        backfill_id = launch_asset_backfill(topo.url, [asset], keys, title="bench",
                                            run_config=IN_PROCESS if executor == "in_process" and not tuned_chunk else None)
        final = wait_for_backfill(topo.url, backfill_id, timeout=3600, poll=1.0)
        total = time.perf_counter() - t1
        if not final.succeeded:
            raise SystemExit(f"{storage}: backfill ended {final.status}: {final.line()}\n"
                             + topo.log_tail("daemon") + topo.log_tail("code_server"))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with DagsterInstance.from_config(str(home)) as instance:
                phases = breakdown(instance, backfill_id)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return {"total": total, "ready": t_ready, "phases": phases}


def in_process(keys: list[str], asset: str, symbols: str | None) -> float:
    import dagster as dg

    from archive_platform.defs import build_definitions

    with tempfile.TemporaryDirectory(prefix="bench-backfill-inproc-") as d:
        tmp = Path(d)
        defs = build_definitions(archive_env(tmp, symbols))
        t0 = time.perf_counter()
        (tmp / "home").mkdir()
        with dg.instance_for_test(temp_dir=str(tmp / "home")) as instance:
            dg.materialize([defs.resolve_assets_def(asset)], instance=instance,
                           tags={"dagster/asset_partition_range_start": keys[0],
                                 "dagster/asset_partition_range_end": keys[-1]},
                           run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20, help="NYSE sessions to backfill (252 = a year)")
    ap.add_argument("--storage", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--asset", default="stocks_1m")
    ap.add_argument("--symbols", default=None, help="ARCHIVE_SYMBOLS (default: the 56-symbol universe)")
    ap.add_argument("--executor", choices=["in_process", "multiprocess", "both"], default="in_process",
                    help="executor of the backfill's runs (archive-platform backfill uses in_process)")
    ap.add_argument("--tuned", type=int, metavar="CHUNK", default=None,
                    help="serve bench/backfill_tuned_defs.py instead: sim assets back-filled CHUNK "
                    "sessions a run, in-process executor (the proposed defs change)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-process baseline")
    args = ap.parse_args()
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)

    keys = sessions(args.sessions)
    print(f"backfill of {args.asset}: {len(keys)} sessions {keys[0]}..{keys[-1]}, "
          f"symbols={args.symbols or 'default universe'}, {os.cpu_count()} cores")
    base = None if args.no_baseline else in_process(keys, args.asset, args.symbols)
    if base is not None:
        print(f"baseline  in-process dg.materialize, one run: {base:7.1f} s  "
              f"{len(keys) / base:6.2f} partitions/s")
    executors = ["in_process", "multiprocess"] if args.executor == "both" else [args.executor]
    if args.tuned:  # the tuned definitions choose their executor themselves
        executors = ["in_process"]
    for storage, executor in [(s, e) for s in (["sqlite", "postgres"] if args.storage == "both"
                                               else [args.storage]) for e in executors]:
        r = through_daemon(storage, keys, args.asset, args.symbols, executor, args.tuned)
        ph = r["phases"]
        runs = len(ph["run"])
        label = f"tuned/{args.tuned}" if args.tuned else executor
        line = (f"{storage:9} {label:12} daemon backfill: {r['total']:7.1f} s  {len(keys) / r['total']:6.2f} partitions/s"
                f"  runs={runs}  (processes ready in {r['ready']:.1f} s)")
        if base:
            line += f"  {r['total'] / base:5.1f}x the in-process baseline"
        print(line)
        for name in ("plan", "queued", "launch", "step", "work", "finish", "run"):
            vals = ph[name]
            if vals:
                print(f"    {name:7} per run: mean {statistics.mean(vals):6.2f} s  max {max(vals):6.2f} s  "
                      f"sum {sum(vals):7.1f} s")


if __name__ == "__main__":
    main()
