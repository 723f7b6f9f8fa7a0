"""One partitioned asset per dataset declaration, its checks, and the DuckDB views asset.

Each asset body reads its partition(s) and run tags, calls ``archiving.archive_partition`` and
reports what is stored (``summary``) and the data-quality checks (``quality``) on the result.
Group, description, freshness, calendar and dependencies come from the declaration.
"""


from datetime import date, datetime

import dagster as dg

from archive_platform import quality
from archive_platform.archiving import Request, archive_partition, planned_instants
from archive_platform.config import SourceSelection
from archive_platform.defs.resources import ArchiveResource, SourcesResource
from archive_platform.defs.vendor_resources import resource_key
from archive_platform.datasets import DATASETS
from archive_platform.schemas import spec_for
from archive_platform.store.errors import EmptyReplacementRefused
from archive_platform.summary import summarize_partition

BACKFILL_CHUNK = 5  # trading days per backfill run

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


def request_from_tags(day: date, tags: dict[str, str]) -> Request:
    """The archive request a run's tags describe (no tags: the whole day)."""
    return Request(
        day=day,
        mode=tags.get(TAG_MODE, "day"),
        snapshot_time=_parse_ts(tags.get(TAG_SNAPSHOT), TAG_SNAPSHOT),
        since=_parse_ts(tags.get(TAG_SINCE), TAG_SINCE),
        until=_parse_ts(tags.get(TAG_UNTIL), TAG_UNTIL),
    )


def _check_results(t, tables: dict, sources: SourcesResource, now):
    """Run every quality check over each archived day; one result per check covering the days."""
    spec = spec_for(t)
    settings = sources.settings()
    outcomes: dict[str, list[tuple[date, quality.CheckOutcome]]] = {k: [] for k in CHECKS}
    for day, table in tables.items():
        outcomes["schema"].append((day, quality.check_schema(table, spec)))
        outcomes["unique_key"].append((day, quality.check_unique_key(table, spec)))
        outcomes["in_session"].append((day, quality.check_in_window(table, spec, day)))
        expected = None
        if spec.snapshot:
            expected = len(planned_instants(t, day, settings, now))
        outcomes["complete"].append(
            (day, quality.check_completeness(table, spec, day, settings.symbols,
                                             snapshot_every=settings.snapshot_every,
                                             expected_snapshots=expected))
        )
        outcomes["values"].append((day, quality.check_values(table, spec)))
    results = []
    for name, per_day in outcomes.items():
        failed = [(d, o) for d, o in per_day if not o.passed]
        if len(per_day) == 1:
            o = per_day[0][1]
            desc, meta = o.description, dict(o.metadata)
        else:
            desc = (f"passed on all {len(per_day)} days" if not failed
                    else f"failed on {len(failed)} of {len(per_day)} days")
            meta = {"failed_days": [str(d) for d, _ in failed]}
            if failed:
                meta["first_failure"] = f"{failed[0][0]}: {failed[0][1].description}"
        meta["partitions"] = ", ".join(str(d) for d, _ in per_day)
        results.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=not failed,
                description=desc,
                metadata={k: _meta_value(v) for k, v in meta.items()},
                severity=dg.AssetCheckSeverity.ERROR,
            )
        )
    return results


