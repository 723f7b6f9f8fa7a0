"""A simulated 24/7 crypto venue: deterministic books and trades (vectorised numpy).

Model, per symbol and seed:

* Trades arrive as a Poisson process (``trade_rate`` per second); the aggressor side is a
  Bernoulli draw with mild persistence, sizes are log-normal in lots.
* The log mid-price is a random walk (``daily_vol``) that moves in about 30 % of 100 ms steps
  (prices stick between moves), plus permanent price impact: each trade moves it by
  ``impact`` x sign x sqrt(size in lots) (a square-root impact law), seen from the next book
  snapshot on (a book never reflects trades that have not happened yet).
* Windows are continuous in time: the walk of a window is a bridge between the levels of a
  daily series (one knot per UTC midnight, an AR(1) in log price with ``daily_vol`` shocks and
  slow reversion to ``mid0``, keyed by seed and symbol only), interpolated at the window's
  start and end. So day D+1 opens where day D closed, daily returns carry ``daily_vol``, and
  every window starts at a price that does not depend on which other windows were simulated.
* Each book snapshot (every ``book_ms``) has a spread of 1 tick most of the time (geometric
  tail), level gaps of 1 tick or more, and sizes growing with depth ((1 + k)^0.6, log-normal
  noise) with occasional walls (10x); order counts per level grow with size. Between snapshots
  each spread, gap and size keeps its value unless it changes (per 100 ms: 35 % at the touch
  down to 5 % at level 20), as a real book mostly does.

Prices are integer ticks divided by a power of ten, so every float is the nearest double of a
short decimal and formats back to it exactly (``format_price``). ``day_tables`` gives a whole
UTC day of ``crypto_trades`` and ``orderbook_l2`` (exchange and source "sim").
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache

import numpy as np
import pyarrow as pa

from archive_platform.crypto.schemas import CRYPTO_TRADES, ORDERBOOK_L2, TS

LEVELS = 20
US_PER_DAY = 86_400_000_000
_KNOT_EPOCH_DAY = date(2009, 1, 3).toordinal() - date(1970, 1, 1).toordinal()  # UTC days
_KNOT_DAYS = 45 * 366  # daily knots from 2009 to about 2054; flat outside
_LEVEL_REVERSION = 1.0 / 120.0  # pull of the daily log level toward mid0


@dataclass(frozen=True)
class Instrument:
    symbol: str
    mid0: float
    tick_decimals: int
    size_decimals: int
    lot_base: int  # typical top-level size in lots
    trade_rate: float  # trades per second
    daily_vol: float = 0.03
    impact: float = 2e-6


_KNOWN = {"BTC": (65_000.0, 1, 3, 400, 4.0), "ETH": (3_500.0, 2, 3, 2_000, 3.0), "SOL": (150.0, 2, 2, 3_000, 2.0)}


def instrument(symbol: str) -> Instrument:
    """Parameters for a symbol: Binance ``BTCUSDT`` and Hyperliquid ``BTC`` share the base's."""
    base = symbol.upper()
    for quote in ("USDT", "USDC"):
        if base.endswith(quote) and len(base) > len(quote):
            base = base[: -len(quote)]
    if base in _KNOWN:
        mid, td, sd, lot, rate = _KNOWN[base]
    else:
        h = zlib.crc32(base.encode())
        mid, td, sd, lot, rate = 1.0 + h % 500, 3, 1, 500 + h % 2000, 1.0 + (h % 5) / 2
    return Instrument(symbol, mid, td, sd, lot, rate)


@dataclass
class SimWindow:
    """Integer-tick arrays of one symbol over [start_us, end_us)."""

    inst: Instrument
    trade_time: np.ndarray  # int64 us
    trade_ticks: np.ndarray  # int64
    trade_lots: np.ndarray  # int64 > 0
    trade_buy: np.ndarray  # bool: aggressor bought
    book_time: np.ndarray  # int64 us
    bid_ticks: np.ndarray  # (n, LEVELS) int64, best first
    ask_ticks: np.ndarray
    bid_lots: np.ndarray
    ask_lots: np.ndarray
    bid_n: np.ndarray  # (n, LEVELS) int32
    ask_n: np.ndarray
    book_us: int = 0  # snapshot spacing (0: unknown)

    def price(self, ticks: np.ndarray) -> np.ndarray:
        return ticks / 10.0 ** self.inst.tick_decimals

    def size(self, lots: np.ndarray) -> np.ndarray:
        return lots / 10.0 ** self.inst.size_decimals


def format_price(ticks: int, decimals: int) -> str:
    """The decimal string of an integer tick count: 650001, 1 -> '65000.1'."""
    sign, ticks = ("-", -ticks) if ticks < 0 else ("", ticks)
    if decimals == 0:
        return f"{sign}{ticks}"
    s = str(ticks).rjust(decimals + 1, "0")
    return f"{sign}{s[:-decimals]}.{s[-decimals:]}"


