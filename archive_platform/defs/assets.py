"""One partitioned asset per dataset declaration, its checks, and the DuckDB views asset.

Each asset body reads its partition(s) and run tags, calls ``archiving.archive_partition`` and
reports what is stored (``summary``) and the data-quality checks (``quality``) on the result.
Group, description, freshness, calendar and dependencies come from the declaration.
"""


from collections.abc import Callable
from datetime import date, datetime, timedelta

import dagster as dg
# not re-exported at the top level in 1.13; an evaluation names the materialization it checks
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from archive_platform import quality
from archive_platform.archiving import Request, archive_partition, planned_instants
from archive_platform.config import SourceSelection
from archive_platform.defs.resources import ArchiveResource, SourcesResource
from archive_platform.defs.vendor_resources import resource_key
from archive_platform.datasets import DATASETS, Dataset
from archive_platform.lake import DEFAULT_RETENTION
from archive_platform.schemas import spec_for
from archive_platform.store.errors import EmptyReplacementRefused
from archive_platform.summary import summarize_partition

BACKFILL_CHUNK = 5  # sessions per backfill run when any NYSE dataset comes from a vendor
#: sessions per backfill run when every NYSE dataset is simulated or derived: a year (252
#: sessions) in 3 runs, which the run queue (max_concurrent_runs: 3) starts together. Each run
#: costs a process start and a definitions load (23-56 s measured, against 0.3-0.6 s of work a
#: session), so small chunks spent most of a year's backfill starting processes; see
#: docs/performance.md, "Backfills through the daemon". Vendor-backed deployments keep 5:
#: their rate is held by the vendor pools, and a failed run re-fetches less.
SIM_BACKFILL_CHUNK = 84


def backfill_chunk(selection: SourceSelection, datasets=DATASETS) -> int:
    """Sessions per backfill run, one size for every NYSE asset of a deployment (a job mixing
    policies makes Dagster warn on every load)."""
    vendor = any(selection[d] not in ("sim", "derived") for d in datasets if d.calendar_name == "nyse")
    return BACKFILL_CHUNK if vendor else SIM_BACKFILL_CHUNK

# Run tags the schedules and sensors set; a run without them archives whole days.
TAG_MODE = "archive/mode"
TAG_SNAPSHOT = "archive/snapshot_time"
TAG_SINCE = "archive/since"
TAG_UNTIL = "archive/until"

CHECKS = {
    "schema": "Stored columns and types equal the canonical schema.",
    "unique_key": "No two rows share the archive type's dedup key.",
    "in_session": "Every event lies inside the partition's session window.",
    "complete": "Expected snapshots / bars / symbols for the session are all present.",
    "values": "The dataset's value rules: hard invariants (refused by the store) and soft "
    "anomalies such as a crossed quote (stored, counted here).",
}
#: checks of options that must pass before gex is derived from it (completeness does not block:
#: one missing symbol must not stop gamma exposure for the other 55)
BLOCKING = {"schema", "unique_key", "in_session", "values"}

def _parse_ts(value: str | None, tag: str) -> datetime | None:
    if not value:
        return None
    ts = datetime.fromisoformat(value)
    if ts.tzinfo is None:
        raise ValueError(f"run tag {tag}={value!r} needs a UTC offset")
    return ts


def request_from_tags(day: date, tags: dict[str, str],
                      market_date: Callable[[datetime], date] | None = None) -> Request:
    """The archive request a run's tags describe (no tags: the whole day).

    With ``market_date`` (the dataset's calendar), the instants the tags name must belong to
    the partition's day: a snapshot of another day, or a poll window ending on another day (a
    mistyped manual run), fails naming the tag instead of storing nothing and passing its checks.
    """
    req = Request(
        day=day,
        mode=tags.get(TAG_MODE, "day"),
        snapshot_time=_parse_ts(tags.get(TAG_SNAPSHOT), TAG_SNAPSHOT),
        since=_parse_ts(tags.get(TAG_SINCE), TAG_SINCE),
        until=_parse_ts(tags.get(TAG_UNTIL), TAG_UNTIL),
    )
    if market_date is None:
        return req
    if req.mode == "snapshot" and market_date(req.snapshot_time) != day:
        raise ValueError(f"run tag {TAG_SNAPSHOT}={tags[TAG_SNAPSHOT]!r} is an instant of "
                         f"{market_date(req.snapshot_time)}, not of partition {day}")
    if req.mode == "poll":
        if req.until is not None and market_date(req.until) != day:
            raise ValueError(f"run tag {TAG_UNTIL}={tags[TAG_UNTIL]!r} is an instant of "
                             f"{market_date(req.until)}, not of partition {day}")
        if req.since is not None and req.until is not None and req.since >= req.until:
            raise ValueError(f"run tags {TAG_SINCE}={tags[TAG_SINCE]!r} and {TAG_UNTIL}="
                             f"{tags[TAG_UNTIL]!r} make an empty poll window")
    return req


