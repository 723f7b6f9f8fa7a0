"""Checks of the crypto derived datasets (pure: no Dagster): the completeness of a stored day,
and ``matches_inputs``, which recomputes each day from the stored inputs another way.

Every function returns ``(problems, metadata)``; no problems means the check passes.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import polars as pl

from archive_platform.analysis.candles import TIMEFRAMES
from archive_platform.analysis.crypto_days import SERIES, bounds

US = 1_000_000
MAX_LISTED = 10


def _frame(rows) -> pl.DataFrame:
    return rows if isinstance(rows, pl.DataFrame) else pl.from_arrow(rows)


def _examples(df: pl.DataFrame) -> list[str]:
    return [str(r) for r in df.head(MAX_LISTED).to_dicts()]


# -- completeness ----------------------------------------------------------------------------
def features_grid_problems(rows, day: date) -> tuple[list[str], dict]:
    """Every series has each second of [D 00:00:00, D 23:59:59] exactly once (86,400 rows)."""
    df = _frame(rows)
    lo, hi = bounds(day)
    if df.height == 0:
        return ["no rows"], {"series": 0}
    per = df.group_by(SERIES).agg(pl.len().alias("rows"), pl.col("timestamp").n_unique().alias("seconds"),
                                  pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last"),
                                  (pl.col("timestamp").dt.epoch("us") % US != 0).sum().alias("off_grid"))
    want = int((hi - lo).total_seconds())
    bad = per.filter((pl.col("rows") != want) | (pl.col("seconds") != want) | (pl.col("first") != lo)
                     | (pl.col("last") != hi - timedelta(seconds=1)) | (pl.col("off_grid") > 0))
    meta = {"series": per.height, "seconds_per_series": want,
            "rows_without_book": int(df["mid"].is_null().sum()) if "mid" in df.columns else None}
    if bad.height:
        meta["examples"] = _examples(bad)
        return [f"{bad.height} series without exactly one row per second of {day}"], meta
    return [], meta


def candle_grid_problems(rows, day: date) -> tuple[list[str], dict]:
    """Per series and timeframe: aligned closes without a hole, up to the day's last close, from
    the day's first close or else from a non-empty candle (no price was known before it)."""
    df = _frame(rows)
    lo, hi = bounds(day)
    if df.height == 0:
        return ["no rows"], {"series": 0}
    tf_us = pl.col("timeframe").replace_strict({k: v * US for k, v in TIMEFRAMES.items()}, return_dtype=pl.Int64)
    t = pl.col("timestamp").dt.epoch("us")
    per = (df.sort("timestamp").group_by(*SERIES, "timeframe")
           .agg(pl.len().alias("n"), t.n_unique().alias("distinct"), t.min().alias("first"), t.max().alias("last"),
                pl.col("is_empty").first().alias("first_empty"), (t % tf_us.first() != 0).sum().alias("off_grid"),
                tf_us.first().alias("tf")))
    lo_us, hi_us = int(lo.timestamp() * US), int(hi.timestamp() * US)
    bad = per.filter((pl.col("last") != hi_us - pl.col("tf")) | (pl.col("off_grid") > 0)
                     | (pl.col("distinct") != pl.col("n"))
                     | (pl.col("n") != (pl.col("last") - pl.col("first")) // pl.col("tf") + 1)
                     | ((pl.col("first") != lo_us) & pl.col("first_empty")) | (pl.col("first") < lo_us))
    meta = {"series": df.select(SERIES).n_unique(), "candles": df.height,
            "per_timeframe": dict(df.group_by("timeframe").agg(pl.len()).sort("timeframe").iter_rows())}
    if bad.height:
        meta["examples"] = _examples(bad.drop("first", "last"))
        return [f"{bad.height} series/timeframes with a gap or not ending at the day's last close"], meta
    return [], meta


def daily_bar_problems(rows, day: date) -> tuple[list[str], dict]:
    """One bar per series, stamped at the day's UTC midnight."""
    df = _frame(rows)
    lo, _ = bounds(day)
    problems = [] if df.height else ["no rows"]
    if df.height and (df["timestamp"] != lo).any():
        problems.append(f"bars not stamped {lo.isoformat()}")
    if df.height and df.select(SERIES).is_duplicated().any():
        problems.append("more than one bar per series")
    return problems, {"series": df.height}


# -- matches_inputs --------------------------------------------------------------------------
def reconcile_crypto_candles(rows, trades, day: date) -> tuple[list[str], dict]:
    """The stored candles of ``day`` against the trades of D-1 and D (sorted as stored).

    ``check_candles`` (no duplicate, OHLC order, empty candles, no gap inside a series, each
    candle's volume and trade count equal the trades bucketed by close time), the day's grid,
    and every candle's close (empty ones included) equal to the last trade at or before its
    close time, found by an as-of join.
    """
    from archive_platform.analysis.checks import check_candles

    df, tr = _frame(rows), _frame(trades)
    problems = check_candles(df, tr, "crypto")
    grid, meta = candle_grid_problems(df, day)
    problems += grid
    last = (tr.sort(*SERIES, "event_time", "trade_id").group_by(*SERIES, "event_time", maintain_order=True)
            .agg(pl.col("price").last().alias("last_price")))  # the last of trades at one instant
    got = df.sort("timestamp").join_asof(last.sort("event_time"), left_on="timestamp", right_on="event_time",
                                          by=SERIES, strategy="backward", check_sortedness=False)
    off = got.filter(pl.col("last_price").is_null() | (pl.col("close") != pl.col("last_price")))
    if off.height:
        problems.append(f"{off.height} candles whose close is not the last trade at or before it")
        meta["close_differences"] = _examples(off.select(*SERIES, "timeframe", "timestamp", "close", "last_price"))
    return problems, meta


def _state_of(grid: pl.DataFrame, books: pl.DataFrame) -> pl.DataFrame:
    """The best level as of each grid second (the last book with event_time <= t)."""
    b = books.select(*SERIES, "event_time",
                     pl.col("bid_px").list.first().alias("b"), pl.col("ask_px").list.first().alias("a"),
                     pl.col("bid_sz").list.first().alias("qb"), pl.col("ask_sz").list.first().alias("qa"))
    return grid.sort("timestamp").join_asof(b.sort("event_time"), left_on="timestamp", right_on="event_time",
                                            by=SERIES, strategy="backward", check_sortedness=False)


def _per_second(df: pl.DataFrame, value: pl.Expr, name: str) -> pl.DataFrame:
    sec = ((pl.col("event_time").dt.epoch("us") - 1) // US + 1) * US
    return df.group_by(*SERIES, sec.cast(pl.Datetime("us", "UTC")).alias("timestamp")).agg(value.alias(name))


def reconcile_orderbook_features(rows, books, trades, day: date) -> tuple[list[str], dict]:
    """Grid completeness and every series with a book on the day present; then, on every second
    with a book, mid, spread and imbalance_1 from an as-of join of the books, and updates, volume
    and signed volume from a per-second group-by."""
    df, bk, tr = _frame(rows), _frame(books), _frame(trades)
    problems, meta = features_grid_problems(df, day)
    booked = bk.filter(pl.col("event_time") >= bounds(day)[0]).select(SERIES).unique()
    missing = booked.join(df.select(SERIES).unique(), on=SERIES, how="anti")
    if missing.height:
        problems.append(f"{missing.height} series with books on {day} have no features: "
                        + ", ".join(f"{e}:{s}" for e, s in missing.sort(SERIES).iter_rows()))
    known = df.filter(pl.col("mid").is_not_null())
    s = _state_of(known.select(*SERIES, "timestamp"), bk)
    want = s.select(*SERIES, "timestamp", ((pl.col("b") + pl.col("a")) / 2).alias("mid_x"),
                    (pl.col("a") - pl.col("b")).alias("spread_x"),
                    ((pl.col("qb") - pl.col("qa")) / (pl.col("qb") + pl.col("qa"))).alias("imbalance_1_x"))
    flows = [_per_second(bk, pl.len(), "updates_x"), _per_second(tr, pl.col("size").sum(), "volume_x"),
             _per_second(tr, pl.when(pl.col("side") == "buy").then(pl.col("size")).otherwise(-pl.col("size")).sum(),
                         "signed_volume_x")]
    j = known.join(want, on=[*SERIES, "timestamp"], how="left")
    for f in flows:
        j = j.join(f, on=[*SERIES, "timestamp"], how="left")
    diffs = {}
    flow = ("updates", "volume", "signed_volume")  # no event in a second: 0 on both sides
    for col in ("mid", "spread", "imbalance_1", *flow):
        a, b = pl.col(col).cast(pl.Float64), pl.col(f"{col}_x").cast(pl.Float64)
        if col in flow:
            a, b = a.fill_null(0.0), b.fill_null(0.0)
        bad = j.filter(~(((a - b).abs() <= 1e-9 * b.abs().clip(1.0)) | (a.is_null() & b.is_null())).fill_null(False))
        if bad.height:
            diffs[col] = bad.height
            meta.setdefault("examples_differences", _examples(bad.select(*SERIES, "timestamp", col, f"{col}_x")))
    if diffs:
        problems.append(f"features differ from a recomputation from the stored books and trades: {diffs}")
    meta["seconds_compared"] = j.height
    return problems, meta


def reconcile_crypto_daily_bars(rows, trades, day: date) -> tuple[list[str], dict]:
    """The stored bars against a DuckDB aggregation of the day's stored trades."""
    df, tr = _frame(rows), _frame(trades)
    problems, meta = daily_bar_problems(df, day)
    con = duckdb.connect()
    con.register("t", tr.to_arrow())
    want = con.sql("""
        SELECT exchange, symbol,
               first(price ORDER BY event_time, trade_id) AS open_x, max(price) AS high_x,
               min(price) AS low_x, last(price ORDER BY event_time, trade_id) AS close_x,
               sum(size) AS volume_x, sum(price * size) / nullif(sum(size), 0) AS vwap_x, count(*) AS trade_count_x
        FROM t GROUP BY exchange, symbol""").pl()
    con.close()
    j = want.join(df, on=SERIES, how="full", coalesce=True)
    diffs = {}
    for col in ("open", "high", "low", "close", "volume", "vwap", "trade_count"):
        a, b = pl.col(col).cast(pl.Float64), pl.col(f"{col}_x").cast(pl.Float64)
        # both null agree (no size traded: no vwap); one null, or any difference, does not
        same = ((a - b).abs() <= 1e-9 * b.abs().clip(1.0)).fill_null(a.is_null() & b.is_null())
        n = j.filter(~same).height
        if n:
            diffs[col] = n
    if diffs:
        problems.append(f"bars differ from the trades' aggregation: {diffs}")
        meta["examples"] = _examples(j)
    meta["trades"] = tr.height
    return problems, meta
