"""One closed UTC day of a crypto dataset, from the capture spool or the simulated venue (pure).

The daily Dagster assets (``archive_platform/defs/crypto.py``) call these and write the result
through the store. Two sources:

* ``sim``: the simulated venue (``sim_venue.day_tables``), symbols ``SIM_SYMBOLS``, books every
  ``SIM_BOOK_MS`` (1 s, coarser than the exchanges' 100 ms: coverage is judged on that cadence);
  it never drops a message, so its ``capture_gaps`` day is empty.
* ``capture``: what the capture service spooled for the day (``compact_spool``). Where the
  capture missed Binance trades (a symbol without trades, a recorded gap on its ``aggTrade``
  stream, or a hole in its consecutive aggregate trade ids), the day's public aggTrades file
  fills them in (``backfill.fetch_aggtrades_day``); captured rows win on equal keys. Order books
  have no public history: a day with no spooled books raises ``NoBookHistory``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive_platform.crypto import sim_venue
from archive_platform.crypto.backfill import BackfillError, fetch_aggtrades_day
from archive_platform.crypto.normalise import STREAMS
from archive_platform.crypto.schemas import DEDUP_KEYS, SCHEMAS, SORT_KEYS
from archive_platform.crypto.spool import compact_spool, dedup_last, spool_files
from archive_platform.crypto.symbols import CryptoSymbol
from archive_platform.sources.base import SnapshotNotReproducible, SourceError

DATASETS = ("capture_gaps", "crypto_trades", "orderbook_l2")  # gaps first: the others read them
SIM_SYMBOLS = ("BTC", "ETH")
#: the simulated venue's declared book cadence (the exchanges': 100 ms)
SIM_BOOK_MS = 1000


class NothingCaptured(SourceError):
    """The capture spool holds nothing for the day and nothing can fill it."""


class NoBookHistory(SnapshotNotReproducible):
    """Order books of a day the capture missed: no exchange publishes their history."""


@dataclass
class DayRows:
    table: pa.Table
    origin: str  # "sim", "spool", "spool + binance files", "binance files"
    notes: list[str] = field(default_factory=list)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


@lru_cache(maxsize=1)
def _sim_day(day: date, seed: int, symbols: tuple[str, ...], book_ms: int) -> tuple[pa.Table, pa.Table]:
    # trades and books come from one simulation: the assets of one run share it
    return sim_venue.day_tables(day, list(symbols), seed=seed, book_ms=book_ms)


def simulated_day(dataset: str, day: date, *, seed: int = 0, symbols: Sequence[str] = SIM_SYMBOLS,
                  book_ms: int = SIM_BOOK_MS) -> DayRows:
    if dataset == "capture_gaps":
        return DayRows(SCHEMAS[dataset].empty_table(), "sim", ["the simulated venue drops nothing"])
    trades, books = _sim_day(day, seed, tuple(symbols), book_ms)
    return DayRows(trades if dataset == "crypto_trades" else books, "sim")


def _sorted(dataset: str, table: pa.Table) -> pa.Table:
    order = pc.sort_indices(table, [(k, "ascending") for k in SORT_KEYS[dataset]])
    return table.take(order)


def distinct_count(values: np.ndarray) -> int:
    """Distinct values (sort + diff: numpy 2's hash-based ``np.unique`` measured 1.8 s on 345k
    int64 trade ids here, the sort 0.05 s)."""
    if len(values) == 0:
        return 0
    s = np.sort(values)
    return 1 + int(np.count_nonzero(np.diff(s)))


def trade_id_holes(ids: np.ndarray) -> int:
    """Aggregate trade ids missing between the first and last of a day (Binance ids are consecutive)."""
    if len(ids) == 0:
        return 0
    return int(ids.max() - ids.min() + 1 - distinct_count(ids))


def _binance_trades_missed(trades: pa.Table, gaps: pa.Table, symbol: str) -> str | None:
    """Why the day's captured trades of a Binance symbol are incomplete (None: they are not)."""
    mine = trades.filter(pc.and_(pc.equal(trades["exchange"], "binance"), pc.equal(trades["symbol"], symbol)))
    if mine.num_rows == 0:
        return "no trades captured"
    stream = STREAMS[("binance", "crypto_trades")]
    g = gaps.filter(pc.and_(pc.equal(gaps["exchange"], "binance"),
                            pc.and_(pc.equal(gaps["stream"], stream), pc.equal(gaps["symbol"], symbol))))
    if g.num_rows:
        return f"{g.num_rows} capture gaps on {stream}"
    holes = trade_id_holes(mine["trade_id"].to_numpy())
    return f"{holes} aggregate trade ids missing" if holes else None


def captured_day(dataset: str, day: date, *, root, symbols: Sequence[CryptoSymbol], data_url: str,
                 client=None) -> DayRows:
    """The day's rows of ``dataset`` from the capture spool under ``root`` (see the module doc)."""
    unreadable: list[str] = []
    table = compact_spool(root, dataset, day, unreadable)
    if table.num_rows == 0:
        table = SCHEMAS[dataset].empty_table()
    # a torn or emptied spool file loses its own rows, never the day: it is skipped and said
    skipped = [f"{len(unreadable)} unreadable spool files skipped (their rows are lost): " + "; ".join(unreadable[:5])
               ] if unreadable else []
    anything = any(spool_files(root, d, day) for d in DATASETS)
    if dataset == "orderbook_l2" and table.num_rows == 0:
        raise NoBookHistory(
            f"orderbook_l2 {day}: the capture service spooled no order books for this day (nothing "
            f"under {root}/_spool/orderbook_l2/date={day}), and order books cannot be backfilled: "
            "neither Binance nor Hyperliquid publishes past top-20 books, so the day stays missing"
        )
    if dataset == "capture_gaps":
        if not anything:
            raise NothingCaptured(f"capture_gaps {day}: the capture service spooled nothing for this "
                                  "day, so there is no record of its gaps")
        return DayRows(table, "spool", skipped)
    if dataset != "crypto_trades":
        return DayRows(table, "spool", skipped)
    gaps = compact_spool(root, "capture_gaps", day)
    gaps = gaps if gaps.num_rows else SCHEMAS["capture_gaps"].empty_table()
    notes: list[str] = list(skipped)
    filled: list[pa.Table] = []
    for sym in (s for s in symbols if s.exchange == "binance"):
        why = _binance_trades_missed(table, gaps, sym.symbol)
        if why is None and unreadable:  # the lost file may hold the day's last trades: no id hole shows it
            why = f"{len(unreadable)} unreadable spool files"
        if why is None:
            continue
        try:
            rows = fetch_aggtrades_day(sym.symbol, day, base_url=data_url, client=client)
        except BackfillError as exc:
            notes.append(f"{sym.symbol}: {why}; backfill failed: {exc}")
            continue
        notes.append(f"{sym.symbol}: {why}; {rows.num_rows} trades read from the daily aggTrades file")
        filled.append(rows)
    if not filled:
        if table.num_rows == 0:
            raise NothingCaptured(f"crypto_trades {day}: nothing captured and nothing backfilled: "
                                  + ("; ".join(notes) or "no Binance symbol is configured"))
        return DayRows(table, "spool", notes)
    origin = "spool + binance files" if table.num_rows else "binance files"
    # the backfill first, the captured rows last: on an equal key the captured row wins
    merged = dedup_last(pa.concat_tables([*filled, table]), DEDUP_KEYS[dataset])
    return DayRows(_sorted(dataset, merged), origin, notes)
