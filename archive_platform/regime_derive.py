"""The derived daily datasets read from and written to the archive (pure: no Dagster).

``regime`` computes tables keyed by ``(symbol, date)``; the archive keys every row by an instant
(``timestamp``, whose market date is the partition). This module converts between the two and
holds each derived dataset's ``derive`` (``(input_store, day, symbols, instants) -> table``, the
signature ``archive_platform.archiving`` calls), reading its inputs through the ``Storage``
protocol only:

* a derived row's ``timestamp`` is the session's close (UTC): the instant the day's value is
  final; ``et_offset`` is the US/Eastern offset at that instant; ``date`` is not stored (the
  partition is the date, and the DuckDB views add it back as the ``date`` column).
* ``source`` is ``sim`` when the inputs are simulated (the sim archive only takes ``sim`` rows)
  and ``derived`` otherwise.
* ``market_regime`` of a day reads the ``HISTORY_SESSIONS`` sessions ending on it with
  ``read_range`` (60: the IV-rank window, which also covers SMA50 and the 21 closes of rv20).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl
import pyarrow as pa

from archive_platform import calendar, regime
from archive_platform.storage import Storage

HISTORY_SESSIONS = max(regime.IV_WINDOW, regime.SMA_LONG, regime.RV_WINDOW + 1)


def source_label(store: Storage) -> str:
    """``sim`` for a simulated archive, ``derived`` for a live one."""
    return "sim" if getattr(store, "kind", "live") == "sim" else "derived"


def to_dataset(table: pa.Table, schema: pa.Schema, label: str) -> pa.Table:
    """A ``regime`` table (with ``date``) as rows of the dataset ``schema`` (timestamp = close)."""
    df = pl.from_arrow(table)
    if df.height == 0:
        return schema.empty_table()
    closes = {d: calendar.session(d).close_utc for d in df["date"].unique().to_list()}
    stamp = pl.DataFrame({
        "date": list(closes), "timestamp": list(closes.values()),
        "et_offset": [calendar.et_offset_minutes(t) for t in closes.values()],
    }, schema={"date": pl.Date, "timestamp": pl.Datetime("us", "UTC"), "et_offset": pl.Int16})
    df = df.join(stamp, on="date", how="left").with_columns(pl.lit(label).alias("source"))
    return df.select(schema.names).to_arrow().cast(schema)


def with_date(table: pa.Table) -> pl.DataFrame:
    """Stored derived rows with their NYSE session ``date`` (from timestamp + et_offset)."""
    df = pl.from_arrow(table)
    naive = pl.col("timestamp").dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return df.with_columns((naive + pl.duration(minutes=pl.col("et_offset"))).dt.date().alias("date"))


def history_start(day: date, sessions: int = HISTORY_SESSIONS) -> date:
    """The first of the ``sessions`` NYSE sessions ending on ``day``."""
    return calendar.add_trading_days(day, -(sessions - 1))


def _read(store: Storage, name: str, day: date, what: str, columns: list[str] | None = None) -> pa.Table:
    """The stored ``name`` rows of ``day``; an error naming the input when there are none."""
    from archive_platform.sources.base import SourceError

    table = store.read_day(name, day, columns=columns)
    if table.num_rows == 0:
        raise SourceError(f"no {name} stored for {day}: {what} is derived from it, "
                          f"so materialize {name} for {day} first")
    return table


def derive_daily_bars(store: Storage, day: date, symbols: Sequence[str] = (),
                      instants: Sequence[datetime] | None = None) -> pa.Table:
    from archive_platform.datasets.daily_bars import SCHEMA

    return to_dataset(regime.daily_bars(_read(store, "stocks_1m", day, "daily_bars")), SCHEMA, source_label(store))


def derive_daily_iv(store: Storage, day: date, symbols: Sequence[str] = (),
                    instants: Sequence[datetime] | None = None) -> pa.Table:
    from archive_platform.datasets.daily_iv import SCHEMA

    cols = ["snapshot_time", "symbol", "expiry", "strike", "iv", "underlying_price", "et_offset"]
    opts = _read(store, "options", day, "daily_iv", cols)
    return to_dataset(regime.daily_iv(opts), SCHEMA, source_label(store))


def regime_inputs(store: Storage, day: date) -> dict[str, pl.DataFrame]:
    """daily_bars, daily_iv (with ``date``) and vix_daily of the history window ending on ``day``."""
    start = history_start(day)
    bars = with_date(store.read_range("daily_bars", start, day)).filter(pl.col("date") <= day)
    ivs = with_date(store.read_range("daily_iv", start, day)).filter(pl.col("date") <= day)
    vix = pl.from_arrow(regime.vix_daily(store.read_day("vix", day)))
    return {"daily_bars": bars, "daily_iv": ivs, "vix_daily": vix}


def derive_market_regime(store: Storage, day: date, symbols: Sequence[str] = (),
                         instants: Sequence[datetime] | None = None) -> pa.Table:
    from archive_platform.datasets.market_regime import SCHEMA

    inp = regime_inputs(store, day)
    if inp["daily_bars"].filter(pl.col("date") == day).height == 0 and \
            inp["daily_iv"].filter(pl.col("date") == day).height == 0:
        raise ValueError(
            f"market_regime {day}: no daily_bars or daily_iv stored for {day}; "
            "materialize daily_bars and daily_iv for the day first"
        )
    out = pl.from_arrow(regime.market_regime(inp["daily_bars"].to_arrow(), inp["daily_iv"].to_arrow(),
                                             inp["vix_daily"].to_arrow()))
    return to_dataset(out.filter(pl.col("date") == day).to_arrow(), SCHEMA, source_label(store))
