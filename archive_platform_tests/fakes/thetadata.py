"""A fake Theta Terminal (v2 legacy JSON) on top of ``FakeVendorServer``.

Answers are registered per path and query subset; anything not registered answers 472
NO_DATA, as the terminal does; ``too_large`` makes matching requests answer 570 LARGE_REQUEST. With ``page_size`` set, responses are split into pages linked by
``header.next_page`` full URLs under ``/v2/page/<id>`` (ids neither consecutive nor per
request, like the terminal's), and an unknown page answers 477. ``pages_not_ready(n)`` makes the
next n page requests answer 477 without using the page up: the terminal answers 477 for "a page
that was discarded or that does not exist yet"
(https://http-docs.thetadata.us/Articles/Performance-And-Tuning/Pagination.html).

Column lists follow (vendor's API documentation); the all_greeks list is a plausible guess (UNVERIFIED there),
which the client must tolerate by reading columns by name.
"""

from __future__ import annotations

import itertools
from typing import Any

from archive_platform_tests.fakes.server import FakeRequest, FakeVendorServer

QUOTE_FMT = ["ms_of_day", "bid_size", "bid_exchange", "bid", "bid_condition",
             "ask_size", "ask_exchange", "ask", "ask_condition", "date"]
GREEKS_FMT = ["ms_of_day", "bid", "ask", "delta", "theta", "vega", "rho", "epsilon", "lambda",
              "implied_vol", "iv_error", "ms_of_day2", "underlying_price", "date"]
SECOND_FMT = ["ms_of_day", "bid", "ask", "gamma", "vanna", "charm", "vomma", "veta",
              "implied_vol", "iv_error", "ms_of_day2", "underlying_price", "date"]
ALL_GREEKS_FMT = ["ms_of_day", "bid", "ask", "delta", "theta", "vega", "rho", "epsilon", "lambda",
                  "gamma", "vanna", "charm", "vomma", "veta", "speed", "zomma", "color", "ultima",
                  "d1", "d2", "dual_delta", "dual_gamma", "implied_vol", "iv_error", "ms_of_day2",
                  "underlying_price", "date"]
OI_FMT = ["ms_of_day", "open_interest", "date"]
OHLC_FMT = ["ms_of_day", "open", "high", "low", "close", "volume", "count", "date"]


def et_ms(hour: int, minute: int = 0, second: int = 0) -> int:
    """Milliseconds since midnight ET (the terminal's ``ms_of_day``)."""
    return ((hour * 60 + minute) * 60 + second) * 1000


def contract(root: str, exp: int, strike_thousandths: int, right: str) -> dict:
    return {"root": root, "expiration": exp, "strike": strike_thousandths, "right": right}


def row(fmt: list[str], **values: Any) -> list:
    """One tick in ``fmt`` order; unnamed columns are 0 (as the terminal fills them)."""
    unknown = set(values) - set(fmt)
    if unknown:
        raise KeyError(f"columns {sorted(unknown)} are not in the format {fmt}")
    return [values.get(c, 0) for c in fmt]


class FakeThetaTerminal:
    """Route handlers for v2 endpoints over a running ``FakeVendorServer``."""

    def __init__(self, server: FakeVendorServer, page_size: int | None = None) -> None:
        self.server = server
        self.page_size = page_size
        self._answers: dict[str, list[tuple[dict[str, str], list[str], list]]] = {}
        self._pages: dict[str, tuple[list[str], list, str | None]] = {}
        self._ids = itertools.count(7001, 13)
        self._too_large: dict[str, list[dict[str, str]]] = {}
        self._not_ready = 0
        server.route(r"/v2/page/(\d+)", self._page)
        server.route(r"/v2/.*", lambda req: self._answer(req.path, req))

    def set(self, path: str, fmt: list[str], response: list, **query: Any) -> None:
        """Answer GET ``path`` whose query contains ``query`` with ``response`` in ``fmt``."""
        self._answers.setdefault(path, []).append(({k: str(v) for k, v in query.items()}, fmt, response))

    def set_bulk(self, path: str, fmt: list[str], items: list[tuple[dict, list[list]]], **query: Any) -> None:
        """A bulk answer: ``items`` of ``(contract dict, ticks)``."""
        self.set(path, fmt, [{"ticks": ticks, "contract": c} for c, ticks in items], **query)

    def too_large(self, path: str, **query: Any) -> None:
        """Answer GET ``path`` whose query contains ``query`` with 570 LARGE_REQUEST."""
        self._too_large.setdefault(path, []).append({k: str(v) for k, v in query.items()})

    def pages_not_ready(self, n: int = 1) -> None:
        """The next ``n`` page requests answer 477 (the page does not exist yet); the page stays."""
        self._not_ready += n

    # -- serving --------------------------------------------------------------------------
    def _answer(self, path: str, req: FakeRequest):
        for query in self._too_large.get(path, []):
            if all(req.query.get(k) == v for k, v in query.items()):
                return 570, {}, "The request is too large; please narrow it."
        for query, fmt, response in self._answers.get(path, []):
            if all(req.query.get(k) == v for k, v in query.items()):
                return self._paged(fmt, response)
        return 472, {}, "No data for the specified timeframe & contract."

    def _paged(self, fmt: list[str], response: list):
        if not self.page_size or len(response) <= self.page_size:
            return _envelope(fmt, response, None)
        chunks = [response[i : i + self.page_size] for i in range(0, len(response), self.page_size)]
        ids = [str(next(self._ids)) for _ in chunks]
        for i, chunk in enumerate(chunks[1:], start=1):
            nxt = self._url(ids[i + 1]) if i + 1 < len(chunks) else None
            self._pages[ids[i]] = (fmt, chunk, nxt)
        return _envelope(fmt, chunks[0], self._url(ids[1]))

    def _url(self, page_id: str) -> str:
        return f"{self.server.url}/v2/page/{page_id}"

    def _page(self, req: FakeRequest):
        if self._not_ready:
            self._not_ready -= 1
            return 477, {}, "No page found."
        page = self._pages.pop(req.match.group(1), None)  # pages are single use
        if page is None:
            return 477, {}, "No page found."
        return _envelope(*page)


def _envelope(fmt: list[str], response: list, next_page: str | None) -> dict:
    return {
        "header": {"id": 1, "latency_ms": 3, "error_type": "null", "error_msg": "null",
                   "next_page": next_page or "null", "format": fmt},
        "response": response,
    }
