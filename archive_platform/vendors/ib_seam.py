"""The narrow seam between the IB source and ib_async (the pacer lives in ``resilience``).

``IBSource`` (``vendors/ib.py``) only ever talks to an ``IBGateway``: a handful of blocking
calls that return ib_async's own objects (``Contract``, ``OptionChain``, ``Ticker``,
``BarData``, ``Fill``). ``AsyncIBGateway`` is the real implementation over ``ib_async.IB``;
tests substitute a fake built from ib_async's real dataclasses, because ib_async ships no fake
TWS (vendor's API documentation). ib_async is imported lazily inside ``AsyncIBGateway`` so importing this
module never pulls in an event loop or a socket.

Errors: TWS reports most request problems out of band through ``errorEvent(reqId, errorCode,
errorString, contract)`` while the request itself returns ``None``/an empty list. The gateway
forwards that feed to handlers registered with ``add_error_handler``; the source records the
errors seen during each call and decides what they mean (vendor's API documentation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from archive_platform.vendors.resilience import HistoricalPacer  # noqa: F401 (re-exported)

#: generic ticks for option snapshots: 100 option volume, 101 open interest, 104 historical
#: volatility, 105 average option volume, 106 implied volatility (vendor's API documentation)
OPTION_GENERIC_TICKS = "100,101,104,105,106"


@dataclass(frozen=True)
class IBErrorEvent:
    """One ``errorEvent`` emission: request id, IB error code, message, and the contract."""

    req_id: int
    code: int
    message: str
    contract: Any = None


ErrorHandler = Callable[[int, int, str, Any], None]


class IBGateway(Protocol):
    """The ib_async calls the IB source needs, as blocking methods over ib_async objects."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def is_connected(self) -> bool: ...

    def set_market_data_type(self, market_data_type: int) -> None:
        """1 live, 2 frozen, 3 delayed, 4 delayed-frozen (``reqMarketDataType``)."""

    def add_error_handler(self, handler: ErrorHandler) -> None:
        """Call ``handler(req_id, code, message, contract)`` for every ``errorEvent``."""

    def qualify(self, contracts: Sequence[Any]) -> list[Any]:
        """Qualified contracts, position-aligned with the input; ``None`` where IB has none."""

    def sec_def_opt_params(self, symbol: str, sec_type: str, con_id: int) -> list[Any]:
        """``reqSecDefOptParams``: the ``OptionChain`` objects of an underlying."""

    def market_data(
        self, contracts: Sequence[Any], generic_ticks: str, timeout: float
    ) -> list[Any]:
        """One ``Ticker`` per contract after streaming for up to ``timeout`` seconds."""

    def historical_bars(
        self,
        contract: Any,
        end: datetime | date | str,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        format_date: int = 2,
    ) -> list[Any]:
        """``reqHistoricalData``; an empty list on timeout (ib_async does not raise)."""

    def fills(self, day: date) -> list[Any]:
        """The account's ``Fill`` objects that TWS still holds for ``day`` (``reqExecutions``)."""


class AsyncIBGateway:
    """``IBGateway`` over a real ``ib_async.IB`` connection (TWS or IB Gateway).

    Not exercised by the offline tests; ``test_vendor_ib.py`` has a ``live`` test for it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7497,
        client_id: int = 1,
        *,
        connect_timeout: float = 10.0,
        readonly: bool = True,
        account: str = "",
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.connect_timeout, self.readonly, self.account = connect_timeout, readonly, account
        self._handlers: list[ErrorHandler] = []
        self._ib: Any = None

    def _client(self) -> Any:
        if self._ib is None:
            import ib_async  # lazy: an event loop and a socket only when actually used

            self._ib = ib_async.IB()
            self._ib.errorEvent += self._on_error
        return self._ib

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        for handler in self._handlers:
            handler(req_id, code, message, contract)

    def connect(self) -> None:
        ib = self._client()
        if not ib.isConnected():
            ib.connect(
                self.host,
                self.port,
                clientId=self.client_id,
                timeout=self.connect_timeout,
                readonly=self.readonly,
                account=self.account,
            )

    def disconnect(self) -> None:
        if self._ib is not None and self._ib.isConnected():
            self._ib.disconnect()

    def is_connected(self) -> bool:
        return self._ib is not None and self._ib.isConnected()

    def set_market_data_type(self, market_data_type: int) -> None:
        self._client().reqMarketDataType(market_data_type)

    def add_error_handler(self, handler: ErrorHandler) -> None:
        self._handlers.append(handler)

    def qualify(self, contracts: Sequence[Any]) -> list[Any]:
        # ib_async 2.x: position-aligned, None for unknown/ambiguous (vendor's API documentation)
        return list(self._client().qualifyContracts(*contracts))

    def sec_def_opt_params(self, symbol: str, sec_type: str, con_id: int) -> list[Any]:
        return list(self._client().reqSecDefOptParams(symbol, "", sec_type, con_id))

    def market_data(
        self, contracts: Sequence[Any], generic_ticks: str, timeout: float
    ) -> list[Any]:
        ib = self._client()
        tickers = [ib.reqMktData(c, generic_ticks, False, False) for c in contracts]
        deadline = time.monotonic() + timeout
        try:
            # Streaming (not snapshot=True) because snapshots carry no generic ticks; stop
            # early once every option ticker has model greeks.
            while time.monotonic() < deadline:
                ib.sleep(0.25)
                if all(_ticker_complete(t) for t in tickers):
                    break
        finally:
            for c in contracts:
                ib.cancelMktData(c)
        return tickers

    def historical_bars(
        self,
        contract: Any,
        end: datetime | date | str,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        format_date: int = 2,
    ) -> list[Any]:
        bars = self._client().reqHistoricalData(
            contract, end, duration, bar_size, what_to_show, use_rth, formatDate=format_date
        )
        return list(bars or [])

    def fills(self, day: date) -> list[Any]:
        import ib_async

        # The filter only narrows server-side; its time is read in TWS's own timezone, so start
        # a day early (TWS anywhere from Hawaii to Asia) and let the source keep the ET day.
        since = day - timedelta(days=1)
        flt = ib_async.ExecutionFilter(time=f"{since:%Y%m%d} 00:00:00")
        return list(self._client().reqExecutions(flt))


def _ticker_complete(ticker: Any) -> bool:
    sec_type = getattr(getattr(ticker, "contract", None), "secType", "")
    if sec_type != "OPT":
        return _finite(getattr(ticker, "last", None)) or _finite(getattr(ticker, "close", None))
    return getattr(ticker, "modelGreeks", None) is not None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
