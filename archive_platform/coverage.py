"""The coverage ledger: per (dataset, day), what the archive really holds. Pure: no Dagster.

Each entry reconciles three things: what is stored on disk (the store's listing, read now), the
dataset's completeness rule (its declaration), and Dagster's status of the partition (passed
in by the Dagster layer as a plain string). States:

``complete``         files stored and the completeness rule finds nothing missing
``degraded``         files stored but something is missing; ``reason`` says what (snapshots,
                     symbols, minutes, capture gaps, poll gaps) and ``reconcilable`` whether
                     fetching the day again can fix it (not so for a capture gap: the past is
                     gone). A poll gap is not a finding of the completeness rule: it is a poll
                     window of a polled dataset (``uw_flow``) that the polls gave up on and that
                     no whole-day fetch has covered since, passed in by the Dagster layer
``empty-by-design``  a stored day with no rows that the rule accepts (no executions that day)
``missing``          nothing stored: never materialized, its file deleted on disk although
                     Dagster shows it materialized, or its run died (``LOST``)
``failed``           nothing stored and the latest attempt failed
``in-progress``      nothing stored yet and a live run is writing it

Dagster statuses accepted: ``MATERIALIZED``, ``FAILED``, ``IN_PROGRESS`` (a live run),
``LOST`` (in progress in Dagster, but its run is not alive), ``None`` (never materialized).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa

from archive_platform.datasets.base import CompletenessContext, Dataset

STATES = ("complete", "degraded", "empty-by-design", "missing", "failed", "in-progress")
#: states the recovery sensor asks for again (``degraded`` only when reconcilable)
RECOVER = ("missing", "failed")
#: what a completeness problem is about -> whether fetching the day again can fix it
REASON_KINDS = {"symbols": True, "snapshots": True, "minutes": True, "capture gaps": False,
                "poll gaps": True}
#: the reason kind of the poll windows the polls gave up on (a whole-day fetch fills them)
POLL_GAPS = "poll gaps"

LEDGER_SCHEMA = pa.schema([
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("day", pa.date32(), nullable=False),
    pa.field("state", pa.string(), nullable=False),
    pa.field("reason", pa.string()),
    pa.field("reconcilable", pa.bool_(), nullable=False),
    pa.field("rows", pa.int64(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("files", pa.int32(), nullable=False),
    pa.field("last_write", pa.timestamp("us", tz="UTC")),
    pa.field("dagster_status", pa.string()),
    pa.field("fingerprint", pa.string(), nullable=False),
    pa.field("checked_at", pa.timestamp("us", tz="UTC")),
], metadata={"description": "Coverage ledger: one row per dataset per day."})


@dataclass(frozen=True)
class Stored:
    """What the store holds for one (dataset, day), read from disk."""

    files: int
    rows: int
    bytes: int
    last_write: datetime | None
    problems: tuple[str, ...]  # the completeness rule's findings (empty: nothing missing)
    fingerprint: str = ""  # names, sizes and mtimes of the files (unchanged files: same print)


@dataclass(frozen=True)
class Entry:
    dataset: str
    day: date
    state: str
    reason: str | None
    reconcilable: bool
    rows: int = 0
    bytes: int = 0
    files: int = 0
    last_write: datetime | None = None
    dagster_status: str | None = None
    fingerprint: str = ""
    checked_at: datetime | None = None  # when the ledger looked

    @property
    def wanted_again(self) -> bool:
        """Whether the recovery sensor should request this day again."""
        return self.state in RECOVER or (self.state == "degraded" and self.reconcilable)


def reason_kind(problem: str) -> str:
    """Which of ``REASON_KINDS`` a completeness problem is about."""
    p = problem.lower()
    if "gap" in p:
        return "capture gaps"
    if "bar" in p or "minute" in p:
        return "minutes"
    if "snapshot" in p:
        return "snapshots"
    return "symbols"


def poll_gap_text(since: str, until: str) -> str:
    """How the reason names one poll window the polls gave up on (``since`` may be ``open``)."""
    return f"unfetched poll window {since} to {until}"


def classify(dataset: str, day: date, stored: Stored | None, dagster_status: str | None,
             poll_gaps: Sequence[tuple[str, str]] = ()) -> Entry:
    """The ledger entry of one (dataset, day); the files on disk win over Dagster's record.

    ``poll_gaps``: (since, until) of each poll window of the day the polls gave up on and that no
    whole-day fetch covered since (the Dagster layer reads them from its observations). A stored
    day with one is ``degraded`` (reason kind ``poll gaps``, reconcilable); a day with nothing
    stored is judged as before (it is requested again anyway)."""
    if stored is None or stored.files == 0:
        if dagster_status == "FAILED":
            state, reason = "failed", "the latest run failed and nothing is stored"
        elif dagster_status == "IN_PROGRESS":
            state, reason = "in-progress", "a live run is writing it"
        elif dagster_status == "LOST":
            state, reason = "missing", "its run died (worker gone or start timed out); nothing stored"
        elif dagster_status == "MATERIALIZED":
            state, reason = "missing", "materialized in Dagster but no file on disk"
        else:
            state, reason = "missing", "never materialized"
        return Entry(dataset, day, state, reason, False, dagster_status=dagster_status)
    base = dict(rows=stored.rows, bytes=stored.bytes, files=stored.files,
                last_write=stored.last_write, dagster_status=dagster_status,
                fingerprint=stored.fingerprint)
    found: dict[str, list[str]] = {}
    for p in stored.problems:
        found.setdefault(reason_kind(p), []).append(p)
    if poll_gaps:
        found[POLL_GAPS] = [poll_gap_text(s, u) for s, u in sorted(set(poll_gaps))]
    if found:
        kinds = sorted(found)
        reason = "; ".join(f"{k}: " + ", ".join(found[k]) for k in kinds)
        return Entry(dataset, day, "degraded", reason, all(REASON_KINDS[k] for k in kinds), **base)
    if stored.rows == 0:
        return Entry(dataset, day, "empty-by-design", "no rows, which the dataset allows", False, **base)
    return Entry(dataset, day, "complete", None, False, **base)


def fingerprint(paths: Sequence[Path]) -> str:
    """Names, sizes and modification times of a partition's files, hashed."""
    h = hashlib.sha256()
    for p in sorted(paths):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def read_stored(store, ds: Dataset, day: date, symbols: Sequence[str], *,
                snapshot_every: timedelta = timedelta(minutes=15),
                expected_snapshots: int | None = None,
                previous: Entry | None = None) -> Stored | None:
    """What ``store`` holds for ``ds`` on ``day`` (None: no file), judged by the dataset's
    completeness rule. Only the key columns are read; a day whose files are unchanged since
    ``previous`` (same fingerprint) is not read again."""
    paths = store.partition_files(ds, day)
    if not paths:
        return None
    stats = []
    for p in paths:
        try:
            stats.append(p.stat())
        except FileNotFoundError:
            # the catalog lists a file the disk no longer has (deleted by hand, a lost volume):
            # the day cannot be read, so it counts as not stored and is requested again
            return None
    fp = fingerprint(paths)
    last = max((s.st_mtime for s in stats), default=None)
    last_write = datetime.fromtimestamp(last, timezone.utc) if last is not None else None
    size = sum(s.st_size for s in stats)
    # files unchanged since a look taken after the day's window closed: the same answer
    closed = ds.calendar.event_window(day, ds.window)[1]
    if (previous is not None and previous.fingerprint == fp and previous.files
            and previous.checked_at is not None and previous.checked_at > closed):
        # a poll gap is not a finding about the files: the caller passes the current ones
        problems = () if previous.state != "degraded" else tuple(
            p.split(": ", 1)[-1] for p in (previous.reason or "").split("; ")
            if not p.startswith(f"{POLL_GAPS}: "))
        return Stored(previous.files, previous.rows, size, last_write, problems, fp)
    # completeness rules judge a day by its keys (symbol, instants, and e.g. candles' timeframe)
    cols = [c for c in dict.fromkeys(("symbol", ds.partition_column, *ds.dedup_key)) if c in ds.schema.names]
    df = pl.from_arrow(store.read_day(ds, day, columns=cols))
    ctx = CompletenessContext(day=day, symbols=tuple(ds.fixed_symbols or symbols), calendar=ds.calendar,
                              snapshot_every=snapshot_every, expected_snapshots=expected_snapshots)
    problems, _ = ds.completeness(df, ctx)
    return Stored(len(paths), df.height, size, last_write, tuple(problems), fp)


