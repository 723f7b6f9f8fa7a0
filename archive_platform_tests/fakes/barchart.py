"""Fake Barchart: an OnDemand ``getEquityOptionsOverviewHistory`` route and a CSV writer.

OnDemand answers ``{"status": {"code": 200, "message": "Success."}, "results": [...]}`` (the
OnDemand envelope, as https://www.barchart.com/ondemand/api/getChart shows it) and checks the
``apikey`` query param; ``envelope_failures`` scripts failures reported in that envelope with
HTTP 200.
``iv_rank_csv`` writes the website download's shape: quoted cells, percent strings, thousands
separators and the ``Downloaded from Barchart.com as of ...`` footer row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archive_platform_tests.fakes.server import FakeRequest, FakeVendorServer

CSV_COLUMNS = ["Symbol", "Name", "Last", "%Chg", "Imp Vol", "IV Chg", "IV Rank", "IV Pctl", "Options Vol", "Time"]


def iv_rank_csv(rows: list[dict[str, str]], downloaded_ct: datetime | None) -> str:
    """CSV text; ``rows`` give cells by column name (missing cells blank); ``downloaded_ct`` is
    the naive Chicago wall time written in the footer (None: no footer)."""
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r.get(c, "") for c in CSV_COLUMNS])
    if downloaded_ct is not None:
        label = "CDT" if 3 <= downloaded_ct.month <= 10 else "CST"
        ampm = downloaded_ct.strftime("%p").lower()
        w.writerow([f"Downloaded from Barchart.com as of {downloaded_ct:%m-%d-%Y %I:%M}{ampm} {label}"])
    return buf.getvalue()


@dataclass
class BarchartOnDemandFake:
    api_key: str
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: (code, message) answered in the envelope, with HTTP 200, by the next requests (in order)
    envelope_failures: list[tuple[int, str]] = field(default_factory=list)

    def install(self, server: FakeVendorServer) -> None:
        server.route(r"/getEquityOptionsOverviewHistory\.json", self._history)

    def _history(self, req: FakeRequest):
        if req.query.get("apikey") != self.api_key:
            return 401, {}, {"status": {"code": 401, "message": "Unauthorized"}}
        if "symbol" not in req.query or "fields" not in req.query:
            return 400, {}, {"status": {"code": 400, "message": "symbol and fields are required"}}
        if self.envelope_failures:
            code, message = self.envelope_failures.pop(0)
            return {"status": {"code": code, "message": message}, "results": []}
        sym = req.query["symbol"]
        lo, hi = req.query.get("startDate", "0000"), req.query.get("endDate", "9999")
        rows = [dict(r, symbol=sym) for r in self.history.get(sym, []) if lo <= r["date"] <= hi]
        return {"status": {"code": 200, "message": "Success."}, "results": rows}
