"""Fake Unusual Whales REST API speaking the documented format (vendor's API documentation).

Decimals are JSON strings, counts JSON ints, the envelope is ``{"data": [...]}``, successful
responses carry the five ``x-uw-*`` usage headers. Flow alerts are served newest first, at most
``limit`` (<= 200, else 422 like the spec) per page, filtered by ``ticker_symbol`` and by
``older_than`` (strictly older); ``newer_than`` is ignored, as reported of the real API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from archive_platform_tests.fakes.server import FakeRequest, FakeVendorServer

USAGE_HEADERS = {
    "x-uw-daily-req-count": "42",
    "x-uw-token-req-limit": "15000",
    "x-uw-minute-req-counter": "3",
    "x-uw-req-per-minute-remaining": "117",
    "x-uw-req-per-minute-reset": "41000",
}


def uw_timestamp(ts: datetime, style: str = "space") -> str:
    """``space``: the spec's ``2023-12-12 16:35:52.168490+00:00``; ``z``: ``...T...Z`` (real capture)."""
    ts = ts.astimezone(timezone.utc)
    if style == "z":
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.isoformat(sep=" ", timespec="microseconds")


def flow_alert(
    ticker: str,
    created_at: datetime,
    *,
    alert_id: str | None,
    expiry: date,
    right: str,
    strike: float,
    total_premium: float,
    ask_prem: float,
    bid_prem: float,
    volume: int = 500,
    size: int = 300,
    open_interest: int = 100,
    iv_end: float | None = 0.31,
    ts_style: str = "space",
) -> dict[str, Any]:
    """One REST flow alert in UW's shape (spec "Flow Alert" + real-payload extras)."""
    chain = f"{ticker}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
    row: dict[str, Any] = {
        "alert_rule": "RepeatedHits",
        "all_opening_trades": False,
        "created_at": uw_timestamp(created_at, ts_style),
        "expiry": expiry.isoformat(),
        "expiry_count": 1,
        "has_floor": False,
        "has_multileg": False,
        "has_singleleg": True,
        "has_sweep": True,
        "issue_type": "Common Stock",
        "open_interest": open_interest,
        "option_chain": chain,
        "price": "1.25",
        "strike": f"{strike:g}",
        "ticker": ticker,
        "total_ask_side_prem": f"{ask_prem:g}",
        "total_bid_side_prem": f"{bid_prem:g}",
        "total_premium": f"{total_premium:g}",
        "total_size": size,
        "trade_count": 7,
        "type": "call" if right == "C" else "put",
        "underlying_price": "101.5",
        "volume": volume,
        "volume_oi_ratio": f"{volume / open_interest:.4f}",
        "sector": "Technology",  # an extra field clients must ignore
    }
    if alert_id is not None:
        row["id"] = alert_id
    if iv_end is not None:
        row["iv_start"], row["iv_end"] = "0.30", f"{iv_end:g}"
    return row


def _parse_bound(value: str) -> datetime:
    if re.fullmatch(r"\d+", value):
        n = int(value)
        return datetime.fromtimestamp(n / 1000 if n > 10**11 else n, tz=timezone.utc)
    # an ISO date or RFC 3339 datetime; one with an offset means that instant, a bare one UTC
    ts = datetime.fromisoformat(value)
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _created(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["created_at"]).astimezone(timezone.utc)


@dataclass
class UnusualWhalesFake:
    """Holds the fixture data; ``install`` adds its routes to a ``FakeVendorServer``."""

    api_key: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    iv_rank: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def install(self, server: FakeVendorServer) -> None:
        server.route(r"/api/option-trades/flow-alerts", self._flow_alerts)
        server.route(r"/api/stock/(?P<ticker>[^/]+)/iv-rank", self._iv_rank)

    def _auth(self, req: FakeRequest):
        if req.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {}, {"msg": "Unauthorized: invalid or missing API token"}  # body UNVERIFIED
        return None

    def _flow_alerts(self, req: FakeRequest):
        if denied := self._auth(req):
            return denied
        limit = int(req.query.get("limit", "100"))
        if not 1 <= limit <= 200:
            return 422, {}, {"msg": f"Invalid query input(s): limit={limit}", "path": {},
                             "query": req.query, "url": req.path}
        rows = sorted(self.alerts, key=_created, reverse=True)
        if tickers := req.query.get("ticker_symbol"):
            wanted = {t.strip().upper() for t in tickers.split(",")}
            rows = [r for r in rows if r["ticker"] in wanted]
        if "older_than" in req.query:
            bound = _parse_bound(req.query["older_than"])
            rows = [r for r in rows if _created(r) < bound]
        return 200, USAGE_HEADERS, {"data": rows[:limit]}

    def _iv_rank(self, req: FakeRequest):
        if denied := self._auth(req):
            return denied
        ticker = req.match["ticker"].upper()
        if ticker not in self.iv_rank:
            return 422, {}, {"msg": f"Invalid path input: {ticker}"}
        rows = self.iv_rank[ticker]
        if "date" in req.query:
            rows = [r for r in rows if r["date"] <= req.query["date"]]
        return 200, USAGE_HEADERS, {"data": rows}
