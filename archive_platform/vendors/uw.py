"""Unusual Whales REST client: options-flow alerts (uw_flow) and IV rank (iv_rank).

Facts used (vendor's API documentation): bearer auth; ``{"data": [...]}`` envelope; decimals as JSON
strings, counts as ints; flow alerts come newest first, at most 200 a page, and are walked back
with ``older_than`` (the API is reported to ignore ``newer_than``, so the window is enforced
here). ``fetch_*`` does the I/O; ``normalise_*`` are pure and can be tested on plain dicts.

Empty results: a symbol with no flow alerts in the window is legitimate (quiet names have
none), so ``fetch_uw_flow`` returns an empty table. IV rank is expected for every symbol every
day, so a symbol without a usable row raises ``EmptySession``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from archive_platform.calendar import window_bounds
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.sources.base import EmptySession, MarketSource
from archive_platform.symbols import normalise_us_ticker
from archive_platform.vendors.http import VendorHttpClient, limiter_for, path_segment
from archive_platform.vendors.payload import PayloadReader, table_from_rows, validate_table
# the pure payload parsing lives in uw_parse; its names stay importable from here
from archive_platform.vendors.uw_parse import (  # noqa: F401
    IV_RANK_UNITS,
    NAME,
    FlowAlert,
    IvRankRow,
    normalise_flow_alert,
    normalise_iv_rank_rows,
)

KEY_ENV_VAR = "UW_API_KEY"
FLOW_PATH = "/api/option-trades/flow-alerts"
MAX_PAGE = 200


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def build_http(
    api_key: str, base_url: str = "https://api.unusualwhales.com", **overrides: Any
) -> VendorHttpClient:
    """The UW HTTP client: bearer auth, key redacted, shared per-process breaker and limiter.

    ``overrides`` go to ``VendorHttpClient`` (tests inject ``breaker``, ``sleep``, ``timeout``).
    The default limiter is 2 req/s (burst 5): the 120 req/min of UW's own usage example; plans
    allow more (500-1000/min), so raise it through ``limiter=limiter_for(...)`` if entitled.
    """
    options: dict[str, Any] = {
        "headers": {"Authorization": f"Bearer {api_key}", "UW-CLIENT-API-ID": "100001"},
        "secrets": (api_key,),
        "key_env_var": KEY_ENV_VAR,
        # UW documents the per-minute window's reset (ms) on its responses; a 429 without
        # Retry-After waits for it instead of giving up within seconds
        "rate_reset_header": ("x-uw-req-per-minute-reset", 0.001),
    }
    if "limiter" not in overrides:
        options["limiter"] = limiter_for(NAME, 2.0, burst=5)
    return VendorHttpClient(NAME, base_url, **{**options, **overrides})


class UnusualWhalesSource(MarketSource):
    """Unusual Whales: uw_flow (backfillable within the plan's lookback) and iv_rank."""

    name = NAME
    supported = frozenset({ArchiveType.UW_FLOW, ArchiveType.IV_RANK})
    backfillable = frozenset({ArchiveType.UW_FLOW, ArchiveType.IV_RANK})

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.unusualwhales.com",
        *,
        http: VendorHttpClient | None = None,
        page_limit: int = MAX_PAGE,
        timeout: float = 15.0,
        deadline: float | None = None,
        iv_rank_unit: str = "fraction",
    ) -> None:
        if not api_key:
            raise ValueError(f"{NAME}: an API key is required (set {KEY_ENV_VAR})")
        if iv_rank_unit not in IV_RANK_UNITS:
            raise ValueError(f"{NAME}: iv_rank_unit must be one of {sorted(IV_RANK_UNITS)}, got {iv_rank_unit!r}")
        self.iv_rank_unit = iv_rank_unit
        if not 1 <= page_limit <= MAX_PAGE:
            raise ValueError(f"{NAME}: page_limit must be 1..{MAX_PAGE}, got {page_limit}")
        self.page_limit = page_limit
        self.http = http or build_http(api_key, base_url, timeout=timeout, deadline=deadline)

    def close(self) -> None:
        self.http.close()

    # -- uw_flow --------------------------------------------------------------------------
    def fetch_uw_flow(
        self,
        day: date,
        symbols: Sequence[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pa.Table:
        """Flow alerts of ``day`` for ``symbols``; one row per alert, deduplicated by alert_id."""
        # the declaration's window (the whole market date: alerts after 16:00 ET are kept)
        lo, hi = window_bounds(day, spec_for(ArchiveType.UW_FLOW).window)
        hi = min(hi, until) if until else hi

        def in_window(ts: datetime) -> bool:
            return (ts > since if since else ts >= lo) and ts <= hi

        wanted = {normalise_us_ticker(s) for s in symbols}
        fetched = self.fetch_flow_alert_rows(sorted(wanted), max(lo, since) if since else lo, hi)
        rows = [r for r in fetched if r["symbol"] in wanted]
        rows = [r for r in rows if in_window(r["timestamp"])]
        rows.sort(key=lambda r: (r["symbol"], r["timestamp"], r["alert_id"]))
        return validate_table(table_from_rows(rows, ArchiveType.UW_FLOW), "uw_flow", NAME)

    def fetch_flow_alert_rows(
        self, symbols: Sequence[str], lo: datetime, hi: datetime
    ) -> list[dict[str, Any]]:
        """Walk the flow-alert pages back from ``hi`` to before ``lo``; rows normalised and
        deduplicated (not yet filtered to the window)."""
        if not symbols:
            return []
        seen: dict[str, dict[str, Any]] = {}
        # +1 ms: if older_than is strict, alerts stamped exactly at the bound are still included
        cursor = _ms(hi) + 1
        while True:
            params = {"ticker_symbol": ",".join(symbols), "limit": self.page_limit, "older_than": cursor}
            payload = self.http.get_json(FLOW_PATH, params)
            reader = PayloadReader(NAME, self.http.endpoint(FLOW_PATH, params), self.http.redact)
            page = reader.rows(payload, "data")
            if not page:
                break
            new = 0
            oldest = None
            for i, raw in enumerate(page):
                row = normalise_flow_alert(raw, i, reader)
                oldest = row["timestamp"] if oldest is None else min(oldest, row["timestamp"])
                if row["alert_id"] not in seen:
                    seen[row["alert_id"]] = row
                    new += 1
            assert oldest is not None
            if oldest < lo or len(page) < self.page_limit:
                break
            # Overlap by 1 ms so alerts sharing the oldest instant across a page boundary are not
            # lost; if a page brought nothing new, step strictly past it so the walk always ends.
            nxt = _ms(oldest) + 1 if new else _ms(oldest)
            if nxt >= cursor:
                nxt = cursor - 1
            cursor = nxt
        return list(seen.values())

    # -- iv_rank --------------------------------------------------------------------------
    def fetch_iv_rank(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """IV and 1-year IV rank per symbol per snapshot (UW gives no IV percentile)."""
        rows: list[dict[str, Any]] = []
        for sym in [normalise_us_ticker(s) for s in symbols]:
            path = f"/api/stock/{path_segment(sym)}/iv-rank"
            params = {"date": day.isoformat(), "timespan": "1m"}
            payload = self.http.get_json(path, params)
            reader = PayloadReader(NAME, self.http.endpoint(path, params), self.http.redact)
            data = reader.rows(payload, "data")
            if not data:
                raise EmptySession(f"{NAME}: {path} returned no IV-rank rows for {sym} up to {day}")
            rows += normalise_iv_rank_rows(data, sym, day, snapshot_times, reader, self.iv_rank_unit)
        rows.sort(key=lambda r: (r["symbol"], r["snapshot_time"]))
        return validate_table(table_from_rows(rows, ArchiveType.IV_RANK), "iv_rank", NAME)