def ledger_table(entries: Iterable[Entry]) -> pa.Table:
    """The entries as a table with ``LEDGER_SCHEMA`` (dataset, day order)."""
    rows = sorted((asdict(e) for e in entries), key=lambda r: (r["dataset"], r["day"]))
    return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)


def entries_from_table(table: pa.Table) -> dict[tuple[str, date], Entry]:
    """A stored ledger back as entries, by (dataset, day)."""
    out = {}
    for r in table.to_pylist():
        e = Entry(**{k: r[k] for k in Entry.__dataclass_fields__})
        out[(e.dataset, e.day)] = e
    return out


def summary(entries: Iterable[Entry]) -> dict[str, dict[str, int]]:
    """Per dataset, the number of days in each state."""
    out: dict[str, dict[str, int]] = {}
    for e in entries:
        out.setdefault(e.dataset, dict.fromkeys(STATES, 0))[e.state] += 1
    return out


def wanted_again(entries: Iterable[Entry]) -> dict[date, list[str]]:
    """Per day, the datasets the recovery sensor should request again."""
    out: dict[date, list[str]] = {}
    for e in entries:
        if e.wanted_again:
            out.setdefault(e.day, []).append(e.dataset)
    return {d: sorted(v) for d, v in sorted(out.items())}


def by_day(entries: Iterable[Entry]) -> Mapping[date, list[Entry]]:
    out: dict[date, list[Entry]] = {}
    for e in entries:
        out.setdefault(e.day, []).append(e)
    return out