def _day_outcomes(t, table, day: date, sources: SourcesResource, now) -> dict[str, quality.CheckOutcome]:
    """Every quality check over one stored day."""
    spec = spec_for(t)
    settings = sources.settings()
    due = planned_instants(t, day, settings, now) if spec.snapshot else None
    expected = len(due) if due is not None else None
    return {
        "schema": quality.check_schema(table, spec),
        "unique_key": quality.check_unique_key(table, spec),
        "in_session": quality.check_in_window(table, spec, day),
        "complete": quality.check_completeness(
            table, spec, day, settings.symbols, snapshot_every=settings.snapshot_every,
            expected_snapshots=expected, expected_instants=due),
        "values": quality.check_values(table, spec),
    }


def _evaluations(context, key: dg.AssetKey, day: date, outcomes, blocking: set[str], first: bool):
    """One check evaluation per check for partition ``day``, tied to that day's materialization.

    Built as ``AssetCheckEvaluation``s rather than ``AssetCheckResult``s because in Dagster 1.13 a
    result takes its partition from the step's single partition key, which a run over a range of
    days does not have; an evaluation names its partition itself.
    """
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day.isoformat()]), limit=1
    ).records
    target = None
    if records:
        r = records[0]
        target = AssetCheckEvaluationTargetMaterializationData(
            run_id=r.event_log_entry.run_id, storage_id=r.storage_id, timestamp=r.timestamp)
    for name, o in outcomes.items():
        if first:  # each check's output, once per run (Dagster requires it; it carries no value)
            check_key = dg.AssetCheckKey(key, name)
            yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key))
        yield dg.AssetCheckEvaluation(
            asset_key=key, check_name=name, passed=o.passed, description=o.description,
            metadata={k: _meta_value(v) for k, v in o.metadata.items()},
            # WARN for a stored anomaly (soft value rules): reported, but a blocking check only
            # stops what is derived from the day on ERROR
            severity=dg.AssetCheckSeverity(o.severity), blocking=name in blocking,
            partition=day.isoformat(), target_materialization_data=target,
        )


def _meta_value(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else str(v)


def column_schema(spec) -> dg.TableSchema:
    """The dataset's columns with type, and unit / meaning from its declaration's ``units``."""
    return dg.TableSchema(columns=[
        dg.TableColumn(f.name, str(f.type), description=spec.units[f.name]) for f in spec.schema
    ])


def partition_metadata(s, spec) -> dict:
    """Standard Dagster metadata of one stored partition (its own figures, never a run's sums)."""
    meta = {
        "dagster/row_count": dg.MetadataValue.int(s.rows),
        "dagster/column_schema": column_schema(spec),
        # the standard size key: the UI shows it as a byte size and plots it per partition
        "dagster/size_bytes": dg.MetadataValue.int(s.bytes_on_disk),
        "compression_ratio": s.compression_ratio,
        "symbols": len(s.symbols),
        "symbol_list": ", ".join(s.symbols[:60]),
        "snapshots": s.snapshots,
        "files": s.files,
        "path": dg.MetadataValue.path(s.path),
        "preview": dg.MetadataValue.table(
            records=[dg.TableRecord(r) for r in s.preview_rows],
            schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in s.preview_columns]),
        ),
    }
    for k in ("first_event", "last_event"):
        v = getattr(s, k)
        if v is not None:
            meta[k] = dg.MetadataValue.timestamp(datetime.fromisoformat(v))
    return meta


