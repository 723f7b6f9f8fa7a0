"""IB one-minute history: one day of TRADES bars per request, within TWS's pacing rules.

``IBSource`` mixes ``HistoricalBars`` in; it uses the source's ``_call``, ``_gw``, ``_fail``,
``pacer``, ``_sleep``, ``pacing_retries`` and ``pacing_backoff``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from tenacity import Retrying, retry_if_exception_type

from archive_platform.vendors.ib_seam import IBErrorEvent

# the logger of vendors/ib.py, where this code came from, so log filters keep matching
log = logging.getLogger("archive_platform.vendors.ib")


#: IB's historical-data limitations: "making identical historical data requests within 15
#: seconds" is a pacing violation (https://interactivebrokers.github.io/tws-api/historical_limitations.html),
#: so re-asking after an empty (timed-out) answer waits this long first
IDENTICAL_REQUEST_GAP = 15.0


class _Pacing(Exception):
    """TWS refused a historical request with error 162 "pacing violation"."""


class _NoBars(Exception):
    """An empty bar list without any error event: ib_async's answer to a timed-out request."""


def _is_pacing(e: IBErrorEvent) -> bool:
    return e.code == 162 and "pacing violation" in e.message.lower()


def _is_no_data(e: IBErrorEvent) -> bool:
    return e.code == 162 and "returned no data" in e.message.lower()


class HistoricalBars:
    """The historical-bars half of ``IBSource`` (see the module docstring for what it needs)."""

    def _historical_day(self, contract: Any, symbol: str, end: datetime) -> list[Any]:
        """One day of bars. Error 162 "pacing violation" backs off ``pacing_backoff`` x n seconds
        (at most ``pacing_retries`` times); an empty list without an error is retried once, after
        ``IDENTICAL_REQUEST_GAP`` seconds (the same request sooner is itself a pacing violation)."""
        label = f"reqHistoricalData {symbol} {end:%Y-%m-%d}"
        seen = {"pacing": 0, "empty": 0}
        ok = lambda bars, errs: bool(bars) or any(_is_no_data(e) for e in errs)  # noqa: E731

        def request() -> list[Any]:
            self.pacer.wait()
            bars, errors = self._call(label, self._gw().historical_bars, contract, end, "1 D", "1 min",
                                      "TRADES", True, 2, ok=ok)
            if bars:
                return list(bars)
            if any(_is_no_data(e) for e in errors):
                log.warning("ib: no bars for %s: %s", symbol, errors[0].message)
                return []
            if any(_is_pacing(e) for e in errors):
                seen["pacing"] += 1
                raise _Pacing()
            real = [e for e in errors if e.code != 10167]
            if real:
                raise self._fail(f"{label}: error {real[0].code}: {real[0].message}", label)
            seen["empty"] += 1
            raise _NoBars()

        retrying = Retrying(
            retry=retry_if_exception_type((_Pacing, _NoBars)),
            stop=lambda rs: seen["pacing"] > self.pacing_retries or seen["empty"] > 1,
            wait=lambda rs: (self.pacing_backoff * seen["pacing"] if isinstance(rs.outcome.exception(), _Pacing)
                             else IDENTICAL_REQUEST_GAP),
            sleep=lambda s: self._sleep(s) if s > 0 else None,
            reraise=True,
        )
        try:
            return retrying(request)
        except _Pacing:
            raise self._fail(f"{label}: pacing violation (162) persisted after {self.pacing_retries} "
                             "backoffs; spread requests out or lower the symbol count", label) from None
        except _NoBars:
            raise self._fail(f"{label} returned no bars twice; ib_async returns an empty list when the "
                             "request times out (is TWS/Gateway connected and the HMDS data farm up?)", label) from None
