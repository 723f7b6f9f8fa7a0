"""Dagster's side of the coverage ledger: partition statuses with dead runs told apart, the
ledger over the instance and the stores, and the recovery sensor's run requests.

A partition Dagster shows IN_PROGRESS is only in progress if its run is alive: a run whose
status is STARTING for longer than the instance's start timeout, or STARTED while the process
that executes it is gone (killed, out of memory, machine rebooted), is ``LOST``, and the ledger
calls the day ``missing``. The process is the one Dagster's engine events name (``pid``: the run
worker, or the executor's process); it is checked on this machine (the archive runs on one).

A ``uw_flow`` day whose polls gave up on a window (the ``uw_flow_poll`` sensor records an
``AssetObservation`` with ``automation.UNFETCHED_META``) is passed to the ledger as a poll gap
until a whole-day run of ``uw_flow`` materializes the day after the observation
(``open_flow_gaps``): the ledger then calls the day ``degraded`` (reconcilable), so status shows
it, the ``coverage`` asset records it and the recovery sensor fetches the day again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG,
)

from archive_platform import coverage
from archive_platform.archiving import Settings as PlanSettings, planned_instants
from archive_platform.datasets import Dataset
from archive_platform.procs import pid_alive
from archive_platform.defs.assets import TAG_MODE
from archive_platform.settings import Settings

WAITING = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)
ACTIVE = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def run_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was reported) of the process executing the run, from its engine events."""
    for rec in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records:
        data = rec.event_log_entry.dagster_event.event_specific_data
        pid = getattr(data, "metadata", {}).get("pid") if data is not None else None
        if pid is not None:
            return int(pid.value), rec.event_log_entry.timestamp
    return None


def run_alive(instance: dg.DagsterInstance, record, now: datetime) -> bool:
    """Whether a run can still write its partitions (see the module's docstring)."""
    run = record.dagster_run
    if run.status in WAITING:
        return True
    if run.status not in ACTIVE:
        return False
    if run.status == dg.DagsterRunStatus.STARTING:
        created = record.create_timestamp.timestamp()
        if now.timestamp() - created > instance.run_monitoring_start_timeout_seconds:
            return False
    found = run_pid(instance, run.run_id)
    return True if found is None else pid_alive(*found)


def _run_keys(run, partitions_def) -> list[str]:
    tags = run.tags
    if PARTITION_NAME_TAG in tags:
        return [tags[PARTITION_NAME_TAG]]
    lo, hi = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if lo and hi:
        return partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(lo, hi))
    return []


def partition_statuses(
    instance: dg.DagsterInstance, datasets: Sequence[Dataset], keys: Mapping[str, Sequence[str]],
    parts: Mapping[str, dg.PartitionsDefinition], now: datetime,
) -> dict[tuple[str, date], str | None]:
    """Dagster's status of each (dataset, key), with IN_PROGRESS split into IN_PROGRESS (a live
    run holds it) and LOST (no live run does)."""
    out: dict[tuple[str, date], str | None] = {}
    active = None
    for ds in datasets:
        pdef, ak = parts[ds.calendar_name], dg.AssetKey(ds.name)
        wanted = [k for k in keys.get(ds.name, ()) if pdef.has_partition_key(k)]
        if not wanted:
            continue
        with dg.partition_loading_context(effective_dt=now):
            by_key = instance.get_status_by_partition(ak, wanted, pdef) or {}
        for k in wanted:
            st = by_key.get(k)
            status = st.value if st is not None else None
            if status == "IN_PROGRESS":
                if active is None:
                    active = instance.get_run_records(dg.RunsFilter(statuses=[*WAITING, *ACTIVE]))
                holders = [r for r in active
                           if (not r.dagster_run.asset_selection or ak in r.dagster_run.asset_selection)
                           and k in _run_keys(r.dagster_run, pdef)]
                status = "IN_PROGRESS" if any(run_alive(instance, r, now) for r in holders) else "LOST"
            out[(ds.name, date.fromisoformat(k))] = status
    return out


#: the polled dataset whose given-up poll windows the ledger counts as poll gaps
FLOW = "uw_flow"
#: run modes that fetch a whole day (a run without the mode tag archives whole days); ``poll``
#: fetches a window, ``eod`` only compacts what the polls stored, ``snapshot`` one instant
WHOLE_DAY_MODES = ("day",)
_PAGE = 500