def _partitions_note(partitions_def, calendar_name: str) -> str:
    """What the Partitions tab counts, said where the UI shows it (the asset's description)."""
    start = getattr(partitions_def, "start", None)
    since = f" from {start:%Y-%m-%d} (ARCHIVE_START_DATE)" if start is not None else ""
    return (
        f"\n\nPartitions: one per {calendar_name.upper()} day{since}. Days before the archive's first "
        "archived day show as missing until backfilled. The running session's partition (and "
        "the next session's, once the previous one has ended) exists early so intraday "
        "snapshots can be written; it is not a gap until that session has closed."
    )


def build_archive_asset(
    t, partitions_def: dg.PartitionsDefinition, selection: SourceSelection,
    datasets=DATASETS,
) -> dg.AssetsDefinition:
    """One archive asset of dataset ``t``: thin shell over ``archiving.archive_partition``."""
    spec = spec_for(t)
    t = spec
    source_name = selection[spec]
    kind = selection.store_kind(spec)
    is_vendor = source_name not in ("sim", "derived")
    key = dg.AssetKey(spec.name)
    # a dataset others derive from blocks them on its guarding checks
    blocking = any(spec.name in d.derived_from and d.derive_under_sim for d in datasets)
    blocking_checks = BLOCKING if blocking else set()
    # partitioned checks: the Partitions tab shows each day's results
    check_specs = [
        dg.AssetCheckSpec(name, asset=key, description=desc, blocking=name in blocking_checks,
                          partitions_def=partitions_def)
        for name, desc in CHECKS.items()
    ]
    derives = spec.derive_under_sim or source_name == "derived"
    inputs = spec.derived_from if derives else ()
    deps = [dg.AssetKey(n) for n in inputs]
    # Backfills run in chunks of days per run, one size for every asset of the deployment
    backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=backfill_chunk(selection, datasets))
    cron, lower = spec.freshness

    vendor_key = resource_key(source_name) if is_vendor else None

    @dg.asset(
        name=spec.name,
        required_resource_keys={"archive", "sources"} | ({vendor_key} if vendor_key else set()),
        partitions_def=partitions_def,
        group_name=spec.group,
        kinds={"parquet", source_name if source_name != "derived" else "python"},
        description=_with_grain(spec) + _partitions_note(partitions_def, spec.calendar_name),
        check_specs=check_specs,
        deps=deps,
        backfill_policy=backfill,
        pool=f"vendor_{source_name}" if is_vendor else None,
        freshness_policy=dg.FreshnessPolicy.cron(
            deadline_cron=cron, lower_bound_delta=lower, timezone=spec.calendar.timezone
        ),
        tags={"archive/source": source_name, "archive/store": kind,
              "archive/calendar": spec.calendar_name},
        metadata={"grain": spec.grain, "dedup_key": ", ".join(spec.dedup_key),
                  "source": source_name, "archive": kind, "calendar": spec.calendar_name,
                  "dagster/column_schema": column_schema(spec)},
    )
    def _archive_asset(context: dg.AssetExecutionContext):
        archive: ArchiveResource = context.resources.archive
        sources: SourcesResource = context.resources.sources
        if vendor_key is not None:
            source = getattr(context.resources, vendor_key).client()
        else:
            source = None if source_name == "derived" else sources.simulated()
        try:
            yield from _run(context, archive, sources, source)
        finally:
            if vendor_key is not None:
                source.close()

    def _run(context, archive, sources, source):
        store = archive.store(kind)
        options_store = archive.store(selection.store_kind(inputs[0])) if inputs else None
        now = sources.now()
        days = [date.fromisoformat(k) for k in context.partition_keys]
        tags = dict(context.run.tags)
        outcomes, metas, failures = {}, {}, {}
        for i, day in enumerate(days, 1):
            try:
                req = request_from_tags(day, tags, spec.calendar.market_date)
                try:
                    result = archive_partition(
                        t, req, store=store, source=source, settings=sources.settings(),
                        now=now, options_store=options_store,
                    )
                except EmptyReplacementRefused as exc:  # issue 11 item 1: say so, keep the data
                    raise dg.Failure(description=str(exc), allow_retries=False, metadata={
                        "refused": "an empty result would have replaced stored rows",
                        "partition": day.isoformat(), "stored_rows": exc.stored_rows}) from exc
            except Exception as exc:  # noqa: BLE001 - one day's failure is that day's alone
                if len(days) == 1:
                    raise
                failures[day] = exc
                context.log.error(f"[{i}/{len(days)}] {spec.name} {day} failed: {exc}")
                continue
            table = store.read_day(t, day)  # read once: metadata and checks share it
            s = summarize_partition(store, t, day, table)
            metas[day] = partition_metadata(s, spec)
            outcomes[day] = _day_outcomes(t, table, day, sources, now)
            written = getattr(result, "rows_written", "?")
            if getattr(result, "skipped", False) and written:
                # an append whose batch the day already held as sent (a retried run)
                written = f"{written} rows already stored as sent (unchanged),"
            else:
                written = f"{written} rows written,"
            context.log.info(
                f"[{i}/{len(days)}] {spec.name} {day} ({req.mode}): "
                f"{written} {s.rows} stored, {s.bytes_on_disk:,} bytes"
            )
        if failures:
            # a range run with failed days: the days it wrote are materialized (each with its
            # own figures and checks), only the failed ones end up FAILED in Dagster
            for day, meta in metas.items():
                yield dg.AssetMaterialization(asset_key=key, partition=day.isoformat(), metadata=meta)
            for day, per_check in outcomes.items():
                yield from _evaluations(context, key, day, per_check, blocking_checks, first=False)
            first_exc = next(iter(failures.values()))
            raise dg.Failure(
                description=f"{spec.name}: {len(failures)} of {len(days)} days failed (" + "; ".join(
                    f"{d}: {e}" for d, e in failures.items()) + "); the others are materialized",
                allow_retries=False,
                metadata={"failed_partitions": ", ".join(d.isoformat() for d in failures),
                          "materialized_partitions": ", ".join(d.isoformat() for d in metas)},
            ) from first_exc
        for day, meta in metas.items():
            # each partition's materialization carries its own figures (a range run too)
            context.add_asset_metadata(meta, partition_key=day.isoformat())
        yield dg.MaterializeResult()
        for i, (day, per_check) in enumerate(outcomes.items()):
            yield from _evaluations(context, key, day, per_check, blocking_checks, first=i == 0)

    return _archive_asset


