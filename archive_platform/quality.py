"""Data-quality checks of one stored partition: pure functions from a table to an outcome.

Each ``check_*`` takes the partition's rows (canonical schema) plus what it needs to know (the
day, the configured symbols) and returns a ``CheckOutcome``: pass/fail, a one-line description
and a small metadata dict a user reads in the UI (counts, the first offending rows). The Dagster
layer turns outcomes into ``AssetCheckResult``s; nothing here imports Dagster. What a dataset's
window, completeness and value rules are comes from its declaration (``archive_platform.datasets``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import polars as pl
import pyarrow as pa

from archive_platform.datasets.base import CompletenessContext
from archive_platform.schemas import ArchiveSpec

#: how many offending rows a failed check shows
EXAMPLES = 5
#: how many missing / unexpected snapshot instants a failed completeness check lists
LISTED = 10

ERROR = "ERROR"
WARN = "WARN"


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)
    #: how bad a failure is: ERROR (the day cannot be trusted; a blocking check stops what is
    #: derived from it) or WARN (an anomaly a real market produces: stored, reported, not blocking)
    severity: str = ERROR


def _examples(df: pl.DataFrame, cols: Sequence[str]) -> str:
    keep = list(dict.fromkeys(c for c in cols if c in df.columns))  # ordered, no repeats
    return str(df.select(keep).head(EXAMPLES).to_dicts())


def check_schema(table: pa.Table, spec: ArchiveSpec) -> CheckOutcome:
    """The stored columns and types equal the canonical schema exactly (names, order, types)."""
    want = {f.name: f.type for f in spec.schema}
    got = {f.name: f.type for f in table.schema}
    missing = [n for n in want if n not in got]
    extra = [n for n in got if n not in want]
    wrong = {n: f"{got[n]} (expected {want[n]})" for n in want if n in got and got[n] != want[n]}
    ok = not (missing or extra or wrong) and table.schema.names == spec.schema.names
    desc = "schema matches the canonical schema" if ok else "schema differs from the canonical schema"
    return CheckOutcome(ok, desc, {"missing": missing, "extra": extra, "wrong_types": wrong})


def check_unique_key(table: pa.Table, spec: ArchiveSpec) -> CheckOutcome:
    """No two rows share the type's dedup key."""
    df = pl.from_arrow(table.select(list(spec.dedup_key)))
    dup = df.filter(df.is_duplicated())
    n = dup.height
    return CheckOutcome(
        n == 0,
        f"dedup key {spec.dedup_key} is unique" if n == 0 else f"{n} rows share a dedup key",
        {"duplicate_rows": n, "examples": _examples(dup, spec.dedup_key) if n else ""},
    )


def check_in_window(table: pa.Table, spec: ArchiveSpec, day: date) -> CheckOutcome:
    """Every event lies inside the dataset's window of the partition's session.

    Snapshot types are judged on ``snapshot_time`` (when the archive looked), not on a vendor's
    quote time, which for an illiquid contract can be the previous session.
    """
    lo, hi = spec.calendar.event_window(day, spec.window)
    col = spec.partition_column
    by = [col] + (["symbol"] if "symbol" in table.column_names else [])
    df = pl.from_arrow(table.select(by))
    bad = df.filter((pl.col(col) < lo) | (pl.col(col) > hi))
    n = bad.height
    # the offending instants (and symbols) with their row counts, not five copies of one row
    where = (bad.group_by(by).agg(pl.len().alias("rows")).sort(by).head(EXAMPLES)
             .with_columns(pl.col(col).dt.to_string("%Y-%m-%dT%H:%M:%S%.f%z")).to_dicts() if n else [])
    return CheckOutcome(
        n == 0,
        f"all events inside {lo:%H:%M}-{hi:%H:%M} UTC of {day}" if n == 0
        else f"{n} events outside the {spec.window} window of {day} (judged on {col})",
        {"outside_rows": n, "window_utc": f"{lo.isoformat()} .. {hi.isoformat()}",
         "column": col, "examples": str(where) if n else ""},
    )


