"""The crypto derived datasets of one UTC day, read from and written to the archive (pure: no
Dagster; the store is reached through the ``Storage`` protocol).

Every dataset here is partitioned by the UTC date of its ``timestamp``, like its inputs, and is
right-aligned where it aggregates (a candle or a grid second holds the events of (t - width, t]).
So the first rows of day D also hold the last instants of D-1: the derivations read the tail of
the previous day's stored partition (never the next day's), and a day can be built as soon as
its inputs are stored. Definitions: docs/analysis.md (section "Crypto derived datasets").

* ``crypto_candles``: candles of every timeframe whose close lies in [D 00:00, D+1 00:00), from
  ``crypto_trades`` of D-1 and D; the last close before each day's first bucket seeds it.
* ``orderbook_features``: the 1-second grid [D 00:00:00, D 23:59:59] per (exchange, symbol) of
  the day's books, from ``orderbook_l2`` and ``crypto_trades`` of D plus the last
  ``WARMUP_S`` seconds of D-1.
* ``crypto_daily_bars``: one bar per (exchange, symbol) per UTC day from ``crypto_trades`` of D
  (``regime.daily_bars_crypto``), stamped at D 00:00 and covering [D 00:00, D+1 00:00).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone

import polars as pl
import pyarrow as pa

from archive_platform.analysis.candles import TIMEFRAMES, candles
from archive_platform.analysis.features import BOOK_COLUMNS, TRADE_COLUMNS, orderbook_features, trade_bar_stats
from archive_platform.storage import Storage

UTC = timezone.utc
CRYPTO_TIMEFRAMES = tuple(TIMEFRAMES)  # 1m, 5m, 15m, 1h, 4h, 1d
#: seconds of the previous day read before a day's features: the book state at 00:00:00 and
#: a full Kyle's-lambda window (60 s) at the first grid seconds
WARMUP_S = 120
#: VPIN volume bucket = the series' traded volume of the previous UTC day / this (50 buckets x 10)
VPIN_DIVISOR = 500
SERIES = ["exchange", "symbol"]
_TRADES = ["exchange", "symbol", "trade_id", "event_time", "price", "size", "side"]


class NoInput(RuntimeError):
    """The inputs of a derived crypto day are not stored."""


def bounds(day: date) -> tuple[datetime, datetime]:
    """[D 00:00, D+1 00:00) in UTC."""
    lo = datetime.combine(day, time(0), tzinfo=UTC)
    return lo, lo + timedelta(days=1)


def source_label(store: Storage) -> str:
    return "sim" if getattr(store, "kind", "live") == "sim" else "derived"


def _read(store: Storage, name: str, day: date, columns) -> pl.DataFrame:
    return pl.from_arrow(store.read_day(name, day, columns=list(columns)))


def to_rows(df: pl.DataFrame, schema: pa.Schema, label: str) -> pa.Table:
    if df.height == 0:
        return schema.empty_table()
    return df.with_columns(pl.lit(label).alias("source")).select(schema.names).to_arrow().cast(schema)


# -- candles ---------------------------------------------------------------------------------
def trades_window(store: Storage, day: date) -> pl.DataFrame:
    """The trades of D-1 and D, sorted by (exchange, symbol, event_time, trade_id)."""
    df = pl.concat([_read(store, "crypto_trades", d, _TRADES) for d in (day - timedelta(days=1), day)])
    return df.sort("exchange", "symbol", "event_time", "trade_id", maintain_order=True)


def day_candles(trades: pl.DataFrame, day: date,
                timeframes: Sequence[str] = CRYPTO_TIMEFRAMES) -> pl.DataFrame:
    """Candles of ``timeframes`` closing in [D 00:00, D+1 00:00) from sorted trades of D-1 and D.

    The seed of a timeframe is the last trade at or before the close of the bucket preceding
    the day's first one (D 00:00 - timeframe): a series with an earlier price starts the day at
    its first bucket, empty buckets carrying that price.
    """
    lo, hi = bounds(day)
    parts = []
    for tf in timeframes:
        edge = lo - timedelta(seconds=TIMEFRAMES[tf])
        seed = (trades.filter(pl.col("event_time") <= edge).group_by(SERIES, maintain_order=True)
                .agg(pl.col("price").last().alias("close")))
        parts.append(candles(trades, tf, start=lo - timedelta(microseconds=1),
                             end=hi - timedelta(microseconds=1), seed=seed if seed.height else None))
    return pl.concat(parts)


def derive_crypto_candles(store: Storage, day: date, symbols: Sequence[str] = (),
                          instants=None) -> pa.Table:
    from archive_platform.datasets.crypto_candles import SCHEMA

    trades = trades_window(store, day)
    if trades.height == 0:
        raise NoInput(f"no crypto_trades stored for {day} or the day before: crypto_candles are "
                      f"derived from them, so materialize crypto_trades for {day} first")
    return to_rows(day_candles(trades, day), SCHEMA, source_label(store))


# -- order-book features ---------------------------------------------------------------------
def feature_inputs(store: Storage, day: date) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(books, trades) of D with the last WARMUP_S seconds of D-1, and the previous day's volume
    and 1 s price-change deviation per series (exchange, symbol, prev_volume, prev_dp_sigma)."""
    lo, _ = bounds(day)
    prev = day - timedelta(days=1)
    warm = lo - timedelta(seconds=WARMUP_S)
    books = pl.concat([_read(store, "orderbook_l2", prev, BOOK_COLUMNS).filter(pl.col("event_time") > warm),
                       _read(store, "orderbook_l2", day, BOOK_COLUMNS)])
    prev_trades = _read(store, "crypto_trades", prev, TRADE_COLUMNS)
    trades = pl.concat([prev_trades.filter(pl.col("event_time") > warm),
                        _read(store, "crypto_trades", day, TRADE_COLUMNS)])
    volume = _series_volume(prev_trades)
    if prev_trades.height:
        volume = volume.join(trade_bar_stats(prev_trades).select(*SERIES, pl.col("dp_sigma").alias("prev_dp_sigma")),
                             on=SERIES, how="left")
    else:
        volume = volume.with_columns(pl.lit(None, pl.Float64).alias("prev_dp_sigma"))
    return books, trades, volume