def build_views_asset(kind_of: Callable[[Dataset], str], datasets=DATASETS, *,
                      retention_days: int = DEFAULT_RETENTION.days) -> dg.AssetsDefinition:
    """``kind_of``: the archive (sim or live) each dataset lives in (``Settings.dataset_kind``):
    with the crypto capture on, the UTC-day datasets are live while the NYSE ones may all be
    simulated, and both archives need their snapshots expired and their views rebuilt.
    ``retention_days``: ``Settings.lake_retention_days`` (ARCHIVE_LAKE_RETENTION_DAYS)."""
    @dg.asset(
        name="duckdb_views",
        group_name="serving",
        kinds={"duckdb"},
        deps=[dg.AssetKey(d.name) for d in datasets],
        description="Daily serving maintenance: expires lake snapshots and files older than the "
        f"retention ({retention_days} days, ARCHIVE_LAKE_RETENTION_DAYS), and rebuilds the DuckDB files of views over the plain layout "
        "(compacted days) for tools without the DuckLake extension. Analysts use "
        "archive_platform.connect() / archive-platform sql.",
    )
    def duckdb_views(context: dg.AssetExecutionContext, archive: ArchiveResource) -> dg.MaterializeResult:
        from archive_platform.views import refresh_views

        meta = {}
        for kind in sorted({kind_of(d) for d in datasets}):
            store = archive.store(kind)
            if (store.root / "_lake").is_dir():  # nothing written yet: nothing to expire
                gone = store.lake.expire(timedelta(days=retention_days))
                meta[f"{kind}_expired_files"] = len(gone)
                meta[f"{kind}_retention_days"] = retention_days
            store.close()
            path = archive.duckdb_path(kind)
            names = refresh_views(archive.root(kind), path, datasets)
            context.log.info(f"{kind}: {len(names)} views in {path}")
            meta[f"{kind}_database"] = dg.MetadataValue.path(str(path))
            meta[f"{kind}_views"] = ", ".join(names)
        return dg.MaterializeResult(metadata=meta)

    return duckdb_views


def _with_grain(spec) -> str:
    """The UI's description names the grain (one row per what), as the declaration states it."""
    if spec.grain.lower() in spec.description.lower():
        return spec.description
    return f"{spec.description} Grain: {spec.grain}."
