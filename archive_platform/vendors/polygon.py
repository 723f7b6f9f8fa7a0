"""Polygon.io (Massive) REST client: one-minute stock bars (stocks_1m), option-chain
snapshots (options, live only) and ``I:VIX`` index bars (vix, in ``vendors/vix.py``).

Facts used (vendor's API documentation): key in the ``apiKey`` query param; responses carry
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
from archive_platform.vendors.payload import (
    Count,
    Dec,
    EpochMs,
    Int,
    PayloadReader,
    Row,
    Str,
    table_from_rows,
    validate_table,
)
from archive_platform.vendors.payload import Date as DateField
from archive_platform.vendors.vix import PolygonVix

NAME = "polygon"
#: index underlyings whose option chains Polygon may list under the "I:" ticker (I:SPX)
INDEX_UNDERLYINGS = frozenset({"SPX", "NDX", "RUT", "VIX", "XSP", "DJX", "OEX", "XND"})
KEY_ENV_VAR = "POLYGON_API_KEY"
OK_STATUSES = {"OK", "DELAYED"}  # DELAYED: plans without real-time data; the shape is the same
MAX_PAGES = 1000  # a cursor chain longer than this is a vendor bug, not a big day
#: retried besides the shared 429/500/502/503/504: Polygon's own Python client
#: (github.com/polygon-io/client-python, ``polygon/rest/base.py``, now ``massive/rest/base.py``:
#: urllib3 ``Retry(status_forcelist=[413, 429, 499, 500, 502, 503, 504])``) also retries 413 and
#: 499, so Polygon answers them transiently; refusing them at once failed a whole fetch
RETRY_STATUSES = frozenset({413, 499})


def _ns(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1e9, tz=timezone.utc)


def build_http(api_key: str, base_url: str = "https://api.polygon.io", **overrides: Any) -> VendorHttpClient:
    """The Polygon HTTP client: ``apiKey`` query auth (redacted everywhere).

    No default rate limit (paid plans are unmetered, ~100 req/s soft); the free tier needs
    ``limiter=limiter_for("polygon", 5 / 60)``.
    """
    options: dict[str, Any] = {
        "secret_params": {"apiKey": api_key},
        "key_env_var": KEY_ENV_VAR,
        "retry_statuses": RETRY_STATUSES,
    }
    return VendorHttpClient(NAME, base_url, **{**options, **overrides})


class MinuteBar(Row):
    """One aggregate: ``t`` bar start (epoch ms), prices and ``v`` doubles, ``vw``/``n`` optional."""

    t: EpochMs
    o: Dec
    h: Dec
    l: Dec  # noqa: E741 (the API's name)
    c: Dec
    v: Dec
    vw: Dec | None = None
    n: Count | None = None


class _Details(Row):
    contract_type: Str
    expiration_date: DateField
    strike_price: Dec


class _Quote(Row):
    bid: Dec | None = None
    ask: Dec | None = None
    last_updated: Int | None = None


class _Trade(Row):
    price: Dec | None = None
    sip_timestamp: Int | None = None


class _Day(Row):
    volume: Count | None = None


class _Greeks(Row):
    delta: Dec | None = None
    gamma: Dec | None = None
    theta: Dec | None = None
    vega: Dec | None = None


class _Underlying(Row):
    price: Dec | None = None
    value: Dec | None = None  # indices report ``value`` instead of ``price``
    change_to_break_even: Dec | None = None  # break_even_price - the underlying's price


class OptionSnapshot(Row):
    """One chain-snapshot result; greeks, quote, trade, day and IV are omitted when unknown."""

    details: _Details
    underlying_asset: _Underlying
    last_quote: _Quote | None = None
    last_trade: _Trade | None = None
    day: _Day | None = None
    greeks: _Greeks | None = None
    open_interest: Count | None = None
    implied_volatility: Dec | None = None
    break_even_price: Dec | None = None


def normalise_minute_bars(
    results: Sequence[Mapping[str, Any]], symbol: str, day: date, reader: PayloadReader
) -> list[dict[str, Any]]:
    """Polygon minute aggregates -> stocks_1m rows of the regular session of ``day``.

    Pre- and post-market bars are dropped. ``v`` is a double in the API; adjusted volumes can be
    fractional after splits, so it is rounded to the nearest share.
    """
    s = session(day)
    out = []
    for bar in reader.models(results, MinuteBar):
        if not s.open_utc <= bar.t < s.close_utc:
            continue
        out.append(
            {
                "timestamp": bar.t,
                "symbol": symbol,
                "open": bar.o,
                "high": bar.h,
                "low": bar.l,
                "close": bar.c,
                "volume": round(bar.v),
                "vwap": bar.vw,
                "trade_count": bar.n,
                "et_offset": et_offset_minutes(bar.t),
                "source": NAME,
            }
        )
    return out


def normalise_option_snapshot(
    row: Mapping[str, Any], index: int, symbol: str, snapshot_time: datetime,
    fetched_at: datetime, reader: PayloadReader, snap: OptionSnapshot | None = None,
    chain_price: float | None = None,
) -> dict[str, Any]:
    """One chain-snapshot result -> one options row (``snap``: ``row`` already validated).

    ``timestamp`` is the newest of the quote and trade update times (ns), else the fetch
    instant. Greeks are omitted by Polygon when not computable: they become nulls.
    The underlying's price: ``underlying_asset.price`` (``value`` for indices); the API marks
    it optional, so else ``break_even_price - underlying_asset.change_to_break_even`` (how the
    API defines that change), else ``chain_price`` (another contract of the same chain).
    """
    s = snap if snap is not None else reader.model(row, index, OptionSnapshot)
    kind = s.details.contract_type
    if kind not in ("call", "put"):
        raise reader.fail(index, row, f"field 'details.contract_type' is {kind!r}, expected call/put")
    u = s.underlying_asset
    price = u.price if u.price is not None else u.value
    if price is None and s.break_even_price is not None and u.change_to_break_even is not None:
        price = round(s.break_even_price - u.change_to_break_even, 6)
    if price is None:
        price = chain_price
    if price is None:
        raise reader.fail(index, row, "missing field 'underlying_asset.price' (and no 'value', no "
                          "break-even price and no other contract of the chain with a price)")
    quote, trade = s.last_quote or _Quote(), s.last_trade or _Trade()
    greeks, day = s.greeks or _Greeks(), s.day or _Day()
    times = [t for t in (_ns(quote.last_updated), _ns(trade.sip_timestamp)) if t is not None]
    ts = max(times) if times else fetched_at
    return {
        "timestamp": ts,
        "snapshot_time": snapshot_time,
        "symbol": symbol,
        "expiry": s.details.expiration_date,
        "strike": s.details.strike_price,
        "right": "C" if kind == "call" else "P",
        "bid": quote.bid,
        "ask": quote.ask,
        "last": trade.price,
        "volume": day.volume,
        "open_interest": s.open_interest,
        "iv": s.implied_volatility,
        "delta": greeks.delta,
        "gamma": greeks.gamma,
        "theta": greeks.theta,
        "vega": greeks.vega,
        "underlying_price": price,
        "et_offset": et_offset_minutes(ts),
        "source": NAME,
    }


class PolygonSource(PolygonVix, MarketSource):
    """Polygon: stocks_1m and vix (backfillable), options (live chain snapshot only)."""

    name = NAME
    supported = frozenset({ArchiveType.STOCKS_1M, ArchiveType.OPTIONS, ArchiveType.VIX})
    backfillable = frozenset({ArchiveType.STOCKS_1M, ArchiveType.VIX})

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
            if not results and sym in INDEX_UNDERLYINGS:
                # Polygon names indices with an "I:" prefix (I:VIX, I:SPX): ask under that name,
                # colon as is, as for I:VIX
                path = f"/v3/snapshot/options/I:{path_segment(sym)}"
                results = self.fetch_pages(path, params)
            if not results:
                raise EmptySession(f"{NAME}: {path} returned no option contracts for {sym}")
            reader = PayloadReader(NAME, self.http.endpoint(path, params), self.http.redact)
            parsed = reader.models(results, OptionSnapshot)
            chain_price = next((m.underlying_asset.price if m.underlying_asset.price is not None
                                else m.underlying_asset.value for m in parsed
                                if m.underlying_asset.price is not None or m.underlying_asset.value is not None), None)
            for snap in snapshot_times:
                # a contract repeated across pages (the chain moved while we paged) is kept once
                chain = {}
                for i, (r, m) in enumerate(zip(results, parsed)):
                    row = normalise_option_snapshot(r, i, sym, snap, now, reader, m, chain_price)
                    chain[(row["expiry"], row["strike"], row["right"])] = row
                rows += chain.values()
        rows.sort(key=lambda r: (r["symbol"], r["snapshot_time"], r["expiry"], r["strike"], r["right"]))
        return validate_table(table_from_rows(rows, ArchiveType.OPTIONS), "options", NAME)
