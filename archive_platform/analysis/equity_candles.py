"""The ``candles`` dataset: session candles of NYSE one-minute bars, read from and written to the
archive (pure: no Dagster; the store is reached through the ``Storage`` protocol).

One partition per NYSE session holds every configured timeframe (``TIMEFRAMES``) of every symbol
with bars that day, right-aligned and session-anchored as ``candles_from_bars`` defines them. The
previous session's last one-minute close (when stored) seeds the day, so a symbol without a trade
in the first minutes still gets its opening candles, empty, carrying that close; without it the
day's series starts at its first traded bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl
import pyarrow as pa

from archive_platform import calendar
from archive_platform.analysis.candles import TIMEFRAMES as ALL_TIMEFRAMES
from archive_platform.analysis.candles import candles_from_bars, session_ends
from archive_platform.storage import Storage

#: the timeframes the candles dataset stores for equities
TIMEFRAMES = ("5m", "15m", "1h")
EXCHANGE = "nyse"


def expected_per_day(day: date, timeframe: str) -> int:
    """Candles of one symbol in a complete session (78 five-minute ones on a full day, 42 on a
    13:00 close; the last hourly candle of a full day is the half hour 15:30-16:00)."""
    return len(session_ends(day, ALL_TIMEFRAMES[timeframe] * 1_000_000))


def _seed(store: Storage, day: date) -> pl.DataFrame | None:
    """(exchange, symbol, close): the last one-minute close of the previous stored session."""
    prev = calendar.previous_trading_day(day)
    s = calendar.session(prev)
    # the session's bars only: an extended-hours bar after the close is not the session's close
    bars = pl.from_arrow(store.read_day("stocks_1m", prev, columns=["symbol", "timestamp", "close"])).filter(
        (pl.col("timestamp") >= s.open_utc) & (pl.col("timestamp") < s.close_utc))
    if bars.height == 0:
        return None
    last = bars.sort("timestamp").group_by("symbol").agg(pl.col("close").last())
    return last.with_columns(pl.lit(EXCHANGE).alias("exchange"))


def day_candles(bars, day: date, timeframes: Sequence[str] = TIMEFRAMES, seed=None) -> pl.DataFrame:
    """Every timeframe's candles of ``day`` from its one-minute bars (``seed``: see module doc)."""
    s = calendar.session(day)
    parts = [candles_from_bars(bars, tf, exchange=EXCHANGE, start=s.open_utc, end=s.close_utc,
                               seed=seed) for tf in timeframes]
    return pl.concat(parts)


def to_rows(candles: pl.DataFrame, schema: pa.Schema, label: str) -> pa.Table:
    """Candles in the dataset's schema: ``et_offset`` at each close time, ``source``."""
    ts = pl.col("timestamp")
    local = ts.dt.convert_time_zone("America/New_York").dt.replace_time_zone(None)
    out = candles.with_columns(
        (local - ts.dt.replace_time_zone(None)).dt.total_minutes().cast(pl.Int16).alias("et_offset"),
        pl.lit(label).alias("source"),
    )
    return out.select(schema.names).to_arrow().cast(schema)


def derive_candles(store: Storage, day: date, symbols: Sequence[str] = (),
                   instants: Sequence[datetime] | None = None) -> pa.Table:
    """The ``candles`` rows of ``day`` from the stored ``stocks_1m`` (``archiving`` calls this)."""
    from archive_platform.datasets.candles import SCHEMA
    from archive_platform.regime_derive import source_label
    from archive_platform.sources.base import SourceError

    bars = store.read_day("stocks_1m", day)
    if bars.num_rows == 0:
        raise SourceError(f"no stocks_1m stored for {day}: candles are derived from it, "
                          f"so materialize stocks_1m for {day} first")
    out = day_candles(bars, day, seed=_seed(store, day))
    return to_rows(out, SCHEMA, source_label(store))


def reconcile_candles(rows, stocks_1m, day: date) -> tuple[list[str], dict]:
    """The stored candles of ``day`` against the day's one-minute bars, computed another way.

    ``check_candles`` (duplicates, OHLC order, empty candles, gaps inside a series), then each
    candle's volume and trade count against the bars matched to it by time alone: a bar ending at
    ``t`` (start + 1 minute) belongs to the first candle of its series closing at or after ``t``.
    """
    from archive_platform.analysis.checks import check_candles

    df = pl.from_arrow(rows) if not isinstance(rows, pl.DataFrame) else rows
    problems = check_candles(df, None, "nyse")
    s = calendar.session(day)
    bars = (pl.from_arrow(stocks_1m)
            .filter((pl.col("timestamp") >= s.open_utc) & (pl.col("timestamp") < s.close_utc))
            .with_columns((pl.col("timestamp") + pl.duration(minutes=1)).alias("end")))
    off = []
    for (tf,), part in df.group_by(["timeframe"], maintain_order=True):
        right = part.select("symbol", pl.col("timestamp").alias("close_time")).sort("close_time")
        matched = bars.sort("end").join_asof(right, left_on="end", right_on="close_time",
                                             by="symbol", strategy="forward", check_sortedness=False)
        sums = matched.group_by("symbol", "close_time").agg(
            pl.col("volume").sum().alias("bar_volume"), pl.col("trade_count").fill_null(0).sum().alias("bar_trades"))
        unmatched = matched.filter(pl.col("close_time").is_null()).height
        if unmatched:
            problems.append(f"{tf}: {unmatched} one-minute bars fall after the last candle")
        j = part.join(sums, left_on=["symbol", "timestamp"], right_on=["symbol", "close_time"], how="left")
        bad = j.filter((pl.col("volume") != pl.col("bar_volume").fill_null(0).cast(pl.Float64))
                       | (pl.col("trades") != pl.col("bar_trades").fill_null(0)))
        off += [f"{tf} {sym} {ts.isoformat()}: volume {v} trades {n}, bars {bv} and {bn}"
                for sym, ts, v, n, bv, bn in bad.select("symbol", "timestamp", "volume", "trades",
                                                        "bar_volume", "bar_trades").head(10).iter_rows()]
        if bad.height:
            problems.append(f"{tf}: {bad.height} candles whose volume or trades differ from their bars'")
    totals = bars.group_by("symbol").agg(pl.col("volume").sum()).sort("symbol")
    return problems, {"candles": df.height, "timeframes": sorted(df["timeframe"].unique().to_list()),
                      "bar_volume_by_symbol": dict(totals.iter_rows()), "differences": off[:10]}