def _rng(seed: int, symbol: str, start_us: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(symbol.encode()), start_us // 1_000_000, salt])


@lru_cache(maxsize=64)
def _daily_levels(seed: int, symbol: str, daily_vol: float) -> np.ndarray:
    """log(mid / mid0) at each UTC midnight from the knot epoch: a slowly reverting AR(1)."""
    shocks = np.random.default_rng([seed, zlib.crc32(symbol.encode()), 0, 2]).normal(
        0.0, daily_vol, _KNOT_DAYS)
    x = np.empty(_KNOT_DAYS)
    prev = 0.0
    for i in range(_KNOT_DAYS):  # ~16k scalar steps, cached per (seed, symbol)
        x[i] = prev
        prev = (1.0 - _LEVEL_REVERSION) * prev + shocks[i]
    return x


def level_at(seed: int, inst: Instrument, t_us: np.ndarray) -> np.ndarray:
    """The daily level (log(mid / mid0)) at instants: linear between UTC-midnight knots."""
    x = _daily_levels(seed, inst.symbol, inst.daily_vol)
    pos = (np.asarray(t_us, dtype=np.int64) - _KNOT_EPOCH_DAY * US_PER_DAY) / US_PER_DAY
    return np.interp(pos, np.arange(_KNOT_DAYS, dtype=float), x)


def _persistent(r: np.random.Generator, n: int, p100: np.ndarray, scale: float, draw) -> np.ndarray:
    """(n, len(p100)) values that change with probability p per snapshot (p100 at 100 ms,
    scaled to the cadence) and otherwise repeat: a vectorised forward fill of fresh draws."""
    p = 1.0 - (1.0 - p100) ** scale
    cols = len(p100)
    change = r.random((n, cols)) < p
    change[0] = True
    idx = np.where(change, np.arange(n)[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(draw((n, cols)), idx, axis=0)


def simulate(symbol: str, start_us: int, end_us: int, *, seed: int = 0, book_ms: int = 1000) -> SimWindow:
    """Books every ``book_ms`` and Poisson trades for [start_us, end_us); deterministic by seed."""
    inst = instrument(symbol)
    step = book_ms * 1000
    book_time = np.arange(start_us, end_us, step, dtype=np.int64)
    n = len(book_time)
    r = _rng(seed, symbol, start_us, 1)
    # trades: Poisson counts per book interval, uniform times inside it
    counts = r.poisson(inst.trade_rate * book_ms / 1000.0, n)
    interval = np.repeat(np.arange(n), counts)
    trade_time = np.sort(book_time[interval] + r.integers(0, step, len(interval)))
    persist = r.random(len(interval)) < 0.3
    buy = r.random(len(interval)) < 0.5
    for _ in range(2):  # mild persistence of the aggressor side
        buy[1:] = np.where(persist[1:], buy[:-1], buy[1:])
    lots = np.maximum(1, np.round(r.lognormal(np.log(inst.lot_base / 20), 1.0, len(interval)))).astype(np.int64)
    signed = np.where(buy, 1.0, -1.0) * np.sqrt(lots)
    impact_per_interval = np.bincount(interval, weights=signed, minlength=n) * inst.impact
    sigma = inst.daily_vol * np.sqrt(book_ms / 1000.0 / 86_400.0)
    # the mid sticks: it moves in ~30 % of 100 ms steps, by jumps carrying the same variance
    q = 1.0 - 0.7 ** (book_ms / 100.0)
    moves = np.where(r.random(n) < q, r.normal(0.0, sigma / np.sqrt(q), n), 0.0)
    # walk[i]: moves and impact of the intervals before book i (trades of interval i execute at
    # book i's touch and show from book i + 1 on); walk[n] is the window's end
    walk = np.concatenate([[0.0], np.cumsum(moves + impact_per_interval)])
    frac = (book_time - start_us) / float(max(end_us - start_us, 1))
    # a bridge between the daily levels at the window's ends: windows join up continuously
    log_mid = np.log(inst.mid0) + level_at(seed, inst, book_time) + walk[:n] - frac * walk[n]
    tick = 10.0 ** -inst.tick_decimals
    mid_ticks = np.exp(log_mid) / tick
    # books persist between snapshots: each quantity changes with a per-snapshot probability
    # (busier near the touch), otherwise it keeps its last value, as real 100 ms books do
    scale = book_ms / 100.0
    spread = _persistent(r, n, np.array([0.2]), scale, lambda sh: r.geometric(0.7, sh))[:, 0].astype(np.int64)
    bid0 = np.floor(mid_ticks - spread / 2.0).astype(np.int64)
    ask0 = bid0 + spread
    p_gap = np.full(LEVELS, 0.05)
    gaps_b = _persistent(r, n, p_gap, scale, lambda sh: r.geometric(0.6, sh)).astype(np.int64)
    gaps_a = _persistent(r, n, p_gap, scale, lambda sh: r.geometric(0.6, sh)).astype(np.int64)
    gaps_b[:, 0] = 0
    gaps_a[:, 0] = 0
    bid_ticks = bid0[:, None] - np.cumsum(gaps_b, axis=1)
    ask_ticks = ask0[:, None] + np.cumsum(gaps_a, axis=1)
    shape = (1.0 + np.arange(LEVELS)) ** 0.6 * inst.lot_base
    p_size = np.linspace(0.35, 0.05, LEVELS)

    def sizes() -> np.ndarray:
        noise = _persistent(r, n, p_size, scale, lambda sh: r.lognormal(0.0, 0.5, sh)
                            * np.where(r.random(sh) < 0.02, 10.0, 1.0))  # occasional walls
        return np.maximum(1, np.round(shape * noise)).astype(np.int64)

    bid_lots, ask_lots = sizes(), sizes()
    bid_n = (1 + bid_lots * 2 // inst.lot_base).astype(np.int32)
    ask_n = (1 + ask_lots * 2 // inst.lot_base).astype(np.int32)
    # trades execute at the touch of the snapshot they fall in
    at = np.searchsorted(book_time, trade_time, side="right") - 1
    trade_ticks = np.where(buy, ask0[at], bid0[at])
    return SimWindow(inst, trade_time, trade_ticks, lots, buy, book_time, bid_ticks, ask_ticks, bid_lots, ask_lots,
                     bid_n, ask_n, step)


def _list(flat: np.ndarray, n: int, typ: pa.DataType) -> pa.Array:
    offsets = pa.array(np.arange(0, n * LEVELS + 1, LEVELS, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(flat.reshape(-1), typ))


def window_tables(w: SimWindow, *, exchange: str = "sim", source: str = "sim",
                  symbol: str | None = None) -> tuple[pa.Table, pa.Table]:
    """(crypto_trades, orderbook_l2) tables of one simulated window; receive_time = event_time."""
    sym = symbol or w.inst.symbol
    nt, nb = len(w.trade_time), len(w.book_time)
    tt = pa.array(w.trade_time, TS)
    first_id = int(w.book_time[0]) // 1000 if nb else 0  # ids: window start in ms + sequence
    trades = pa.table({
        "exchange": pa.array([exchange] * nt, pa.string()), "symbol": pa.array([sym] * nt, pa.string()),
        "trade_id": pa.array(np.arange(nt, dtype=np.int64) + first_id, pa.int64()),
        "event_time": tt, "price": pa.array(w.price(w.trade_ticks)), "size": pa.array(w.size(w.trade_lots)),
        "side": pa.array(np.where(w.trade_buy, "buy", "sell")), "receive_time": tt,
        "source": pa.array([source] * nt, pa.string()),
    }, schema=CRYPTO_TRADES)
    bt = pa.array(w.book_time, TS)
    ids = w.book_time // 1000  # one id per ms: unique and increasing
    books = pa.table({
        "exchange": pa.array([exchange] * nb, pa.string()), "symbol": pa.array([sym] * nb, pa.string()),
        "event_time": bt, "receive_time": bt, "update_id": pa.array(ids, pa.int64()),
        # the previous window's last id precedes the first one: ids chain across days
        "prev_update_id": pa.array(np.concatenate([ids[:1] - max(1, w.book_us // 1000), ids[:-1]]),
                                   pa.int64()),
        "bid_px": _list(w.price(w.bid_ticks), nb, pa.float64()), "bid_sz": _list(w.size(w.bid_lots), nb, pa.float64()),
        "ask_px": _list(w.price(w.ask_ticks), nb, pa.float64()), "ask_sz": _list(w.size(w.ask_lots), nb, pa.float64()),
        "bid_n": _list(w.bid_n, nb, pa.int32()), "ask_n": _list(w.ask_n, nb, pa.int32()),
        "source": pa.array([source] * nb, pa.string()),
    }, schema=ORDERBOOK_L2)
    return trades, books


def day_tables(day: date, symbols: list[str] | tuple[str, ...], *, seed: int = 0,
               book_ms: int = 1000) -> tuple[pa.Table, pa.Table]:
    """A whole UTC day of (crypto_trades, orderbook_l2) for ``symbols`` (exchange "sim").

    Books every ``book_ms`` (1 s by default for the demo; 100 for the exchanges' cadence).
    """
    start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1_000_000
    parts = [window_tables(simulate(s, start, start + US_PER_DAY, seed=seed, book_ms=book_ms)) for s in symbols]
    return pa.concat_tables([p[0] for p in parts]), pa.concat_tables([p[1] for p in parts])
