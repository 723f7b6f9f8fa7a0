"""What a dataset declaration holds, and the helpers declarations share (pure: no Dagster).

A dataset is one module in this package exporting ``DATASET``: a frozen ``Dataset`` naming its
schema, dedup key, grain, calendar, partition grain, intraday cadence, event window, sources,
value rules, completeness rule, group, freshness, description and data dictionary. The store,
the checks, the views, the assets, the jobs, the schedules and the simulated market read the
declaration; nothing else switches on a dataset's name. See docs/adding-a-dataset.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl
import pyarrow as pa

from archive_platform.calendars import Calendar, get_calendar

TS = pa.timestamp("us", tz="UTC")

#: intraday cadences: how a partition fills during its day
#:   "grid"   one snapshot per instant of the calendar's snapshot grid (every N minutes)
#:   "times"  snapshots at configured wall-clock times (ARCHIVE_IV_RANK_TIMES)
#:   "poll"   polled continuously while the market is open, appended (flow alerts)
#:   "none"   fetched once for the whole partition after its window ends
CADENCES = ("grid", "times", "poll", "none")
SIM = "sim"
DERIVED = "derived"


def tail(*, et_offset: bool = True) -> list[pa.Field]:
    """The columns every dataset ends with: ``et_offset`` (US datasets only) and ``source``."""
    out = [pa.field("et_offset", pa.int16(), nullable=False)] if et_offset else []
    return out + [pa.field("source", pa.string(), nullable=False)]


def make_schema(fields: list[pa.Field], description: str, *, et_offset: bool = True) -> pa.Schema:
    return pa.schema(fields + tail(et_offset=et_offset), metadata={"description": description})


@dataclass(frozen=True)
class Rule:
    """A named row predicate (True = the row is fine) about ``column``.

    ``hard`` rules are invariants: a batch with one violating row is refused by the store, with
    the column and the first bad row named. Soft rules are anomalies a real market produces (a
    crossed quote): stored, and counted by the ``values`` check.
    """

    name: str
    column: str
    expr: pl.Expr
    hard: bool = False


@dataclass(frozen=True)
class CompletenessContext:
    """What a completeness rule may know beyond the rows."""

    day: date
    symbols: Sequence[str]
    calendar: Calendar
    snapshot_every: timedelta = timedelta(minutes=15)
    expected_snapshots: int | None = None  # snapshots due so far (None: a whole day's)


#: (rows, context) -> (problems, metadata); no problems = complete
Completeness = Callable[[pl.DataFrame, CompletenessContext], tuple[list[str], dict]]


def no_expected_count(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
    """Event datasets with no expected count: complete when they hold what the source had."""
    return [], {"note": "no expected count"}


@dataclass(frozen=True)
class Dataset:
    """The declaration of one dataset (one archive type)."""

    name: str
    schema: pa.Schema
    dedup_key: tuple[str, ...]
    sort_key: tuple[str, ...]
    grain: str  # what one row is: the sentence the UI shows
    description: str
    units: Mapping[str, str]  # data dictionary: column -> unit and meaning
    group: str
    sources: tuple[str, ...]  # allowed sources, the default first
    backfill_sources: frozenset[str]  # which of them can fetch a past partition again
    calendar_name: str = "nyse"
    #: Which instants of a partition the events may fall in (see calendars): "session",
    #: "extended" (04:00-20:00 ET), "day" (the partition's whole day)
    window: str = "session"
    cadence: str = "none"
    rules: tuple[Rule, ...] = ()
    completeness: Completeness = no_expected_count
    #: (deadline cron, lower bound) in the calendar's time zone: written by then every session
    freshness: tuple[str, timedelta] = ("30 21 * * 1-5", timedelta(hours=12))
    directory: str = ""  # folder under the archive root (default: the name)
    file_stem: str = ""  # file name stem (default: the name)
    #: datasets this one is computed from when its source is "derived" (or always, see gex)
    derived_from: tuple[str, ...] = ()
    #: the simulated market's rows for this dataset when ``SimulatedMarket`` has no
    #: ``fetch_<name>`` method: (market, day, symbols, instants, since, until) -> table
    simulate: Callable[..., pa.Table] | None = None
    #: how rows are computed from other datasets: (input_store, day, symbols, instants) -> table
    derive: Callable[..., pa.Table] | None = None
    #: the simulated source also derives rather than simulates (gex always matches its options)
    derive_under_sim: bool = False
    #: whether an empty partition is a valid answer for a day (e.g. no fills on a day the account
    #: did not trade). None: never, so an empty result is refused over stored rows
    empty_valid: Callable[[date], bool] | None = None
    #: the symbol universe is fixed by the dataset (e.g. ("VIX",)); empty = the configured one
    fixed_symbols: tuple[str, ...] = ()
    #: extra ``pyarrow.parquet.write_table`` options for this dataset's files (encodings,
    #: compression level), chosen by measurement; None: the store's defaults (zstd)
    parquet_options: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        if self.cadence not in CADENCES:
            raise ValueError(f"{self.name}: cadence {self.cadence!r} not in {CADENCES}")
        if not self.directory:
            object.__setattr__(self, "directory", self.name)
        if not self.file_stem:
            object.__setattr__(self, "file_stem", self.name)
        for col in (*self.dedup_key, *self.sort_key, *self.units):
            if col not in self.schema.names:
                raise ValueError(f"{self.name}: {col!r} is not a column of its schema")
        missing = [c for c in self.schema.names if c not in self.units]
        if missing:
            raise ValueError(f"{self.name}: the data dictionary lacks {missing}")
        if not self.backfill_sources <= set(self.sources):
            raise ValueError(f"{self.name}: backfill sources must be among {self.sources}")

    # -- derived properties ----------------------------------------------------------------
    @property
    def type(self):
        """The ``ArchiveType`` member of a registered dataset, else the plain name."""
        from archive_platform.schemas import ArchiveType

        try:
            return ArchiveType(self.name)
        except ValueError:
            return self.name

    @property
    def calendar(self) -> Calendar:
        return get_calendar(self.calendar_name)

    @property
    def snapshot(self) -> bool:
        """Rows carry ``snapshot_time`` and arrive in intraday batches."""
        return "snapshot_time" in self.schema.names

    @property
    def incremental(self) -> bool:
        """Filled during the day by intraday appends (snapshots or polls)."""
        return self.cadence != "none"

    @property
    def partition_column(self) -> str:
        """The column whose market date is the row's partition (snapshot time for snapshots)."""
        return "snapshot_time" if self.snapshot else "timestamp"

    def empty_ok(self, day: date) -> bool:
        """Whether the declaration accepts an empty partition for ``day``."""
        return self.empty_valid is not None and bool(self.empty_valid(day))

    @property
    def has_et_offset(self) -> bool:
        return "et_offset" in self.schema.names

    def empty_ok(self, day: date) -> bool:
        """Whether the declaration accepts an empty partition for ``day``."""
        return self.empty_valid is not None and bool(self.empty_valid(day))

    def all_rules(self) -> tuple[Rule, ...]:
        """Declared rules plus one hard 'finite' rule per floating-point column."""
        finite = tuple(
            Rule(f"{f.name} is finite", f.name,
                 pl.col(f.name).is_null() | pl.col(f.name).is_finite(), hard=True)
            for f in self.schema if pa.types.is_floating(f.type)
        )
        return finite + self.rules