def _records(fetch, records_filter):
    """Every record ``fetch`` (``instance.fetch_observations`` or ``fetch_materializations``)
    returns for ``records_filter``, newest first, page by page."""
    cursor = None
    while True:
        res = fetch(records_filter, limit=_PAGE, cursor=cursor)
        yield from res.records
        if not res.has_more:
            return
        cursor = res.cursor


def _last_whole_day_fetch(instance, asset_key: dg.AssetKey, key: str, after: float) -> float | None:
    """When the newest materialization of ``asset_key`` on partition ``key`` after ``after``
    (a timestamp) by a whole-day run (``WHOLE_DAY_MODES``) was recorded; None if there is none.
    A materialization whose run is gone from the instance does not count."""
    flt = dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key], after_timestamp=after)
    modes: dict[str, str | None] = {}
    batch: list = []

    def newest_whole_day(recs) -> float | None:
        unknown = sorted({r.run_id for r in recs if r.run_id not in modes})
        if unknown:
            for run in instance.get_runs(dg.RunsFilter(run_ids=unknown)):
                modes[run.run_id] = run.tags.get(TAG_MODE, "day")
        return next((r.timestamp for r in recs if modes.get(r.run_id) in WHOLE_DAY_MODES), None)

    for rec in _records(instance.fetch_materializations, flt):  # newest first
        batch.append(rec)
        if len(batch) == _PAGE:
            found = newest_whole_day(batch)
            if found is not None:
                return found
            batch = []
    return newest_whole_day(batch) if batch else None


def open_flow_gaps(instance, keys: Iterable[str], asset_key: dg.AssetKey = dg.AssetKey(FLOW),
                   ) -> dict[str, list[tuple[str, str]]]:
    """Per partition key of ``keys``, the poll windows ``(since, until)`` the polls gave up on
    (the ``uw_flow_poll`` sensor's observations, as ``automation.flow_gaps`` reads them; ``since``
    is ``open`` for a window from the open) that are still open: recorded after the day's newest
    materialization by a whole-day run. Poll and end-of-day runs do not count: the polls go on
    after a window without it, and the end-of-day run only compacts what they stored. Days with
    no open window are left out."""
    from archive_platform.defs.automation import UNFETCHED_META  # automation imports this module

    wanted = set(keys)
    if not wanted:
        return {}
    seen: dict[str, list[tuple[str, str, float]]] = {}
    for rec in _records(instance.fetch_observations, dg.AssetRecordsFilter(asset_key=asset_key)):
        obs = rec.asset_observation
        meta = obs.metadata if obs is not None else {}
        if rec.partition_key not in wanted or UNFETCHED_META not in meta:
            continue
        since, _, until = str(meta[UNFETCHED_META].value).partition("/")
        seen.setdefault(rec.partition_key, []).append((since, until, rec.timestamp))
    out: dict[str, list[tuple[str, str]]] = {}
    for key, gaps in sorted(seen.items()):
        fetched = _last_whole_day_fetch(instance, asset_key, key, min(g[2] for g in gaps))
        still = sorted({(s, u) for s, u, ts in gaps if fetched is None or ts > fetched})
        if still:
            out[key] = still
    return out


