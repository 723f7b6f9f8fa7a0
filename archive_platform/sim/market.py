"""``SimulatedMarket``: the deterministic offline source of all six archive types."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
import pyarrow as pa

from archive_platform import calendar as cal
from archive_platform.gex import compute_gex
from archive_platform.schemas import ArchiveType
from archive_platform.sim.chain import quote
from archive_platform.sim.day import (
    day_bundle,
    day_instants,
    day_path,
    et_offsets,
    session_instants,
    to_us,
)
from archive_platform.sim.flow import simulate_alerts
from archive_platform.sim.tables import (
    choose_strings,
    concat_columns,
    repeated_strings,
    to_table,
)
from archive_platform.sim.trades import iv_rank_at, simulate_trades
from archive_platform.sim.underlying import minute_bars
from archive_platform.sim.universe import (
    DEFAULT_UNIVERSE,
    SimConfig,
    SymbolSpec,
    index_universe,
    resolve_symbols,
)
from archive_platform.sources.base import MarketSource

_ALL = frozenset(ArchiveType)


class SimulatedMarket(MarketSource):
    """A seeded, deterministic market: the same (seed, symbol, day, instant) give the same rows.

    Every type is derived from one cached bundle per symbol-day (price path, IV level, listed
    chain), so options, gex, flow, bars, IV rank and trades agree with each other. Results never
    depend on which other symbols or days were asked for, or in which order.
    """

    name = "sim"
    supported = _ALL
    backfillable = _ALL

    def __init__(
        self,
        seed: int = 0,
        *,
        universe: Sequence[SymbolSpec] | None = None,
        config: SimConfig | None = None,
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.universe = index_universe(DEFAULT_UNIVERSE if universe is None else universe)
        self.config = config or SimConfig()

    def __repr__(self) -> str:
        return f"SimulatedMarket(seed={self.seed}, symbols={len(self.universe)})"

    def symbols(self) -> list[str]:
        """The tickers this market can simulate."""
        return list(self.universe)

    def _bundles(self, day: date, symbols: Sequence[str]):
        cal.require_trading_day(day)
        specs = resolve_symbols(symbols, self.universe)
        return [day_bundle(self.seed, s, self.config, day) for s in specs]

    def fetch_stocks_1m(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """Regular-session one-minute bars: one row per symbol per minute (bar start time)."""
        cal.require_trading_day(day)
        specs = sorted(resolve_symbols(symbols, self.universe), key=lambda s: s.symbol)
        sub = self.config.substeps_per_minute
        parts = [
            minute_bars(day_path(self.seed, s, self.config, day), s, self.seed, day, sub)
            for s in specs
        ]
        cols = concat_columns(parts)
        if cols:
            n = len(cols["timestamp"])
            cols["symbol"] = repeated_strings(
                [s.symbol for s in specs], [len(p["timestamp"]) for p in parts]
            )
            cols["et_offset"] = np.full(n, et_offsets(cols["timestamp"][:1])[0], dtype=np.int16)
        # bundles in symbol order, bars in time order: already in sort-key order
        return to_table(ArchiveType.STOCKS_1M, cols, self.name, presorted=True)

    def fetch_options(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """Option chains: one row per contract per snapshot instant (inside the session)."""
        bundles = sorted(self._bundles(day, symbols), key=lambda b: b.spec.symbol)
        t = session_instants(day, snapshot_times, "options")  # sorted, unique
        parts = []
        for b in bundles:
            nc = len(b.chain.strike)
            tt = np.repeat(t, nc)
            cc = np.tile(b.chain.sort_order, len(t))
            q = quote(b.spec, self.config, b.path, b.chain, tt, cc)
            parts.append({
                "timestamp": tt,
                "snapshot_time": tt,
                "expiry": b.chain.expiry[cc],
                "strike": b.chain.strike[cc],
                "is_call": b.chain.is_call[cc],
                "bid": q["bid"], "ask": q["ask"], "last": q["last"],
                "volume": q["volume"],
                "open_interest": b.chain.open_interest[cc],
                "iv": q["iv"], "delta": q["delta"], "gamma": q["gamma"],
                "theta": q["theta"], "vega": q["vega"],
                "underlying_price": q["underlying_price"],
            })
        cols = concat_columns(parts)
        if cols:
            cols["symbol"] = repeated_strings(
                [b.spec.symbol for b in bundles], [len(p["timestamp"]) for p in parts]
            )
            cols["right"] = choose_strings(cols.pop("is_call"), "C", "P")
            cols["et_offset"] = et_offsets(cols["timestamp"])
        # symbols sorted, instants sorted, contracts in (expiry, strike, right) order
        return to_table(ArchiveType.OPTIONS, cols, self.name, presorted=True)

    def fetch_gex(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """Per-strike gamma exposure derived from this market's own chains (gex.compute_gex)."""
        return compute_gex(self.fetch_options(day, symbols, snapshot_times))

    def fetch_uw_flow(
        self,
        day: date,
        symbols: Sequence[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pa.Table:
        """Flow alerts with ``since < timestamp <= until``: one row per alert."""
        bundles = self._bundles(day, symbols)
        lo = to_us(since) if since is not None else None
        hi = to_us(until) if until is not None else None
        parts = []
        for b in bundles:
            cols = simulate_alerts(self.seed, b)
            keep = np.ones(len(cols["timestamp"]), dtype=bool)
            if lo is not None:
                keep &= cols["timestamp"] > lo
            if hi is not None:
                keep &= cols["timestamp"] <= hi
            cols = {k: v[keep] for k, v in cols.items()}
            cols["et_offset"] = et_offsets(cols["timestamp"])
            parts.append(cols)
        return to_table(ArchiveType.UW_FLOW, concat_columns(parts), self.name)

    def fetch_iv_rank(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """IV rank/percentile: one row per symbol per instant (any instant of the ET day)."""
        bundles = self._bundles(day, symbols)
        t = day_instants(day, snapshot_times, "iv_rank")
        parts = []
        for b in bundles:
            cols = iv_rank_at(self.seed, b, t)
            cols.update({
                "timestamp": t, "snapshot_time": t,
                "symbol": np.full(len(t), b.spec.symbol, dtype=object),
                "et_offset": et_offsets(t),
            })
            parts.append(cols)
        return to_table(ArchiveType.IV_RANK, concat_columns(parts), self.name)

    def fetch_trades(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """The simulated account's executions (see sim.trades for the rule); empty = all."""
        cal.require_trading_day(day)
        if symbols:
            wanted = [s.symbol for s in resolve_symbols(symbols, self.universe)]
        else:
            wanted = [s for s in self.config.trade_symbols if s in self.universe]
        traders = [s for s in wanted if s in self.config.trade_symbols]
        rows = [r for b in self._bundles(day, traders) for r in simulate_trades(self.seed, b)]
        if not rows:
            return to_table(ArchiveType.TRADES, {}, self.name)
        cols = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
        cols["timestamp"] = cols["timestamp"].astype(np.int64)
        cols["expiry"] = np.array([r["expiry"] for r in rows], dtype="datetime64[D]")
        for k in ("strike", "quantity", "price", "commission"):
            cols[k] = cols[k].astype(float)
        cols["et_offset"] = et_offsets(cols["timestamp"])
        return to_table(ArchiveType.TRADES, cols, self.name)