def _series_volume(trades: pl.DataFrame) -> pl.DataFrame:
    """(exchange, symbol, prev_volume): each series' traded size, correctly rounded (math.fsum).

    polars' group_by sum adds floats in an order that depends on its threads, so the same stored
    day gave a bucket size that differed in the 14th digit between runs, and with it every VPIN
    value of the next day: the stored features were not reproducible. fsum's result does not
    depend on the order (about 30 ms for a day of 600,000 trades)."""
    rows = [(*key, math.fsum(part["size"].to_list()))
            for key, part in trades.partition_by(SERIES, as_dict=True, maintain_order=True).items()]
    return pl.DataFrame(rows, schema={**{c: trades.schema[c] for c in SERIES}, "prev_volume": pl.Float64},
                        orient="row")


def day_features(books: pl.DataFrame, trades: pl.DataFrame, day: date,
                 prev_volume: pl.DataFrame | None = None) -> pl.DataFrame:
    """The complete 1-second grid [D 00:00:00, D 23:59:59] of every series with a book on D.

    Seconds outside what ``orderbook_features`` can compute (before the first book known, after
    the last one) are kept with null features and ``updates`` 0, so every series has 86,400 rows.
    The VPIN bucket is the previous day's volume / VPIN_DIVISOR (the day's own without it),
    stored in ``vpin_bucket_volume``; the bulk-volume classification is scaled by the previous
    day's deviation of 1 s price changes (``prev_dp_sigma``; the day's own without it). So with a
    stored previous day, VPIN at t uses nothing after t.
    """
    lo, hi = bounds(day)
    present = books.filter(pl.col("event_time") >= lo).select(SERIES).unique().sort(SERIES)
    grid = pl.datetime_range(lo, hi - timedelta(seconds=1), "1s", time_unit="us", time_zone="UTC", eager=True)
    frames = []
    for exchange, symbol in present.iter_rows():
        mine = (pl.col("exchange") == exchange) & (pl.col("symbol") == symbol)
        bk, tr = books.filter(mine).sort("event_time"), trades.filter(mine).sort("event_time")
        bucket = _bucket_volume(tr, lo, hi, prev_volume, exchange, symbol)
        feats = orderbook_features(bk, tr if tr.height else None, vpin_bucket_volume=bucket,
                                   vpin_sigma=_prev_sigma(prev_volume, exchange, symbol))
        full = (pl.DataFrame({"timestamp": grid}).join(feats.drop(SERIES), on="timestamp", how="left")
                .with_columns(pl.col("updates").fill_null(0), pl.lit(exchange).alias("exchange"),
                              pl.lit(symbol).alias("symbol"), pl.lit(bucket, pl.Float64).alias("vpin_bucket_volume")))
        frames.append(full)
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