def check_completeness(
    table: pa.Table,
    spec: ArchiveSpec,
    day: date,
    symbols: Sequence[str],
    *,
    snapshot_every: timedelta = timedelta(minutes=15),
    expected_snapshots: int | None = None,
    expected_instants: Sequence[datetime] | None = None,
) -> CheckOutcome:
    """The partition holds what the calendar says a complete day holds (the dataset's rule).

    E.g. options / gex: every configured symbol with the session's snapshot count (27 on a full
    day at 15 minutes, 15 on a 13:00 close); stocks_1m: one bar per regular-session minute per
    symbol; flow alerts and executions have no expected count (reported, not failed).
    ``expected_snapshots`` overrides the snapshot count (the Dagster layer passes the number of
    snapshots due so far, so a session in progress is judged on what it should hold by now).
    ``expected_instants`` (snapshot datasets: the instants due so far, of the grid or of the
    configured times) also requires each symbol's snapshots to be exactly those instants: a count
    that is right while an instant is missing and another is off the grid is not complete.
    """
    df = pl.from_arrow(table)
    ctx = CompletenessContext(
        day=day, symbols=tuple(spec.fixed_symbols or symbols), calendar=spec.calendar,
        snapshot_every=snapshot_every, expected_snapshots=expected_snapshots,
    )
    problems, extra = spec.completeness(df, ctx)
    meta: dict = {"rows": df.height, **extra}
    if expected_instants is not None and "snapshot_time" in df.columns and df.height:
        more, found = _instants(df, expected_instants)
        problems = [*problems, *more]
        meta.update(found)
    if "note" in meta:
        return CheckOutcome(True, f"{df.height} rows (no expected count for {spec.name})", meta)
    ok = not problems
    return CheckOutcome(ok, "complete for the session" if ok else "; ".join(problems), meta)


def _instants(df: pl.DataFrame, expected: Sequence[datetime]) -> tuple[list[str], dict]:
    """Per symbol, the snapshot instants missing from ``expected`` and those not in it."""
    want = pl.DataFrame({"snapshot_time": list(expected)},
                        schema={"snapshot_time": df.schema["snapshot_time"]})
    have = df.select("symbol", "snapshot_time").unique()
    syms = have.select("symbol").unique()
    missing = syms.join(want, how="cross").join(have, on=["symbol", "snapshot_time"], how="anti")
    off = have.join(want, on="snapshot_time", how="anti")
    problems, meta = [], {}

    def listed(x: pl.DataFrame) -> list[str]:
        x = x.sort("snapshot_time", "symbol").head(LISTED)
        return [f"{r['symbol']} {r['snapshot_time'].isoformat()}" for r in x.to_dicts()]

    if missing.height:
        problems.append(f"{missing.height} due snapshots missing")
        meta["missing_snapshots"] = listed(missing)
    if off.height:
        problems.append(f"{off.height} snapshots at instants that are not due (off the grid or the "
                        "configured times)")
        meta["unexpected_snapshots"] = listed(off)
    return problems, meta


def check_values(table: pa.Table, spec: ArchiveSpec) -> CheckOutcome:
    """The dataset's value rules: hard invariants (which the store already refuses, so a
    violation here means a file written outside it) and soft anomalies such as a crossed quote
    (stored, and counted here).

    Severity: ERROR when a hard rule is broken; WARN when only soft rules are, so that a blocking
    ``values`` check does not stop what is derived from a day over an anomaly a real market
    produces (one crossed quote among thousands must not stop the day's gamma exposure). The
    examples show the whole dedup key and every column the rule reads (bid and ask of a crossed
    quote), so a user can find the rows.
    """
    df = pl.from_arrow(table)
    failures: dict[str, int] = {}
    examples: dict[str, str] = {}
    hard: list[str] = []
    for rule in spec.all_rules():
        bad = df.filter(~rule.expr.fill_null(False)) if df.height else df
        if bad.height:
            failures[rule.name] = bad.height
            examples[rule.name] = _examples(
                bad, [*spec.dedup_key, "symbol", rule.column, *rule.expr.meta.root_names()])
            if rule.hard:
                hard.append(rule.name)
    ok = not failures
    desc = "all value rules hold" if ok else "violated: " + ", ".join(
        f"{k} ({v} rows)" for k, v in failures.items()
    )
    if not ok and not hard:
        desc += " (soft rules only: stored anomalies, a warning)"
    return CheckOutcome(ok, desc, {"violations": failures, "examples": examples,
                                   "hard_violations": hard, "rows": df.height},
                        ERROR if hard else WARN)
