"""The ``coverage`` asset: writes the coverage ledger under each archive root (the DuckDB views
show it as ``coverage``) and reports the archive's status as a table in its metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from archive_platform import coverage as cov
from archive_platform import status as st
from archive_platform.datasets import Dataset
from archive_platform.datasets.coverage import write_ledger
from archive_platform.defs import automation
from archive_platform.defs.recovery import LedgerContext
from archive_platform.settings import Settings

_TYPES = {"healthy": "bool", "days_stored": "int", "rows": "int", "bytes": "int",
          "last_day_rows": "int", "last_day_bytes": "int", "fresh": "bool"}


def status_table(status: dict) -> dg.TableMetadataValue:
    """The status as a Dagster table (lists joined into text)."""
    def cell(v):
        return ", ".join(v) if isinstance(v, list) else v

    records = [dg.TableRecord({k: cell(x[k]) for k in st.COLUMNS}) for x in status["datasets"]]
    schema = dg.TableSchema(columns=[dg.TableColumn(k, _TYPES.get(k, "string")) for k in st.COLUMNS])
    return dg.MetadataValue.table(records=records, schema=schema)


def ledger_status(ctx: LedgerContext, instance, now, *, previous=None):
    """(entries, status) over the whole archive."""
    entries = ctx.entries(instance, now, previous=previous)
    roots = {ds.name: ctx.settings.root(ctx.kind(ds)) for ds in ctx.datasets}
    beats = {ds.name: b for ds in ctx.datasets
             if (b := st.heartbeat_for(ds, roots[ds.name], now)) is not None}
    status = st.archive_status(ctx.datasets, entries, now, lookback=ctx.settings.recovery_lookback,
                               first=ctx.first_day(), heartbeats=beats)
    return entries, status


def build_coverage_asset(settings: Settings, datasets: Sequence[Dataset],
                         parts: Mapping[str, dg.PartitionsDefinition]) -> dg.AssetsDefinition:
    ctx = LedgerContext(settings, datasets, parts)

    @dg.asset(
        name="coverage",
        group_name="serving",
        kinds={"parquet"},
        description="The coverage ledger: per dataset and day, what is really stored (complete, "
        "degraded and why, empty by design, missing, failed, in progress), reconciled with the "
        "files on disk and Dagster's partition statuses; view `coverage`. Its metadata holds "
        "the archive's status (what `archive-platform status` prints).",
    )
    def coverage(context) -> dg.MaterializeResult:
        now = automation.utcnow()
        kinds = {ds.name: ctx.kind(ds) for ds in datasets}  # UTC-day datasets: crypto_kind
        entries, status = ledger_status(ctx, context.instance, now)  # reuses the stored ledger
        written = 0
        for kind in sorted(set(kinds.values())):
            written += len(write_ledger(settings.root(kind), [e for e in entries if kinds[e.dataset] == kind]))
        counts = {k: v for k, v in sorted(cov.summary(entries).items())}
        context.log.info(f"coverage ledger: {len(entries)} entries, {written} day files rewritten")
        return dg.MaterializeResult(metadata={
            "healthy": status["healthy"],
            "entries": len(entries),
            "files_rewritten": written,
            "states": dg.MetadataValue.json(counts),
            "status": status_table(status),
            "wanted_again": dg.MetadataValue.json(
                {str(d): v for d, v in cov.wanted_again(entries).items()}),
        })

    return coverage