def ledger_days(ds: Dataset, first: date | None, now: datetime, stored_days: Iterable[date]) -> list[date]:
    """The days the ledger covers for ``ds``: every session of its calendar from ``first``
    (the archive's first day) to the last closed market date before ``now``, plus any other day
    with files (today's partial day, say)."""
    cal = ds.calendar
    today = cal.market_date(now)
    days = set(stored_days)
    if first is not None and first < today:
        days |= set(cal.sessions(max(first, cal.first_day), today - timedelta(days=1)))
    return sorted(days)


def build_ledger(
    datasets: Sequence[Dataset],
    *,
    store_for,  # dataset -> the store holding it
    symbols: Sequence[str],
    statuses: Mapping[tuple[str, date], str | None],
    first_day: date | None,
    now: datetime,
    expected_snapshots=lambda ds, day: None,  # (dataset, day) -> snapshots due, or None
    snapshot_every: timedelta = timedelta(minutes=15),
    previous: Mapping[tuple[str, date], Entry] | None = None,
    days: Mapping[str, Sequence[date]] | None = None,
    poll_gaps: Mapping[tuple[str, date], Sequence[tuple[str, str]]] | None = None,
) -> list[Entry]:
    """Every (dataset, day) entry; ``statuses`` holds Dagster's view by (dataset name, day).
    ``days`` restricts the days per dataset (the recovery sensor's lookback). ``poll_gaps``
    holds, by (dataset name, day), the poll windows given up on that no whole-day fetch covered
    since (see ``classify``)."""
    previous = previous or {}
    poll_gaps = poll_gaps or {}
    out = []
    for ds in datasets:
        store = store_for(ds)
        stored_days = store.days(ds)
        wanted = days[ds.name] if days is not None else ledger_days(ds, first_day, now, stored_days)
        for day in wanted:
            stored = read_stored(store, ds, day, symbols, snapshot_every=snapshot_every,
                                 expected_snapshots=expected_snapshots(ds, day),
                                 previous=previous.get((ds.name, day)))
            entry = classify(ds.name, day, stored, statuses.get((ds.name, day)),
                             poll_gaps.get((ds.name, day), ()))
            out.append(replace(entry, checked_at=now))
    return out


def first_stored_day(datasets: Sequence[Dataset], store_for) -> date | None:
    """The archive's first day: the earliest day any of ``datasets`` has a file for."""
    firsts = [d[0] for d in (store_for(ds).days(ds) for ds in datasets) if d]
    return min(firsts) if firsts else None