def _meta_value(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else str(v)


def _metadata(summaries) -> dict:
    if len(summaries) == 1:
        s = summaries[0]
        return {
            "rows": s.rows,
            "bytes_on_disk": s.bytes_on_disk,
            "compression_ratio": s.compression_ratio,
            "symbols": len(s.symbols),
            "symbol_list": ", ".join(s.symbols[:60]),
            "snapshots": s.snapshots,
            "first_event": s.first_event,
            "last_event": s.last_event,
            "files": s.files,
            "path": dg.MetadataValue.path(s.path),
            "preview": dg.MetadataValue.md(s.preview_markdown),
        }
    rows = sum(s.rows for s in summaries)
    disk = sum(s.bytes_on_disk for s in summaries)
    mem = sum(s.bytes_in_memory for s in summaries)
    return {
        "rows": rows,
        "bytes_on_disk": disk,
        "compression_ratio": round(mem / disk, 2) if disk else None,
        "partitions": len(summaries),
        "rows_per_day": dg.MetadataValue.json({str(s.day): s.rows for s in summaries}),
        "first_event": min((s.first_event for s in summaries if s.first_event), default=None),
        "last_event": max((s.last_event for s in summaries if s.last_event), default=None),
        "path": dg.MetadataValue.path(str(summaries[-1].path)),
        "preview": dg.MetadataValue.md(summaries[-1].preview_markdown),
    }


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
    check_specs = [
        dg.AssetCheckSpec(name, asset=key, description=desc, blocking=blocking and name in BLOCKING)
        for name, desc in CHECKS.items()
    ]
    derives = spec.derive_under_sim or source_name == "derived"
    inputs = spec.derived_from if derives else ()
    deps = [dg.AssetKey(n) for n in inputs]
    # Backfills run in chunks of days per run. One size for every asset: a job mixing policies
    # (vendor options with derived gex) would fall back to the smallest anyway, with a warning;
    # vendor rates are held by the pools, not by the chunk size.
    backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=BACKFILL_CHUNK)
    cron, lower = spec.freshness

    vendor_key = resource_key(source_name) if is_vendor else None

    @dg.asset(
        name=spec.name,
        required_resource_keys={"archive", "sources"} | ({vendor_key} if vendor_key else set()),
        partitions_def=partitions_def,
        group_name=spec.group,
        kinds={"parquet", source_name if source_name != "derived" else "python"},
        description=spec.description,
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
                  "data_dictionary": dg.MetadataValue.md(_dictionary(spec))},
    )
    def _archive_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        archive: ArchiveResource = context.resources.archive
        sources: SourcesResource = context.resources.sources
        if vendor_key is not None:
            source = getattr(context.resources, vendor_key).client()
        else:
            source = None if source_name == "derived" else sources.simulated()
        try:
            return _run(context, archive, sources, source)
        finally:
            if vendor_key is not None:
                source.close()

    def _run(context, archive, sources, source) -> dg.MaterializeResult:
        store = archive.store(kind)
        options_store = archive.store(selection.store_kind(inputs[0])) if inputs else None
        now = sources.now()
        days = [date.fromisoformat(k) for k in context.partition_keys]
        tags = dict(context.run.tags)
        summaries, stored = [], {}
        for i, day in enumerate(days, 1):
            req = request_from_tags(day, tags)
            try:
                result = archive_partition(
                    t, req, store=store, source=source, settings=sources.settings(),
                    now=now, options_store=options_store,
                )
            except EmptyReplacementRefused as exc:  # issue 11, item 1: say so, keep the data
                raise dg.Failure(description=str(exc), allow_retries=False, metadata={
                    "refused": "an empty result would have replaced stored rows",
                    "partition": day.isoformat(), "stored_rows": exc.stored_rows}) from exc
            stored[day] = store.read_day(t, day)  # read once: metadata and checks share it
            s = summarize_partition(store, t, day, stored[day])
            summaries.append(s)
            context.log.info(
                f"[{i}/{len(days)}] {spec.name} {day} ({req.mode}): "
                f"{getattr(result, 'rows_written', '?')} rows written, {s.rows} stored, "
                f"{s.bytes_on_disk:,} bytes"
            )
        return dg.MaterializeResult(
            metadata=_metadata(summaries),
            check_results=_check_results(t, stored, sources, now),
        )

    return _archive_asset


def _dictionary(spec) -> str:
    """The data dictionary as a Markdown table (column, type, unit and meaning)."""
    rows = [f"| `{f.name}` | {f.type} | {spec.units[f.name]} |" for f in spec.schema]
    return "| column | type | unit / meaning |\n|---|---|---|\n" + "\n".join(rows)


def build_views_asset(selection: SourceSelection, datasets=DATASETS) -> dg.AssetsDefinition:
    @dg.asset(
        name="duckdb_views",
        group_name="serving",
        kinds={"duckdb"},
        deps=[dg.AssetKey(d.name) for d in datasets],
        description="Daily serving maintenance: expires lake snapshots and files older than the "
        "retention (7 days), and rebuilds the DuckDB files of views over the plain layout "
        "(compacted days) for tools without the DuckLake extension. Analysts use "
        "archive_platform.connect() / archive-platform sql.",
    )
    def duckdb_views(context: dg.AssetExecutionContext, archive: ArchiveResource) -> dg.MaterializeResult:
        from archive_platform.views import refresh_views

        meta = {}
        for kind in sorted({selection.store_kind(d) for d in datasets}):
            store = archive.store(kind)
            if (store.root / "_lake").is_dir():  # nothing written yet: nothing to expire
                gone = store.lake.expire()  # retention: archive_platform.lake.DEFAULT_RETENTION
                meta[f"{kind}_expired_files"] = len(gone)
            store.close()
            path = archive.duckdb_path(kind)
            names = refresh_views(archive.root(kind), path, datasets)
            context.log.info(f"{kind}: {len(names)} views in {path}")
            meta[f"{kind}_database"] = dg.MetadataValue.path(str(path))
            meta[f"{kind}_views"] = ", ".join(names)
        return dg.MaterializeResult(metadata=meta)

    return duckdb_views
