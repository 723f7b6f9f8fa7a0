"""A scripted ``IBGateway`` built from ib_async's real dataclasses (no TWS, no sockets).

ib_async ships no fake TWS (vendor's API documentation), so tests fake our own seam. The objects handed
back are ib_async's ``Contract``/``Option``/``OptionChain``/``Ticker``/``OptionComputation``/
``BarData``/``Fill``/``Execution``/``CommissionReport``, so attribute names and defaults (NaN for
missing ticker fields) are the library's, not ours. Errors are emitted through the registered
handlers during the call, as ib_async's ``errorEvent`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ib_async.contract import Contract
from ib_async.objects import BarData, OptionChain, OptionComputation
from ib_async.ticker import Ticker

from archive_platform.vendors.occ import format_occ

INDEX_LISTINGS = {"NDX": "NASDAQ", "RUT": "RUSSELL"}


@dataclass
class FakeQuote:
    """Market data the fake hands back for one option contract (NaN = not sent by IB)."""

    bid: float = math.nan
    ask: float = math.nan
    last: float = math.nan
    volume: float = math.nan
    call_oi: float = math.nan
    put_oi: float = math.nan
    greeks: OptionComputation | None = None


@dataclass
class FakeIBGateway:
    """In-memory TWS: contracts it knows, chains, quotes, bars per call, fills, scripted errors."""

    underlyings: dict[str, tuple[str, int]] = field(default_factory=dict)  # symbol -> (secType, conId)
    underlying_prices: dict[str, float] = field(default_factory=dict)
    chains: dict[str, list[OptionChain]] = field(default_factory=dict)
    # (symbol, 'YYYYMMDD', strike, right) of option contracts IB knows; others qualify to None
    known_options: set[tuple[str, str, float, str]] = field(default_factory=set)
    quotes: dict[tuple[str, str, float, str], FakeQuote] = field(default_factory=dict)
    # each historical call pops the next script entry: (bars, [(code, message), ...])
    bar_script: list[tuple[list[BarData], list[tuple[int, str]]]] = field(default_factory=list)
    fills_list: list[Any] = field(default_factory=list)
    market_data_errors: list[tuple[int, str]] = field(default_factory=list)
    ticker_time: datetime | None = None
    on_historical: Callable[[], None] | None = None  # e.g. record the fake clock per request

    def __post_init__(self) -> None:
        self.handlers: list[Callable] = []
        self.calls: list[tuple[str, Any]] = []
        self.connected = False
        self.market_data_type: int | None = None
        self._next_con_id = 1000

    # -- IBGateway -------------------------------------------------------------------------
    def connect(self) -> None:
        self.connected = True
        self.calls.append(("connect", None))

    def disconnect(self) -> None:
        self.connected = False
        self.calls.append(("disconnect", None))

    def is_connected(self) -> bool:
        return self.connected

    def set_market_data_type(self, market_data_type: int) -> None:
        self.market_data_type = market_data_type

    def add_error_handler(self, handler: Callable) -> None:
        self.handlers.append(handler)

    def emit(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        for h in self.handlers:
            h(req_id, code, message, contract)

    def qualify(self, contracts: Sequence[Contract]) -> list[Contract | None]:
        self.calls.append(("qualify", len(contracts)))
        out: list[Contract | None] = []
        for i, c in enumerate(contracts):
            if c.secType in ("STK", "IND"):
                known = self.underlyings.get(c.symbol)
                # IB's contract database lists an index on one exchange (NDX: NASDAQ, RUT:
                # RUSSELL, most others CBOE); any other exchange finds no definition
                listed = c.secType != "IND" or c.exchange == INDEX_LISTINGS.get(c.symbol, "CBOE")
                if known and known[0] == c.secType and listed:
                    c.conId = known[1]
                    out.append(c)
                    continue
            elif c.secType == "OPT":
                key = (c.symbol, c.lastTradeDateOrContractMonth, float(c.strike), c.right)
                if key in self.known_options:
                    self._next_con_id += 1
                    c.conId = self._next_con_id
                    expiry = datetime.strptime(c.lastTradeDateOrContractMonth, "%Y%m%d").date()
                    c.localSymbol = format_occ(c.tradingClass or c.symbol, expiry, c.right, float(c.strike),
                                               padded=True)  # as IB sends it: "SPY   251219P00590000"
                    out.append(c)
                    continue
            self.emit(i, 200, "No security definition has been found for the request", c)
            out.append(None)
        return out

    def sec_def_opt_params(self, symbol: str, sec_type: str, con_id: int) -> list[OptionChain]:
        self.calls.append(("sec_def_opt_params", (symbol, sec_type, con_id)))
        return list(self.chains.get(symbol, []))

    def market_data(self, contracts: Sequence[Contract], generic_ticks: str, timeout: float) -> list[Ticker]:
        self.calls.append(("market_data", (len(contracts), generic_ticks)))
        for code, msg in self.market_data_errors:
            self.emit(1, code, msg, contracts[0] if contracts else None)
        tickers = []
        for c in contracts:
            if c.secType != "OPT":
                p = self.underlying_prices.get(c.symbol, math.nan)
                tickers.append(_ticker(c, time=self.ticker_time, last=p, bid=p - 0.01, ask=p + 0.01))
                continue
            q = self.quotes.get((c.symbol, c.lastTradeDateOrContractMonth, float(c.strike), c.right), FakeQuote())
            tickers.append(
                _ticker(
                    c, time=self.ticker_time, bid=q.bid, ask=q.ask, last=q.last, volume=q.volume,
                    callOpenInterest=q.call_oi, putOpenInterest=q.put_oi, modelGreeks=q.greeks,
                )
            )
        return tickers

    def historical_bars(self, contract, end, duration, bar_size, what_to_show, use_rth, format_date=2):
        self.calls.append(("historical_bars", (contract.symbol, end, duration, bar_size, what_to_show, use_rth, format_date)))
        if self.on_historical:
            self.on_historical()
        bars, errors = self.bar_script.pop(0) if self.bar_script else ([], [])
        for code, msg in errors:
            self.emit(7, code, msg, contract)
        if isinstance(end, datetime) and end.tzinfo is not None:
            # as TWS: the duration goes back from endDateTime and bars are stamped with their
            # start, so a bar starting at or after the end is not sent
            # (https://interactivebrokers.github.io/tws-api/historical_bars.html)
            bars = [b for b in bars if not (isinstance(b.date, datetime) and b.date.tzinfo is not None
                                            and b.date >= end)]
        return list(bars)

    def fills(self, day: date) -> list[Any]:
        self.calls.append(("fills", day))
        return list(self.fills_list)


def _ticker(contract: Contract, **fields: Any) -> Ticker:
    # Ticker.__post_init__ resets every price field to NaN, as ib_async does before ticks
    # arrive; the wrapper then sets attributes tick by tick, so the fake does the same.
    t = Ticker(contract=contract)
    for name, value in fields.items():
        setattr(t, name, value)
    return t