@dataclass(frozen=True)
class LedgerContext:
    """What the ledger needs beyond the instance: the settings, datasets and partitions."""

    settings: Settings
    datasets: Sequence[Dataset]
    parts: Mapping[str, dg.PartitionsDefinition]

    def kind(self, ds: Dataset) -> str:
        """The archive ``ds`` lives in: UTC-day datasets follow the capture setting
        (``Settings.crypto_kind``), the NYSE ones their source selection."""
        return self.settings.dataset_kind(ds)

    def store_for(self, ds: Dataset):
        from archive_platform.store import ArchiveStore

        kind = self.kind(ds)
        return ArchiveStore(self.settings.root(kind), kind=kind)

    def roots(self) -> dict[str, Path]:
        return {k: self.settings.root(k) for k in {self.kind(d) for d in self.datasets}}

    def symbols(self) -> list[str]:
        if self.settings.symbols:
            return list(self.settings.symbols)
        from archive_platform.sim import default_symbols

        return default_symbols()

    def first_day(self) -> date | None:
        """ARCHIVE_START_DATE when set, else the first day anything was stored."""
        return self.settings.start_date or coverage.first_stored_day(self.datasets, self.store_for)

    def stored_ledger(self, days: Sequence[date] | None = None) -> dict:
        """The ledger the ``coverage`` asset last wrote (all of it, or ``days``): entries whose
        files have not changed since are not read again."""
        from archive_platform.datasets.coverage import read_ledger

        out: dict = {}
        for root in self.roots().values():
            out.update(read_ledger(root, days))
        return out

    def entries(self, instance, now: datetime, *, days: Mapping[str, Sequence[date]] | None = None,
                previous=None) -> list[coverage.Entry]:
        first = self.first_day()
        if previous is None:
            wanted = None if days is None else sorted({d for v in days.values() for d in v})
            previous = self.stored_ledger(wanted)
        if days is None:
            days = {ds.name: coverage.ledger_days(ds, first, now, self.store_for(ds).days(ds))
                    for ds in self.datasets}
        keys = {n: [d.isoformat() for d in v] for n, v in days.items()}
        statuses = partition_statuses(instance, self.datasets, keys, self.parts, now)
        gaps = {(FLOW, date.fromisoformat(k)): v
                for k, v in open_flow_gaps(instance, keys.get(FLOW, ())).items()}
        plan = PlanSettings(tuple(self.symbols()), self.settings_every(), self.settings.iv_rank_times)

        def expected(ds, day):
            return len(planned_instants(ds, day, plan, now)) if ds.snapshot else None

        return coverage.build_ledger(
            self.datasets, store_for=self.store_for, symbols=self.symbols(), statuses=statuses,
            first_day=first, now=now, expected_snapshots=expected,
            snapshot_every=self.settings_every(), previous=previous, days=days, poll_gaps=gaps)

    def settings_every(self):
        from datetime import timedelta

        return timedelta(minutes=self.settings.snapshot_minutes)


def recovery_requests(ctx: LedgerContext, instance, keys: Sequence[str], now: datetime, log=None):
    """One run per day over the datasets the ledger says must be fetched again: missing (never
    written, deleted on disk, run died), failed, or degraded in a way a new fetch can fix."""
    first = ctx.first_day()
    if first is None:
        if log:
            log.info("the archive is empty and ARCHIVE_START_DATE is not set: nothing to recover")
        return []
    days = [date.fromisoformat(k) for k in keys if date.fromisoformat(k) >= first]
    if not days:
        return []
    entries = ctx.entries(instance, now, days={ds.name: days for ds in ctx.datasets})
    hour = now.strftime("%Y%m%d%H")
    reqs = []
    for day, group in sorted(coverage.by_day(entries).items()):
        todo = [e for e in group if e.wanted_again]
        if not todo:
            continue
        names = _with_dependents({e.dataset for e in todo}, ctx.datasets)
        # a degraded day has files, so the ledger says "degraded" even while a live run (the
        # previous recovery run of a slow vendor, a manual run) is rewriting it: leave the day
        # to that run rather than start a second one over the same partitions
        held = sorted({e.dataset for e in group if e.dagster_status == "IN_PROGRESS"} & set(names))
        if held:
            if log:
                log.info(f"recovery leaves {day} to the live run writing {', '.join(held)}")
            continue
        if any(e.state != "degraded" or e.dagster_status in ("FAILED", "LOST") for e in todo):
            # one attempt per day and hour at most: a vendor outage does not become a run storm.
            # A degraded day whose latest run failed or died was not fetched again (its files
            # are unchanged), so it is retried like a failed day, not given up on.
            key = f"recover:{day}:{'+'.join(names)}:{hour}"
        else:  # a degraded day is retried once per distinct state of its files' content
            # (rows and findings, not the files' fingerprint: a re-fetch that returns the same
            # degraded data rewrites the files with new mtimes, which must not ask again)
            digest = hashlib.sha256("|".join(f"{e.dataset}:{e.rows}:{e.reason}" for e in todo).encode())
            key = f"recover:{day}:{'+'.join(names)}:degraded:{digest.hexdigest()[:12]}"
        if log:
            log.info(f"recovery requests {day} for " + ", ".join(
                f"{e.dataset} ({e.state}: {e.reason})" for e in todo))
        reqs.append(dg.RunRequest(
            run_key=key, partition_key=day.isoformat(),
            asset_selection=[dg.AssetKey(n) for n in names],
            tags={TAG_MODE: "day", "archive/trigger": "recovery"},
        ))
    return reqs


def _with_dependents(names: set[str], datasets) -> list[str]:
    """``names`` plus every recoverable dataset derived from them, transitively: a derived day
    computed from a partial input (daily_iv from a degraded options day) is rebuilt with it."""
    out = set(names)
    grew = True
    while grew:
        more = {d.name for d in datasets if d.name not in out and set(d.derived_from) & out}
        out |= more
        grew = bool(more)
    return sorted(out)
