"""Data-quality checks of one stored partition: pure functions from a table to an outcome.

Each ``check_*`` takes the partition's rows (canonical schema) plus what it needs to know (the
day, the configured symbols) and returns a ``CheckOutcome``: pass/fail, a one-line description
and a small metadata dict a user reads in the UI (counts, the first offending rows). The Dagster
layer turns outcomes into ``AssetCheckResult``s; nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl
import pyarrow as pa

from archive_platform import calendar
from archive_platform.schemas import ArchiveSpec, ArchiveType

#: how many offending rows a failed check shows
EXAMPLES = 5


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


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
    """Every event lies inside the type's window of the partition's session.

    Snapshot types are judged on ``snapshot_time`` (when the archive looked), not on a vendor's
    quote time, which for an illiquid contract can be the previous session.
    """
    lo, hi = calendar.window_bounds(day, spec.window)
    col = "snapshot_time" if spec.snapshot else "timestamp"
    df = pl.from_arrow(table.select([col] + (["symbol"] if "symbol" in table.column_names else [])))
    df = df.rename({col: "timestamp"})
    bad = df.filter((pl.col("timestamp") < lo) | (pl.col("timestamp") > hi))
    n = bad.height
    return CheckOutcome(
        n == 0,
        f"all events inside {lo:%H:%M}-{hi:%H:%M} UTC of {day}" if n == 0
        else f"{n} events outside the {spec.window} window of {day}",
        {"outside_rows": n, "window_utc": f"{lo.isoformat()} .. {hi.isoformat()}",
         "examples": _examples(bad, ["timestamp", "symbol"]) if n else ""},
    )


def check_completeness(
    table: pa.Table,
    spec: ArchiveSpec,
    day: date,
    symbols: Sequence[str],
    *,
    snapshot_every: timedelta = timedelta(minutes=15),
    expected_snapshots: int | None = None,
) -> CheckOutcome:
    """The partition holds what the calendar says a complete day holds.

    * every configured symbol present (options, gex, stocks_1m, iv_rank);
    * options / gex: the session's snapshot count (27 on a full day at 15 minutes, 15 on a
      13:00 close) for every symbol;
    * stocks_1m: one bar per regular-session minute per symbol (390, or 210 on a 13:00 close);
    * iv_rank: the configured number of snapshots per symbol.
    ``expected_snapshots`` overrides the snapshot count (the Dagster layer passes the number of
    snapshots due so far, so a session in progress is judged on what it should hold by now).
    Flow alerts and executions have no expected count: they pass when the day is non-empty or
    when the source legitimately had nothing (reported, not failed).
    """
    t = spec.type
    df = pl.from_arrow(table)
    meta: dict = {"rows": df.height}
    if t in (ArchiveType.UW_FLOW, ArchiveType.TRADES):
        return CheckOutcome(True, f"{df.height} rows (no expected count for {t.value})", meta)
    present = set(df["symbol"].unique().to_list()) if df.height else set()
    missing = sorted(set(symbols) - present)
    meta["symbols_expected"] = len(symbols)
    meta["symbols_missing"] = missing[:20]
    problems: list[str] = []
    if missing:
        problems.append(f"{len(missing)} configured symbols missing")
    if t in (ArchiveType.OPTIONS, ArchiveType.GEX, ArchiveType.IV_RANK):
        if expected_snapshots is not None:
            want = expected_snapshots
        elif t is ArchiveType.IV_RANK:
            want = 2
        else:
            want = len(calendar.snapshot_times(day, snapshot_every))
        per = df.group_by("symbol").agg(pl.col("snapshot_time").n_unique().alias("n"))
        short = per.filter(pl.col("n") != want)
        meta["expected_snapshots"] = want
        meta["snapshots"] = int(df["snapshot_time"].n_unique()) if df.height else 0
        if short.height:
            problems.append(f"{short.height} symbols without exactly {want} snapshots")
            meta["examples"] = str(short.head(EXAMPLES).to_dicts())
    if t is ArchiveType.STOCKS_1M:
        want = calendar.session(day).minutes
        per = df.group_by("symbol").agg(pl.len().alias("n"))
        short = per.filter(pl.col("n") != want)
        meta["expected_bars_per_symbol"] = want
        if short.height:
            problems.append(f"{short.height} symbols without exactly {want} one-minute bars")
            meta["examples"] = str(short.head(EXAMPLES).to_dicts())
    ok = not problems
    return CheckOutcome(ok, "complete for the session" if ok else "; ".join(problems), meta)


def _value_rules(t: ArchiveType) -> dict[str, pl.Expr]:
    """Named row predicates that must hold (True = the row is fine); nulls count as fine."""
    nn = lambda c: pl.col(c).is_null() | (pl.col(c) >= 0)  # noqa: E731
    if t is ArchiveType.STOCKS_1M:
        return {
            "low <= open,close <= high": (pl.col("low") <= pl.min_horizontal("open", "close"))
            & (pl.max_horizontal("open", "close") <= pl.col("high")),
            "low > 0": pl.col("low") > 0,
            "volume >= 0": nn("volume"),
            "vwap within [low, high]": pl.col("vwap").is_null()
            | pl.col("vwap").is_between(pl.col("low") - 1e-9, pl.col("high") + 1e-9),
        }
    if t is ArchiveType.OPTIONS:
        return {
            "bid <= ask": pl.col("bid").is_null() | pl.col("ask").is_null() | (pl.col("bid") <= pl.col("ask")),
            "bid >= 0": nn("bid"),
            "volume >= 0": nn("volume"),
            "open_interest >= 0": nn("open_interest"),
            "0 < iv < 5": pl.col("iv").is_null() | pl.col("iv").is_between(0, 5, closed="none"),
            "call delta in [0,1], put delta in [-1,0]": pl.col("delta").is_null()
            | pl.when(pl.col("right") == "C").then(pl.col("delta").is_between(-1e-9, 1 + 1e-9))
            .otherwise(pl.col("delta").is_between(-1 - 1e-9, 1e-9)),
            "gamma >= 0": nn("gamma"),
            "vega >= 0": nn("vega"),
            "right is C or P": pl.col("right").is_in(["C", "P"]),
            "strike > 0": pl.col("strike") > 0,
            "underlying_price > 0": pl.col("underlying_price") > 0,
        }
    if t is ArchiveType.GEX:
        return {
            "call_gex >= 0": pl.col("call_gex") >= 0,
            "put_gex <= 0": pl.col("put_gex") <= 0,
            "net_gex = call_gex + put_gex": (
                pl.col("net_gex") - pl.col("call_gex") - pl.col("put_gex")
            ).abs() <= 1e-6 * (pl.col("call_gex").abs() + pl.col("put_gex").abs() + 1),
            "open interest >= 0": (pl.col("call_open_interest") >= 0) & (pl.col("put_open_interest") >= 0),
        }
    if t is ArchiveType.IV_RANK:
        return {
            "0 < iv < 5": pl.col("iv").is_between(0, 5, closed="none"),
            "iv_rank in [0,100]": pl.col("iv_rank").is_between(0, 100),
            "iv_percentile in [0,100]": pl.col("iv_percentile").is_null()
            | pl.col("iv_percentile").is_between(0, 100),
        }
    if t is ArchiveType.UW_FLOW:
        return {
            "premium >= 0": pl.col("premium") >= 0,
            "size > 0": pl.col("size") > 0,
            "volume >= 0": nn("volume"),
            "open_interest >= 0": nn("open_interest"),
            "option_type is CALL or PUT": pl.col("option_type").is_in(["CALL", "PUT"]),
            "strike > 0": pl.col("strike") > 0,
        }
    return {  # trades
        "quantity > 0": pl.col("quantity") > 0,
        "price >= 0": pl.col("price") >= 0,
        "side is BUY or SELL": pl.col("side").is_in(["BUY", "SELL"]),
        "commission >= 0": nn("commission"),
    }


def check_values(table: pa.Table, spec: ArchiveSpec) -> CheckOutcome:
    """Value sanity per type: OHLC ordering, non-negative volume/OI, IV/greeks in range, bid <= ask."""
    df = pl.from_arrow(table)
    failures: dict[str, int] = {}
    examples: dict[str, str] = {}
    for name, ok_expr in _value_rules(spec.type).items():
        bad = df.filter(~ok_expr.fill_null(False)) if df.height else df
        if bad.height:
            failures[name] = bad.height
            examples[name] = _examples(bad, list(spec.dedup_key)[:3] + ["symbol"])
    ok = not failures
    desc = "all value rules hold" if ok else "violated: " + ", ".join(
        f"{k} ({v} rows)" for k, v in failures.items()
    )
    return CheckOutcome(ok, desc, {"violations": failures, "examples": examples})
