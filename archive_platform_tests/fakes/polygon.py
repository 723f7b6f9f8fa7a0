"""Fake Polygon.io REST API speaking the documented format (vendor's API documentation).

``apiKey`` query auth (401 ``Unknown API Key`` otherwise); every body has ``status`` and
``request_id``; pages are cut at ``page_size`` and linked with a ``next_url`` carrying a
``cursor`` but not the key (like the real one). The aggregates ``next_url`` rewrites ``from`` to
epoch ms as the real API does. Option snapshot rows have ``details``, ``greeks`` (omitted when
not given), ``last_quote``, ``last_trade``, ``day``, ``open_interest``, ``underlying_asset``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

from archive_platform_tests.fakes.server import FakeRequest, FakeVendorServer


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset={offset}".encode()).decode()


def _offset(req: FakeRequest) -> int:
    c = req.query.get("cursor")
    return int(base64.urlsafe_b64decode(c.encode()).decode().split("=")[1]) if c else 0


def minute_bar(t: datetime, o: float, h: float, l: float, c: float, v: float, vw=None, n=None) -> dict:
    """One aggregate in the API's shape: ``t`` = bar start in epoch ms, prices and ``v`` doubles."""
    bar: dict[str, Any] = {"t": int(t.timestamp() * 1000), "o": o, "h": h, "l": l, "c": c, "v": float(v)}
    if vw is not None:
        bar["vw"] = vw
    if n is not None:
        bar["n"] = n
    return bar


def option_snapshot(
    underlying: str, expiry: date, right: str, strike: float, *, underlying_price: float,
    bid: float, ask: float, last: float | None = None, volume: int | None = 10,
    open_interest: int | None = 100, iv: float | None = 0.25, greeks: dict | None = None,
    quote_ns: int | None = None, trade_ns: int | None = None,
) -> dict[str, Any]:
    """One /v3/snapshot/options result row."""
    ticker = f"O:{underlying}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
    row: dict[str, Any] = {
        "break_even_price": strike + ask if right == "C" else strike - ask,
        "details": {
            "contract_type": "call" if right == "C" else "put",
            "exercise_style": "american",
            "expiration_date": expiry.isoformat(),
            "shares_per_contract": 100,
            "strike_price": strike,
            "ticker": ticker,
        },
        "last_quote": {"bid": bid, "ask": ask, "bid_size": 10, "ask_size": 12,
                       "midpoint": (bid + ask) / 2, "timeframe": "REAL-TIME"},
        "underlying_asset": {"ticker": underlying, "price": underlying_price,
                             "change_to_break_even": 1.0, "timeframe": "REAL-TIME"},
    }
    if quote_ns is not None:
        row["last_quote"]["last_updated"] = quote_ns
    if last is not None:
        row["last_trade"] = {"price": last, "size": 1, "sip_timestamp": trade_ns or 0,
                             "conditions": [209], "exchange": 316, "timeframe": "REAL-TIME"}
    if volume is not None:
        row["day"] = {"volume": volume, "open": last, "close": last}
    if open_interest is not None:
        row["open_interest"] = open_interest
    if iv is not None:
        row["implied_volatility"] = iv
    if greeks is not None:
        row["greeks"] = greeks
    return row


@dataclass
class PolygonFake:
    """Fixture data keyed by ticker/underlying; ``install`` adds its routes to a server."""

    api_key: str
    bars: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    chains: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bars_page_size: int = 50000
    chain_page_size: int = 250
    url: str = ""

    def install(self, server: FakeVendorServer) -> None:
        self.url = server.url
        server.route(r"/v2/aggs/ticker/(?P<t>[^/]+)/range/1/minute/(?P<frm>[^/]+)/(?P<to>[^/]+)", self._aggs)
        server.route(r"/v3/snapshot/options/(?P<u>[^/]+)", self._chain)

    def _denied(self, req: FakeRequest):
        if req.query.get("apiKey") != self.api_key:
            return 401, {}, {"status": "ERROR", "request_id": "r-401", "error": "Unknown API Key"}
        return None

    def _page(self, rows, size, offset, next_path, extra):
        body = {"status": "OK", "request_id": f"r-{offset}", **extra,
                "results": rows[offset: offset + size]}
        body["resultsCount"] = body["count"] = len(body["results"])
        if offset + size < len(rows):
            body["next_url"] = f"{self.url}{next_path}?cursor={_cursor(offset + size)}"
        return body

    def _aggs(self, req: FakeRequest):
        if denied := self._denied(req):
            return denied
        t = req.match["t"]
        rows = sorted(self.bars.get(t, []), key=lambda b: b["t"])
        frm = req.match["frm"]
        if not frm.isdigit():  # the first page: later pages carry ``from`` as epoch ms
            frm = str(rows[0]["t"]) if rows else "0"
        extra = {"ticker": t, "adjusted": True, "queryCount": len(rows)}
        body = self._page(rows, self.bars_page_size, _offset(req),
                          f"/v2/aggs/ticker/{t}/range/1/minute/{frm}/{req.match['to']}", extra)
        if not body["results"]:
            del body["results"]  # the real API omits results on an empty range
        return body

    def _chain(self, req: FakeRequest):
        if denied := self._denied(req):
            return denied
        u = unquote(req.match["u"])  # as the real server decodes the path (I%3ASPX -> I:SPX)
        rows = self.chains.get(u, [])
        return self._page(rows, self.chain_page_size, _offset(req), f"/v3/snapshot/options/{u}", {})
