"""A fake Theta Terminal v3 on top of ``FakeVendorServer``: the documented v3 CSV.

Speaks what ThetaData's v3 docs (https://docs.thetadata.us/, OpenAPI ``Theta Data v3``) show
for the endpoints the client uses: ``/v3/...`` paths, params ``symbol``, ``expiration``
(``YYYYMMDD``/``YYYY-MM-DD``, ``*`` where the endpoint takes it), ``date`` or
``start_date``/``end_date``, ``interval`` (``1m``, ``15m``, ...), ``format`` (``csv``, the
default). Answers are CSV (CRLF lines) with the documented header in the documented order;
``timestamp`` is ET wall clock ``YYYY-MM-DDTHH:mm:ss.SSS``, ``expiration`` ``YYYY-MM-DD``,
``strike`` dollars ``270.000``, ``right`` ``CALL``/``PUT``.

Answers are registered per path and query subset as rows (dicts by column name; unnamed columns
are ``0``, ``symbol`` is the requested one); ``columns=`` serves another header (added or
reordered columns). Like the terminal: no registered rows -> 472 NO_DATA; a path it does not
implement -> 404 NO_IMPL; a missing or malformed parameter (v2 names such as ``root``/``exp``/
``ivl`` included) -> 473 INVALID_PARAMS naming it; ``too_large`` -> 570; ``queue_full(n)`` ->
the next n requests 429 (the terminal's request queue overflowed). Only ``format=csv`` is served.

Stock history endpoints take ``venue`` (``nqb`` = Nasdaq Basic, ``utp_cta`` = merged UTP & CTA,
i.e. the consolidated SIP tape), default ``nqb``
(https://docs.thetadata.us/operations/stock_history_ohlc.html): a request without ``venue`` is
matched as ``venue=nqb``, so answers registered with ``venue=...`` tell the two feeds apart.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from archive_platform_tests.fakes.server import FakeRequest, FakeVendorServer

QUOTE_SNAPSHOT = ["timestamp", "symbol", "expiration", "strike", "right", "bid_size", "bid_exchange",
                  "bid", "bid_condition", "ask_size", "ask_exchange", "ask", "ask_condition"]
QUOTE_HISTORY = ["symbol", "expiration", "strike", "right", "timestamp", "bid_size", "bid_exchange",
                 "bid", "bid_condition", "ask_size", "ask_exchange", "ask", "ask_condition"]
GREEKS_ALL = ["symbol", "expiration", "strike", "right", "timestamp", "bid", "ask", "delta", "theta",
              "vega", "rho", "epsilon", "lambda", "gamma", "vanna", "charm", "vomma", "veta", "vera",
              "speed", "zomma", "color", "ultima", "d1", "d2", "dual_delta", "dual_gamma", "implied_vol",
              "iv_error", "underlying_timestamp", "underlying_price"]
OI_SNAPSHOT = ["timestamp", "symbol", "expiration", "strike", "right", "open_interest"]
OI_HISTORY = ["symbol", "expiration", "strike", "right", "timestamp", "open_interest"]
EXPIRATIONS = ["symbol", "expiration"]
OHLC = ["timestamp", "open", "high", "low", "close", "volume", "count", "vwap"]
PRICE = ["timestamp", "price"]

_CHAIN = ("symbol", "expiration")
_DAY = ("symbol", "date")
#: path -> (documented columns, required params, `*` allowed for expiration, interval required)
ENDPOINTS: dict[str, tuple[list[str], tuple[str, ...], bool, bool]] = {
    "/v3/option/snapshot/quote": (QUOTE_SNAPSHOT, _CHAIN, True, False),
    "/v3/option/snapshot/greeks/all": (GREEKS_ALL, _CHAIN, True, False),
    "/v3/option/snapshot/open_interest": (OI_SNAPSHOT, _CHAIN, True, False),
    "/v3/option/history/quote": (QUOTE_HISTORY, (*_CHAIN, "date"), True, True),
    "/v3/option/history/greeks/all": (GREEKS_ALL, (*_CHAIN, "date"), False, True),
    "/v3/option/history/open_interest": (OI_HISTORY, (*_CHAIN, "date"), True, False),
    "/v3/option/list/expirations": (EXPIRATIONS, ("symbol",), False, False),
    "/v3/stock/history/ohlc": (OHLC, _DAY, False, True),
    "/v3/index/history/price": (PRICE, _DAY, False, True),
}
INTERVALS = {"tick", "10ms", "100ms", "500ms", "1s", "5s", "10s", "15s", "30s", "1m", "5m", "10m",
             "15m", "30m", "1h"}
V2_PARAMS = {"root", "exp", "ivl", "use_csv", "pretty_time", "rth"}
#: the stock endpoints' ``venue`` values and the documented default
VENUES = {"nqb", "utp_cta"}
DEFAULT_VENUE = "nqb"
VENUE_PATHS = {"/v3/stock/history/ohlc"}
_DATE = re.compile(r"\d{8}|\d{4}-\d{2}-\d{2}")
_STRIKE = re.compile(r"\*|\d+(\.\d+)?")


def ts(day: date, hour: int, minute: int = 0, second: int = 0, ms: int = 0, sep: str = "T") -> str:
    """An ET wall-clock ``timestamp`` cell as the terminal writes it."""
    return f"{day.isoformat()}{sep}{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}"


def contract(expiration: date, strike: float, right: str) -> dict[str, str]:
    """The contract cells of a row: ``2025-11-21``, ``600.500``, ``CALL``/``PUT``."""
    return {"expiration": expiration.isoformat(), "strike": f"{strike:.3f}",
            "right": {"C": "CALL", "P": "PUT"}[right]}


class FakeThetaTerminalV3:
    """Route handlers for the v3 endpoints over a running ``FakeVendorServer``."""

    def __init__(self, server: FakeVendorServer) -> None:
        self.server = server
        self._answers: dict[str, list[tuple[dict[str, str], list[str], list[dict]]]] = {}
        self._too_large: dict[str, list[dict[str, str]]] = {}
        self._busy = 0
        server.route(r"/v3/.*", self._answer)

    def set(self, path: str, rows: list[dict[str, Any]], columns: list[str] | None = None, **query: Any) -> None:
        """Answer GET ``path`` whose query contains ``query`` with ``rows`` under ``columns``
        (default: the documented header of ``path``)."""
        if path not in ENDPOINTS:
            raise KeyError(f"{path} is not an endpoint this fake implements")
        cols = list(columns or ENDPOINTS[path][0])
        for r in rows:
            unknown = set(r) - set(cols)
            if unknown:
                raise KeyError(f"columns {sorted(unknown)} are not in the header {cols}")
        self._answers.setdefault(path, []).append(({k: str(v) for k, v in query.items()}, cols, rows))

    def too_large(self, path: str, **query: Any) -> None:
        """Answer GET ``path`` whose query contains ``query`` with 570 LARGE_REQUEST."""
        self._too_large.setdefault(path, []).append({k: str(v) for k, v in query.items()})

    def queue_full(self, n: int = 1) -> None:
        """The next ``n`` v3 requests answer 429 (more requests than the account's concurrency
        plus the terminal's queue)."""
        self._busy += n

    # -- serving --------------------------------------------------------------------------
    def _answer(self, req: FakeRequest):
        if self._busy:
            self._busy -= 1
            return 429, {}, "Too many requests: the request queue is full."
        if req.path not in ENDPOINTS:
            return 404, {}, f"No implementation of {req.path}; update the Theta Terminal."
        problem = _invalid(req)
        if problem:
            return 473, {}, f"Invalid parameters: {problem}"
        for query in self._too_large.get(req.path, []):
            if all(req.query.get(k) == v for k, v in query.items()):
                return 570, {}, "The request is too large; please narrow it."
        q = dict(req.query)
        if req.path in VENUE_PATHS:
            q.setdefault("venue", DEFAULT_VENUE)  # the terminal's default feed
        for query, cols, rows in self._answers.get(req.path, []):
            if all(q.get(k) == v for k, v in query.items()) and rows:
                return 200, {"Content-Type": "text/csv"}, _csv(cols, rows, req.query.get("symbol", ""))
        return 472, {}, "No data found for your request."


def _invalid(req: FakeRequest) -> str | None:
    _, required, star, interval = ENDPOINTS[req.path]
    q = req.query
    v2 = sorted(V2_PARAMS & set(q))
    if v2:
        return f"unknown parameter(s) {v2} (v2 names; v3 uses symbol, expiration, interval)"
    for name in required:
        if name == "date" and "start_date" in q and "end_date" in q:
            continue
        if not q.get(name):
            return f"missing required parameter '{name}'"
    if interval and q.get("interval") not in INTERVALS:
        return f"interval {q.get('interval')!r} is not one of {sorted(INTERVALS)}"
    for name in ("date", "start_date", "end_date"):
        if name in q and not _DATE.fullmatch(q[name]):
            return f"{name} {q[name]!r} is not YYYYMMDD or YYYY-MM-DD"
    if "expiration" in q and not (_DATE.fullmatch(q["expiration"]) or (star and q["expiration"] == "*")):
        return f"expiration {q['expiration']!r} is not YYYYMMDD or YYYY-MM-DD" + (" or *" if star else "")
    if "strike" in q and not _STRIKE.fullmatch(q["strike"]):
        return f"strike {q['strike']!r} is not dollars or *"
    if q.get("right", "both") not in ("call", "put", "both"):
        return f"right {q['right']!r} is not call, put or both"
    if "venue" in q and (req.path not in VENUE_PATHS or q["venue"] not in VENUES):
        return f"venue {q['venue']!r} is not one of {sorted(VENUES)} (stock endpoints only)"
    if q.get("format", "csv") != "csv":
        return f"this fake serves format=csv only, not {q['format']!r}"
    return None


def _csv(cols: list[str], rows: list[dict[str, Any]], symbol: str) -> str:
    def cell(col: str, r: dict) -> str:
        if col in r:
            v = r[col]
            return "" if v is None else v.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] if isinstance(v, datetime) else str(v)
        if col == "symbol":
            return symbol
        if col == "underlying_timestamp":
            return str(r.get("timestamp", ""))
        return "0"

    lines = [",".join(cols)] + [",".join(cell(c, r) for c in cols) for r in rows]
    return "\r\n".join(lines) + "\r\n"