def _prev_sigma(prev_volume, exchange, symbol) -> float | None:
    """The previous day's 1 s price-change deviation of the series (None: not known)."""
    if prev_volume is None or "prev_dp_sigma" not in prev_volume.columns:
        return None
    hit = prev_volume.filter((pl.col("exchange") == exchange) & (pl.col("symbol") == symbol))
    value = hit["prev_dp_sigma"][0] if hit.height else None
    return float(value) if value is not None and value > 0 else None


def _bucket_volume(tr: pl.DataFrame, lo, hi, prev_volume, exchange, symbol) -> float | None:
    prev = None
    if prev_volume is not None and prev_volume.height:
        hit = prev_volume.filter((pl.col("exchange") == exchange) & (pl.col("symbol") == symbol))
        prev = float(hit["prev_volume"][0]) if hit.height else None
    if not prev:
        prev = math.fsum(tr.filter((pl.col("event_time") >= lo) & (pl.col("event_time") < hi))["size"].to_list())
    return prev / VPIN_DIVISOR if prev else None


def derive_orderbook_features(store: Storage, day: date, symbols: Sequence[str] = (),
                              instants=None) -> pa.Table:
    from archive_platform.datasets.orderbook_features import SCHEMA

    books, trades, volume = feature_inputs(store, day)
    if books.filter(pl.col("event_time") >= bounds(day)[0]).height == 0:
        raise NoInput(f"no orderbook_l2 stored for {day}: orderbook_features are derived from "
                      f"it, so materialize orderbook_l2 for {day} first")
    return to_rows(day_features(books, trades, day, volume), SCHEMA, source_label(store))


# -- daily bars ------------------------------------------------------------------------------
def day_bars(trades) -> pl.DataFrame:
    """``regime.daily_bars_crypto`` with ``timestamp`` = the UTC midnight opening the day."""
    from archive_platform.regime import daily_bars_crypto

    out = pl.from_arrow(daily_bars_crypto(trades))
    return out.with_columns(pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
                            .alias("timestamp")).drop("date")


def derive_crypto_daily_bars(store: Storage, day: date, symbols: Sequence[str] = (),
                             instants=None) -> pa.Table:
    from archive_platform.datasets.crypto_daily_bars import SCHEMA

    trades = store.read_day("crypto_trades", day, columns=_TRADES)
    if trades.num_rows == 0:
        raise NoInput(f"no crypto_trades stored for {day}: crypto_daily_bars are derived from "
                      f"them, so materialize crypto_trades for {day} first")
    return to_rows(day_bars(trades), SCHEMA, source_label(store))


#: dataset -> derive(store, day) (the Dagster layer calls these)
DERIVE = {"crypto_candles": derive_crypto_candles, "orderbook_features": derive_orderbook_features,
          "crypto_daily_bars": derive_crypto_daily_bars}