def nonneg(col: str) -> pl.Expr:
    """``col >= 0``, nulls fine."""
    return pl.col(col).is_null() | (pl.col(col) >= 0)


def one_of(col: str, values: Sequence[str]) -> pl.Expr:
    """``col`` is one of ``values`` (nulls fine)."""
    return pl.col(col).is_null() | pl.col(col).is_in(list(values))


def symbols_present(df: pl.DataFrame, symbols: Sequence[str]) -> tuple[list[str], dict]:
    present = set(df["symbol"].unique().to_list()) if df.height else set()
    missing = sorted(set(symbols) - present)
    meta = {"symbols_expected": len(symbols), "symbols_missing": missing[:20]}
    return ([f"{len(missing)} configured symbols missing"] if missing else []), meta


def count_per_symbol(df: pl.DataFrame, want: int, what: str, count: pl.Expr) -> tuple[list[str], dict]:
    """Every symbol has exactly ``want`` of ``what`` (``count`` aggregates one group)."""
    per = df.group_by("symbol").agg(count.alias("n"))
    short = per.filter(pl.col("n") != want)
    if not short.height:
        return [], {}
    return ([f"{short.height} symbols without exactly {want} {what}"],
            {"examples": str(short.head(5).to_dicts())})


def snapshot_completeness(default_per_day: Callable[[CompletenessContext], int]) -> Completeness:
    """Every configured symbol, each with the expected number of distinct snapshots."""

    def rule(df: pl.DataFrame, ctx: CompletenessContext) -> tuple[list[str], dict]:
        problems, meta = symbols_present(df, ctx.symbols)
        want = ctx.expected_snapshots if ctx.expected_snapshots is not None else default_per_day(ctx)
        meta["expected_snapshots"] = want
        meta["snapshots"] = int(df["snapshot_time"].n_unique()) if df.height else 0
        more, extra = count_per_symbol(df, want, "snapshots", pl.col("snapshot_time").n_unique())
        meta.update(extra)
        return problems + more, meta

    return rule


def grid_count(ctx: CompletenessContext) -> int:
    """Snapshots on a whole day of the calendar's grid (27 on a full NYSE day at 15 minutes)."""
    return len(ctx.calendar.snapshot_grid(ctx.day, ctx.snapshot_every))



