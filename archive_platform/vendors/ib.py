"""Interactive Brokers source: live option snapshots, one-minute bars and the account's fills.

Talks to TWS / IB Gateway only through the ``IBGateway`` seam (``vendors/ib_seam.py``). The
option workflow is the IB option-snapshot collector's: qualify the underlying, ``reqSecDefOptParams``, pick the SMART
chain whose trading class is the symbol, choose expirations and strikes around the underlying
price, qualify the options (dropping IB's ``None``s), stream market data with generic ticks
100,101,104,105,106 and read ``modelGreeks``. IB has no history of option chains, so the source
is live-only for options: a past snapshot instant raises ``SnapshotNotReproducible``.

The pure ``normalise_*`` functions (``ib_normalise.py``) turn ib_async objects into canonical rows; NaN, ``None``,
IB's "unset" sentinel and negative "no quote" prices all become nulls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pybreaker

from archive_platform import calendar as cal
from archive_platform.schemas import OPTIONS_SCHEMA, STOCKS_1M_SCHEMA, TRADES_SCHEMA, ArchiveType
from archive_platform.sources.base import EmptySession, MarketSource, SnapshotNotReproducible
from archive_platform.symbols import normalise_us_ticker
from archive_platform.vendors.errors import VendorError
from archive_platform.vendors.ib_history import HistoricalBars
from archive_platform.vendors.ib_normalise import (  # noqa: F401 (re-exported)
    clean_float,
    clean_int,
    parse_ib_expiry,
    normalise_right,
    occ_symbol,
    pick_chain,
    select_expirations,
    select_strikes,
    ticker_price,
    normalise_option_ticker,
    normalise_bar,
    normalise_fill,
)
from archive_platform.vendors.ib_seam import (
    OPTION_GENERIC_TICKS,
    AsyncIBGateway,
    HistoricalPacer,
    IBErrorEvent,
    IBGateway,
)
from archive_platform.vendors.resilience import breaker_for, circuit_open_error
from archive_platform.vendors.vix import IBVix

log = logging.getLogger(__name__)
UTC = timezone.utc
VENDOR = "ib"
DEFAULT_INDEX_SYMBOLS = frozenset({"SPX", "NDX", "RUT", "VIX", "XSP", "DJX"})
#: the listing exchange IB qualifies each index on (CBOE for the rest): Nasdaq's NDX is on
#: NASDAQ and FTSE Russell's RUT on RUSSELL, not on CBOE where their options trade
INDEX_EXCHANGES = {"NDX": "NASDAQ", "RUT": "RUSSELL"}
# 2100-2199 are data-farm status messages, 10167 says "showing delayed data" and 1102 says
# "connectivity restored, data maintained" (ib_async special-cases it too): not failures
_INFO_CODES = set(range(2100, 2200)) | {10167, 1102}


class _NotOk(Exception):
    """A gateway call returned, but not usefully: a breaker failure that still hands back data."""

    def __init__(self, result: Any, errors: list[IBErrorEvent]) -> None:
        super().__init__("gateway call returned nothing usable")
        self.result, self.errors = result, errors


class IBSource(IBVix, HistoricalBars, MarketSource):
    """Options (live only), stocks_1m, vix and trades from TWS / IB Gateway via ib_async.

    Grains: options one row per contract per snapshot; stocks_1m one row per symbol per
    regular-session minute; vix one row per snapshot (``vendors/vix.py``); trades one row per
    execution of the account.
    """

    name = VENDOR
    supported = frozenset({ArchiveType.OPTIONS, ArchiveType.STOCKS_1M, ArchiveType.TRADES, ArchiveType.VIX})
    backfillable = frozenset({ArchiveType.STOCKS_1M, ArchiveType.VIX})

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7497,
        client_id: int = 1,
        *,
        gateway: IBGateway | None = None,
        market_data_type: int = 1,
        index_symbols: frozenset[str] = DEFAULT_INDEX_SYMBOLS,
        trading_classes: dict[str, str] | None = None,
        max_expirations: int = 3,
        strike_band: float = 0.05,
        max_strikes: int = 20,
        market_data_timeout: float = 11.0,
        max_market_data_lines: int = 90,
        live_tolerance: timedelta = timedelta(minutes=10),
        pacer: HistoricalPacer | None = None,
        pacing_retries: int = 3,
        pacing_backoff: float = 15.0,
        breaker: pybreaker.CircuitBreaker | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        connect_timeout: float = 10.0,
    ) -> None:
        if market_data_type not in (1, 2, 3, 4):
            raise ValueError(f"market_data_type must be 1..4, got {market_data_type}")
        self._gateway = gateway or AsyncIBGateway(host, port, client_id, connect_timeout=connect_timeout)
        self.market_data_type = market_data_type
        self.index_symbols = frozenset(index_symbols)
        self.trading_classes = dict(trading_classes or {})
        self.max_expirations, self.strike_band, self.max_strikes = max_expirations, strike_band, max_strikes
        self.market_data_timeout, self.max_lines = market_data_timeout, max_market_data_lines
        self.live_tolerance = live_tolerance
        self.pacer = pacer or HistoricalPacer(sleep=sleep)
        self.pacing_retries, self.pacing_backoff = pacing_retries, pacing_backoff
        self.breaker = breaker or breaker_for(VENDOR)
        self._clock, self._sleep = clock, sleep
        self._errors: list[IBErrorEvent] = []
        self._ready = self._listening = False

    # -- plumbing --------------------------------------------------------------------------
    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        event = IBErrorEvent(req_id, code, message, contract)
        if code in _INFO_CODES:
            log.info("ib: %s %s", code, message)
            return
        self._errors.append(event)

    def _gw(self) -> IBGateway:
        if not self._ready:
            if not self._listening:  # once, even when a first connect attempt failed
                self._gateway.add_error_handler(self._on_error)
                self._listening = True
            self._call("connect", self._gateway.connect)
            self._gateway.set_market_data_type(self.market_data_type)
            self._ready = True
        return self._gateway

    def _call(self, label: str, fn: Callable, *args, ok: Callable | None = None):
        """Run one gateway call under the breaker; return (result, errors emitted during it).

        A call whose result ``ok`` rejects (e.g. TWS answered with only error events) counts as
        a failure for the breaker but still returns, so the caller can read the errors.
        """
        start = len(self._errors)
        try:
            with self.breaker.calling():
                try:
                    result = fn(*args)
                except VendorError:
                    raise
                except Exception as exc:  # ib_async: ConnectionError, TimeoutError, asyncio errors
                    raise VendorError(f"ib: {label} failed: {exc!r}", vendor=VENDOR, endpoint=label) from exc
                errors = self._errors[start:]
                if ok is not None and not ok(result, errors):
                    raise _NotOk(result, errors)
        except pybreaker.CircuitBreakerError:
            raise circuit_open_error(self.breaker, VENDOR, label) from None
        except _NotOk as bad:
            return bad.result, bad.errors
        return result, errors

    def _fail(self, message: str, endpoint: str) -> VendorError:
        return VendorError(f"ib: {message}", vendor=VENDOR, endpoint=endpoint)

    def _check_subscription(self, errors: Sequence[IBErrorEvent], what: str) -> None:
        for e in errors:
            if e.code == 354:
                raise self._fail(
                    f"market data for {what} is not subscribed (error 354: {e.message}); "
                    "subscribe, or configure market_data_type=3 (delayed) to use "
                    "reqMarketDataType(3)",
                    "reqMktData",
                )
            if e.code == 10197:  # the same username is logged in elsewhere (TWS, IBKR Mobile...)
                raise self._fail(
                    f"no market data for {what}: another session of this IB username is live "
                    f"(error 10197: {e.message}); log out of the other session (TWS, IBKR Mobile, "
                    "the Client Portal) or give the gateway a username of its own",
                    "reqMktData",
                )

    def _underlying(self, symbol: str, *, index: bool = False) -> Any:
        from ib_async.contract import Index, Stock  # lazy: see module docstring of ib_seam

        is_index = index or symbol in self.index_symbols
        raw = (Index(symbol, INDEX_EXCHANGES.get(symbol, "CBOE"), "USD") if is_index
               else Stock(symbol, "SMART", "USD"))
        result, errors = self._call(f"qualifyContracts {symbol}", self._gw().qualify, [raw],
                                    ok=lambda r, e: bool(r) and r[0] is not None)
        q = result[0] if result else None
        if q is None:
            why = "; ".join(f"error {e.code}: {e.message}" for e in errors) or "no contract returned"
            raise self._fail(f"cannot qualify underlying {symbol} ({why})", "qualifyContracts")
        return q

    # -- options ---------------------------------------------------------------------------
    def _check_live(self, day: date, snapshot_times: Sequence[datetime]) -> None:
        now = self._clock()
        for t in snapshot_times:
            if cal.market_date(t) != day:
                raise ValueError(f"snapshot time {t.isoformat()} is not on {day.isoformat()}")
            if now - t > self.live_tolerance:
                raise SnapshotNotReproducible(
                    f"ib serves live option snapshots only: {t.isoformat()} is {now - t} before "
                    f"now (tolerance {self.live_tolerance}); backfill options from a source "
                    "with history (e.g. thetadata)"
                )
            if t - now > self.live_tolerance:
                raise ValueError(f"snapshot time {t.isoformat()} is in the future (now {now.isoformat()})")

    def fetch_options(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """Live option chains around the money: one row per contract per snapshot instant."""
        self._check_live(day, snapshot_times)
        symbols = [normalise_us_ticker(s) for s in symbols]
        rows: list[dict] = []
        for t in snapshot_times:
            for symbol in symbols:
                rows.extend(self._option_rows(day, symbol, t))
        return pa.Table.from_pylist(rows, schema=OPTIONS_SCHEMA)

    def _option_rows(self, day: date, symbol: str, snapshot_time: datetime) -> list[dict]:
        from ib_async.contract import Option

        gw = self._gw()
        und = self._underlying(symbol)
        tickers, errors = self._call(
            f"reqMktData {symbol}", gw.market_data, [und], "", self.market_data_timeout
        )
        self._check_subscription(errors, symbol)
        price = ticker_price(tickers[0]) if tickers else None
        if price is None:
            raise self._fail(
                f"no price for underlying {symbol} (bid/ask/last/close all missing)", "reqMktData"
            )
        chains, _ = self._call(
            f"reqSecDefOptParams {symbol}", gw.sec_def_opt_params, symbol, und.secType, und.conId
        )
        chain = pick_chain(chains, symbol, self.trading_classes.get(symbol))
        expirations = select_expirations(chain.expirations, day, self.max_expirations)
        strikes = select_strikes(chain.strikes, price, self.strike_band, self.max_strikes)
        wanted = [
            Option(symbol, exp, strike, right, "SMART", currency="USD", tradingClass=chain.tradingClass)
            for exp in expirations for strike in strikes for right in ("C", "P")
        ]
        if not wanted:
            raise self._fail(f"no expirations/strikes of {symbol} around {price} on {day}", "reqSecDefOptParams")
        qualified, errors = self._call(f"qualifyContracts {symbol} options", gw.qualify, wanted)
        contracts = [c for c in qualified if c is not None]
        if len(contracts) < len(wanted):
            # error 200 for one strike of many is routine (strikes listed for some expiries only)
            log.warning("ib: %d of %d %s option contracts have no security definition; skipped (%s)",
                        len(wanted) - len(contracts), len(wanted), symbol,
                        "; ".join(sorted({f"{e.code}" for e in errors})) or "no error event")
        if not contracts:
            raise self._fail(f"none of the {len(wanted)} {symbol} option contracts qualified", "qualifyContracts")
        rows = []
        for i in range(0, len(contracts), self.max_lines):
            batch = contracts[i : i + self.max_lines]
            tickers, errors = self._call(f"reqMktData {symbol} options", gw.market_data, batch,
                                         OPTION_GENERIC_TICKS, self.market_data_timeout)
            self._check_subscription(errors, f"{symbol} options")
            fetched_at = self._clock()
            for tk in tickers:
                row = normalise_option_ticker(tk, symbol, snapshot_time, price, fetched_at)
                if row is not None:
                    rows.append(row)
        return rows

    # -- stocks_1m -------------------------------------------------------------------------
    def fetch_stocks_1m(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """Regular-session one-minute TRADES bars of ``day``: one row per symbol per minute."""
        session = cal.session(day)
        rows: list[dict] = []
        for symbol in [normalise_us_ticker(s) for s in symbols]:
            contract = self._underlying(symbol)
            for bar in self._historical_day(contract, symbol, session.close_utc):
                row = normalise_bar(bar, symbol)
                if session.open_utc <= row["timestamp"] < session.close_utc:
                    rows.append(row)
        if symbols and not rows:
            raise EmptySession(f"ib returned no one-minute bars for {', '.join(symbols)} on {day}")
        return pa.Table.from_pylist(rows, schema=STOCKS_1M_SCHEMA)

    # -- trades ----------------------------------------------------------------------------
    def fetch_trades(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """The account's executions on ``day`` (ET date): one row per execution."""
        fills, _ = self._call("reqExecutions", self._gw().fills, day)
        wanted = {normalise_us_ticker(s) for s in symbols}
        rows = []
        for fill in fills:
            row = normalise_fill(fill)
            if row is None:
                log.warning("ib: skipped execution %s of unsupported secType %s",
                            fill.execution.execId, fill.contract.secType)
                continue
            if cal.market_date(row["timestamp"]) == day and (not wanted or row["symbol"] in wanted):
                rows.append(row)
        return pa.Table.from_pylist(rows, schema=TRADES_SCHEMA)

    def close(self) -> None:
        if self._ready:
            self._gateway.disconnect()
            self._ready = False
