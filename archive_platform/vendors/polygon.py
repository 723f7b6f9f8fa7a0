"""Polygon.io (Massive) REST client: one-minute stock bars (stocks_1m) and option-chain
snapshots (options, live only).

Facts used (VENDORS.md section 3): key in the ``apiKey`` query param; responses carry
``status`` and ``results`` and, when more remain, a ``next_url`` with a ``cursor`` that does NOT
carry the key (the HTTP layer re-appends it and re-roots the link on our base URL, so the key
goes nowhere else and is never stored). Aggregate ``t`` is the bar start in epoch ms UTC.
``fetch_*`` does I/O; ``normalise_*`` are pure.

Empty results: a trading day without any bar for a symbol, or an underlying without any option
contract, raises ``EmptySession`` (both are expected to exist every session).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from archive_platform.calendar import et_offset_minutes, session
from archive_platform.schemas import ArchiveType
from archive_platform.sources.base import EmptySession, MarketSource, SnapshotNotReproducible
from archive_platform.symbols import normalise_us_ticker
from archive_platform.vendors.http import VendorHttpClient, path_segment
from archive_platform.vendors.payload import PayloadReader, table_from_rows, validate_table

NAME = "polygon"
KEY_ENV_VAR = "POLYGON_API_KEY"
OK_STATUSES = {"OK", "DELAYED"}  # DELAYED: plans without real-time data; the shape is the same
MAX_PAGES = 1000  # a cursor chain longer than this is a vendor bug, not a big day


def _ns(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1e9, tz=timezone.utc)


def build_http(api_key: str, base_url: str = "https://api.polygon.io", **overrides: Any) -> VendorHttpClient:
    """The Polygon HTTP client: ``apiKey`` query auth (redacted everywhere).

    No default rate limit (paid plans are unmetered, ~100 req/s soft); the free tier needs
    ``limiter=limiter_for("polygon", 5 / 60)``.
    """
    options: dict[str, Any] = {"secret_params": {"apiKey": api_key}, "key_env_var": KEY_ENV_VAR}
    return VendorHttpClient(NAME, base_url, **{**options, **overrides})


def normalise_minute_bars(
    results: Sequence[Mapping[str, Any]], symbol: str, day: date, reader: PayloadReader
) -> list[dict[str, Any]]:
    """Polygon minute aggregates -> stocks_1m rows of the regular session of ``day``.

    Pre- and post-market bars are dropped. ``v`` is a double in the API; adjusted volumes can be
    fractional after splits, so it is rounded to the nearest share.
    """
    s = session(day)
    out = []
    for i, r in enumerate(results):
        ts = reader.get(r, i, "t", "epoch_ms")
        if not s.open_utc <= ts < s.close_utc:
            continue
        out.append(
            {
                "timestamp": ts,
                "symbol": symbol,
                "open": reader.get(r, i, "o", "decimal"),
                "high": reader.get(r, i, "h", "decimal"),
                "low": reader.get(r, i, "l", "decimal"),
                "close": reader.get(r, i, "c", "decimal"),
                "volume": round(reader.get(r, i, "v", "decimal")),
                "vwap": reader.get(r, i, "vw", "decimal", required=False),
                "trade_count": reader.get(r, i, "n", "count", required=False),
                "et_offset": et_offset_minutes(ts),
                "source": NAME,
            }
        )
    return out


def normalise_option_snapshot(
    row: Mapping[str, Any], index: int, symbol: str, snapshot_time: datetime,
    fetched_at: datetime, reader: PayloadReader,
) -> dict[str, Any]:
    """One chain-snapshot result -> one options row.

    ``timestamp`` is the newest of the quote and trade update times (ns), else the fetch
    instant. Greeks are omitted by Polygon when not computable: they become nulls.
    """
    g = reader.get
    details = reader.nested(row, index, "details")
    quote = reader.nested(row, index, "last_quote", required=False)
    trade = reader.nested(row, index, "last_trade", required=False)
    day = reader.nested(row, index, "day", required=False)
    greeks = reader.nested(row, index, "greeks", required=False)
    under = reader.nested(row, index, "underlying_asset")
    kind = g(details, index, "contract_type", "str")
    if kind not in ("call", "put"):
        raise reader.fail(index, row, f"field 'details.contract_type' is {kind!r}, expected call/put")
    price = g(under, index, "price", "decimal", required=False)
    if price is None:  # indices report ``value`` instead of ``price``
        price = g(under, index, "value", "decimal", required=False)
    if price is None:
        raise reader.fail(index, row, "missing field 'underlying_asset.price' (and no 'value')")
    times = [
        t for t in (
            _ns(g(quote, index, "last_updated", "int", required=False)),
            _ns(g(trade, index, "sip_timestamp", "int", required=False)),
        ) if t is not None
    ]
    ts = max(times) if times else fetched_at
    return {
        "timestamp": ts,
        "snapshot_time": snapshot_time,
        "symbol": symbol,
        "expiry": g(details, index, "expiration_date", "date"),
        "strike": g(details, index, "strike_price", "decimal"),
        "right": "C" if kind == "call" else "P",
        "bid": g(quote, index, "bid", "decimal", required=False),
        "ask": g(quote, index, "ask", "decimal", required=False),
        "last": g(trade, index, "price", "decimal", required=False),
        "volume": g(day, index, "volume", "count", required=False),
        "open_interest": g(row, index, "open_interest", "count", required=False),
        "iv": g(row, index, "implied_volatility", "decimal", required=False),
        "delta": g(greeks, index, "delta", "decimal", required=False),
        "gamma": g(greeks, index, "gamma", "decimal", required=False),
        "theta": g(greeks, index, "theta", "decimal", required=False),
        "vega": g(greeks, index, "vega", "decimal", required=False),
        "underlying_price": price,
        "et_offset": et_offset_minutes(ts),
        "source": NAME,
    }


class PolygonSource(MarketSource):
    """Polygon: stocks_1m (backfillable) and options (live chain snapshot only)."""

    name = NAME
    supported = frozenset({ArchiveType.STOCKS_1M, ArchiveType.OPTIONS})
    backfillable = frozenset({ArchiveType.STOCKS_1M})

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.polygon.io",
        *,
        http: VendorHttpClient | None = None,
        timeout: float = 15.0,
        deadline: float | None = None,
        snapshot_tolerance: timedelta = timedelta(minutes=5),
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        if not api_key:
            raise ValueError(f"{NAME}: an API key is required (set {KEY_ENV_VAR})")
        self.http = http or build_http(api_key, base_url, timeout=timeout, deadline=deadline)
        self.snapshot_tolerance = snapshot_tolerance
        self._now = now

    def close(self) -> None:
        self.http.close()

    def fetch_pages(self, path: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """All ``results`` of a paginated endpoint, following ``next_url`` to the end."""
        out: list[Mapping[str, Any]] = []
        url: str | None = path
        query: Mapping[str, Any] | None = params
        for _ in range(MAX_PAGES):
            payload = self.http.get_json(url, query)
            reader = PayloadReader(NAME, self.http.endpoint(url, query), self.http.redact)
            status = payload.get("status") if isinstance(payload, Mapping) else None
            if status not in OK_STATUSES:
                raise reader.fail(None, payload, f"field 'status' is {status!r}, expected OK or DELAYED")
            out += reader.rows(payload, "results") if "results" in payload else []
            url, query = payload.get("next_url"), None
            if not url:
                return out
        raise reader.fail(None, {}, f"next_url chain longer than {MAX_PAGES} pages")

    # -- stocks_1m ------------------------------------------------------------------------
    def fetch_stocks_1m(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """Regular-session one-minute bars; one row per symbol per minute (bar start)."""
        rows: list[dict[str, Any]] = []
        for sym in [normalise_us_ticker(s) for s in symbols]:  # all checked before any request
            d = path_segment(day.isoformat())
            path = f"/v2/aggs/ticker/{path_segment(sym)}/range/1/minute/{d}/{d}"
            params = {"adjusted": "true", "sort": "asc", "limit": 50000}
            results = self.fetch_pages(path, params)
            reader = PayloadReader(NAME, self.http.endpoint(path, params), self.http.redact)
            bars = {r["timestamp"]: r for r in normalise_minute_bars(results, sym, day, reader)}
            if not bars:
                raise EmptySession(
                    f"{NAME}: no regular-session minute bars for {sym} on {day} "
                    f"({len(results)} bar(s) outside the session)"
                )
            rows += bars.values()
        rows.sort(key=lambda r: (r["symbol"], r["timestamp"]))
        return validate_table(table_from_rows(rows, ArchiveType.STOCKS_1M), "stocks_1m", NAME)

    # -- options --------------------------------------------------------------------------
    def fetch_options(
        self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]
    ) -> pa.Table:
        """The chain of each underlying now, labelled with ``snapshot_times`` (which must be now).

        The snapshot endpoint only knows the present: a snapshot time further than
        ``snapshot_tolerance`` from now raises ``SnapshotNotReproducible``.
        """
        now = self._now()
        symbols = [normalise_us_ticker(s) for s in symbols]
        for snap in snapshot_times:
            if abs(now - snap) > self.snapshot_tolerance:
                raise SnapshotNotReproducible(
                    f"{NAME}: option chain snapshots are live only; cannot produce the snapshot of "
                    f"{snap.isoformat()} at {now.isoformat()} (tolerance {self.snapshot_tolerance}); "
                    "use a source with option history (thetadata) to backfill"
                )
        rows: list[dict[str, Any]] = []
        for sym in [normalise_us_ticker(s) for s in symbols]:
            path = f"/v3/snapshot/options/{path_segment(sym)}"
            params = {"limit": 250}
            results = self.fetch_pages(path, params)
            if not results:
                raise EmptySession(f"{NAME}: {path} returned no option contracts for {sym}")
            reader = PayloadReader(NAME, self.http.endpoint(path, params), self.http.redact)
            for snap in snapshot_times:
                # a contract repeated across pages (the chain moved while we paged) is kept once
                chain = {}
                for i, r in enumerate(results):
                    row = normalise_option_snapshot(r, i, sym, snap, now, reader)
                    chain[(row["expiry"], row["strike"], row["right"])] = row
                rows += chain.values()
        rows.sort(key=lambda r: (r["symbol"], r["snapshot_time"], r["expiry"], r["strike"], r["right"]))
        return validate_table(table_from_rows(rows, ArchiveType.OPTIONS), "options", NAME)
