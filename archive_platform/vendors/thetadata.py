"""ThetaData source over the local Theta Terminal: v3 (default) or v2 REST API.

``api="v3"`` (Theta Terminal v3, ``http://127.0.0.1:25503/v3/...``, CSV answers; decoding in
``thetadata_v3.py``) or ``api="v2"`` (Theta Terminal v2, ``http://127.0.0.1:25510/v2/...``,
legacy JSON; decoding in ``thetadata_decode.py``); the setting is ``THETADATA_API``. Both give
the same canonical rows for the same market data. The v2 docs (https://http-docs.thetadata.us/)
and the v3 docs (https://docs.thetadata.us/) each cover their own terminal only.

No auth header: the terminal is logged in already and serves 127.0.0.1 only. Every request goes
through one ``VendorHttpClient`` bound to one host string, because the terminal answers 476
WRONG_IP when a session mixes ``127.0.0.1`` and ``localhost`` (v2 pagination URLs are re-rooted
on that host by the client for the same reason). Requests are sent one at a time: within the
smallest account's concurrency (v3: FREE 1 request in flight; more are queued, then 429).

Options: live snapshots join the bulk snapshot endpoints over every expiration per contract
(v2: quote, first-order greeks, second-order greeks for gamma, open interest; v3: quote,
``greeks/all`` (first and second order together), open interest); past snapshot instants come
from the history endpoints at a 15-minute interval, one expiration at a time (v2 ``exp=0`` is
only allowed at 1-minute intervals; v3 ``history/greeks`` takes one expiration), picking the row
stamped at each requested instant. Stocks: 1-minute OHLC history. Parsing always goes by column
names (v2 ``format``, v3 CSV header), never by position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta

import pyarrow as pa

from archive_platform import calendar as cal
from archive_platform.schemas import OPTIONS_SCHEMA, STOCKS_1M_SCHEMA, ArchiveType
from archive_platform.sources.base import EmptySession, MarketSource
from archive_platform.symbols import normalise_us_ticker
from archive_platform.vendors import thetadata_v3 as v3
from archive_platform.vendors.errors import VendorError
from archive_platform.vendors.http import VendorHttpClient
from archive_platform.vendors.vix import ThetaDataVix
# the pure decoding lives in thetadata_decode; its names stay importable from here
from archive_platform.vendors.thetadata_decode import (  # noqa: F401
    UTC,
    VENDOR,
    Key,
    _row_time,
    et_ms_to_utc,
    iter_bulk_rows,
    iter_rows,
    normalise_option_rows,
    normalise_stock_bars,
    parse_envelope,
    parse_yyyymmdd,
    pick_at,
)

log = logging.getLogger(__name__)
#: the setting that picks the terminal's API, its values and each one's default base URL
API_SETTING = "THETADATA_API"
DEFAULT_BASE_URLS = {"v3": "http://127.0.0.1:25503", "v2": "http://127.0.0.1:25510"}
APIS = tuple(DEFAULT_BASE_URLS)
NO_DATA = 472
# 570 LARGE_REQUEST is not retried: the same request would be refused again. It is narrowed.
# 477 NO_PAGE_FOUND is retried: a v2 next_page the terminal has not produced yet answers 477 too
# ("a page that was discarded or that does not exist yet",
# https://http-docs.thetadata.us/Articles/Performance-And-Tuning/Pagination.html).
RETRY_STATUSES = frozenset({429, 470, 474, 477, 571})
LARGE_REQUEST = 570
IVL_15M = 900_000
# Status meanings from the "Error-Codes" pages (v2 and v3 share them), with what to do about each.
STATUS_MEANINGS = {
    404: "NO_IMPL: the terminal does not implement this endpoint (update the terminal?)",
    429: "OS_LIMIT: too many requests in flight or queued at the terminal",
    470: "GENERAL: a general terminal error",
    471: "PERMISSION: your ThetaData subscription does not include this data",
    473: "INVALID_PARAMS: the request parameters are invalid",
    474: "DISCONNECTED: the terminal lost its connection to ThetaData's servers",
    475: "TERMINAL_PARSE: the terminal could not parse the request",
    476: "WRONG_IP: requests arrived under two host strings; keep one host string "
    "(e.g. always 127.0.0.1, never also localhost) for the whole session",
    477: "NO_PAGE_FOUND: a next_page that does not exist (yet) or expired before it was fetched",
    478: "INVALID_SESSION_ID: is more than one terminal running?",
    570: "LARGE_REQUEST: the request is too large; narrow it",
    571: "SERVER_STARTING: ThetaData's servers are starting",
    572: "UNCAUGHT_ERROR: an uncaught terminal error",
}
# a terminal of the other version answers 404 to every path: say which setting to change
WRONG_VERSION = {
    "v3": f"; is this a v3 terminal (ThetaTerminalv3, port 25503)? For a v2 terminal set {API_SETTING}=v2",
    "v2": f"; is this a v2 terminal (port 25510)? For Theta Terminal v3 set {API_SETTING}=v3",
}


def check_api(api: str) -> str:
    """``v3`` or ``v2``; anything else is a ValueError naming the setting."""
    value = str(api).strip().lower()
    if value not in APIS:
        raise ValueError(f"{API_SETTING}={api!r} is not supported; choose one of: {', '.join(APIS)}")
    return value


class RequestTooLarge(VendorError):
    """570 LARGE_REQUEST: the terminal wants a narrower request (fewer expirations or days)."""


# -- the source ------------------------------------------------------------------------------


class ThetaDataSource(ThetaDataVix, MarketSource):
    """Options (live and backfill), stocks_1m and vix from a local Theta Terminal (v3 or v2).

    Grains: options one row per contract per snapshot; stocks_1m one row per symbol per
    regular-session minute; vix one row per snapshot (``vendors/vix.py``).
    """

    name = VENDOR
    supported = frozenset({ArchiveType.OPTIONS, ArchiveType.STOCKS_1M, ArchiveType.VIX})
    backfillable = frozenset({ArchiveType.OPTIONS, ArchiveType.STOCKS_1M, ArchiveType.VIX})

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api: str = "v3",
        http: VendorHttpClient | None = None,
        timeout: float = 60.0,
        deadline: float | None = None,
        live_tolerance: timedelta = timedelta(minutes=10),
        max_dte: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = check_api(api)
        base_url = base_url or DEFAULT_BASE_URLS[self.api]
        self.http = http or VendorHttpClient(
            VENDOR, base_url, timeout=timeout, deadline=deadline, retry_statuses=RETRY_STATUSES,
            empty_statuses={NO_DATA},
        )
        if NO_DATA not in self.http.empty_statuses:
            raise ValueError("the ThetaData http client must treat 472 NO_DATA as an empty answer")
        self.live_tolerance, self.max_dte, self._clock = live_tolerance, max_dte, clock

    # -- transport -------------------------------------------------------------------------
    def _explain(self, exc: VendorError, endpoint: str) -> VendorError:
        """``exc`` with the meaning of the terminal's status (its own text is already in it)."""
        meaning = STATUS_MEANINGS.get(exc.status or 0)
        if meaning is None and exc.status is None and "connection error" in str(exc):
            # nothing listens there: often a terminal of the other version, on its own port
            port = DEFAULT_BASE_URLS[self.api].rsplit(":", 1)[1]
            return VendorError(f"{exc} [is the Theta Terminal running and logged in? The {self.api} "
                               f"terminal listens on port {port} unless {API_SETTING}/THETADATA_BASE_URL say "
                               f"otherwise{WRONG_VERSION[self.api]}]", vendor=VENDOR,
                               endpoint=exc.endpoint or endpoint, status=None, refused=exc.refused)
        if meaning is None:  # timeouts, breaker refusals, payload errors: already clear
            return exc
        if exc.status == 404:
            meaning += WRONG_VERSION[self.api]
        cls = RequestTooLarge if exc.status == LARGE_REQUEST else VendorError
        return cls(f"{exc} [{VENDOR} {exc.status} {meaning}]", vendor=VENDOR,
                   endpoint=exc.endpoint or endpoint, status=exc.status, refused=exc.refused)

    def _pages(self, path: str, params: dict) -> Iterator[tuple[list[str], list, str]]:
        """v2: every page of one request, following ``header.next_page`` at once (pages expire).

        The pages are gathered before any is handed on: a next_page still missing after the
        retries (477: discarded once older than the terminal's HTTP_PAGE_EXPIRE,
        https://http-docs.thetadata.us/Articles/Performance-And-Tuning/Pagination.html) restarts
        the request from its first page once, so no page is lost and none is counted twice."""
        for attempt in (1, 2):
            pages: list[tuple[list[str], list, str]] = []
            target: str | None = path
            while target is not None:
                first = not pages
                endpoint = path if first else f"{path} (next_page {target})"
                try:
                    payload = self.http.get_json(target, params if first else None)
                except VendorError as exc:
                    if exc.status == 477 and not first and attempt == 1:
                        log.warning("thetadata: %s: a next_page expired (477) after %d page(s); "
                                    "asking for the whole answer again", path, len(pages))
                        break
                    raise self._explain(exc, endpoint) from exc
                if payload is None:  # 472 NO_DATA
                    target = None
                    break
                fmt, response, target = parse_envelope(payload, endpoint)
                pages.append((fmt, response, endpoint))
            if target is None:
                yield from pages
                return

    def _csv(self, path: str, params: dict) -> tuple[list[dict], str]:
        """v3: the rows of one CSV answer (``[]`` for 472 NO_DATA) and the endpoint asked."""
        params = {**params, "format": "csv"}
        endpoint = self.http.endpoint(path, params)
        try:
            response = self.http.get(path, params)
        except VendorError as exc:
            raise self._explain(exc, endpoint) from exc
        if self.http.is_empty(response):
            return [], endpoint
        return v3.parse_csv(response.text, endpoint, v3.REQUIRED[path]), endpoint

    def _bulk(self, path: str, params: dict) -> dict[Key, list[tuple[datetime | None, dict]]]:
        """Per contract, its rows with their UTC instants (None: the row carries no time)."""
        out: dict[Key, list[tuple[datetime | None, dict]]] = {}
        if self.api == "v3":
            rows, endpoint = self._csv(path, params)
            for key, row in v3.contract_rows(rows, endpoint):
                out.setdefault(key, []).append((row.get("timestamp"), row))
            return out
        for fmt, response, endpoint in self._pages(path, params):
            for key, row in iter_bulk_rows(fmt, response, endpoint):
                out.setdefault(key, []).append((_row_time(row, endpoint) if "ms_of_day" in row else None, row))
        return out

    def _chain_params(self, symbol: str, exp: date | None) -> dict:
        """symbol + one expiration (None: every expiration) in this API's spelling."""
        if self.api == "v3":
            return {"symbol": symbol, "expiration": "*" if exp is None else f"{exp:%Y%m%d}"}
        return {"root": symbol, "exp": 0 if exp is None else int(f"{exp:%Y%m%d}")}

    # -- options ---------------------------------------------------------------------------
    def fetch_options(self, day: date, symbols: Sequence[str], snapshot_times: Sequence[datetime]) -> pa.Table:
        """Option chains at each instant: live bulk snapshots for now, 15-min history for the past."""
        symbols = [normalise_us_ticker(s) for s in symbols]
        now = self._clock()
        for t in snapshot_times:
            if cal.market_date(t) != day:
                raise ValueError(f"snapshot time {t.isoformat()} is not on {day.isoformat()}")
        live = [t for t in snapshot_times if abs(now - t) <= self.live_tolerance]
        past = [t for t in snapshot_times if now - t > self.live_tolerance]
        if len(live) + len(past) != len(snapshot_times):
            raise ValueError(f"snapshot times in the future (now {now.isoformat()}): cannot fetch them yet")
        rows: list[dict] = []
        for symbol in symbols:
            found: list[dict] = []
            for t in live:
                found += self._live_rows(symbol, t)
            if past:
                found += self._history_rows(day, symbol, past)
            if snapshot_times and not found:
                # per symbol: 472 NO_DATA for one underlying of several must not store a day
                # without it as if complete
                raise EmptySession(f"thetadata returned no option data for {symbol} on {day}")
            rows += found
        return pa.Table.from_pylist(rows, schema=OPTIONS_SCHEMA)

    def _every_expiration(self, path: str, symbol: str, day: date) -> dict[Key, list[tuple[datetime | None, dict]]]:
        """A bulk snapshot over every expiration (v2 ``exp=0``, v3 ``expiration=*``); narrowed to
        one request per expiration when the terminal answers 570 LARGE_REQUEST (a busy chain
        such as SPX)."""
        try:
            everything = self._bulk(path, self._chain_params(symbol, None))
            # the same expirations as the narrowed path and the history (max_dte): which
            # contracts a snapshot holds must not depend on whether the terminal answered 570
            last = None if self.max_dte is None else day + timedelta(days=self.max_dte)
            return {k: v for k, v in everything.items() if last is None or k[0] <= last}
        except RequestTooLarge as exc:
            exps = self._expirations(symbol, day)
            log.warning("thetadata: %s over every expiration of %s is too large (570); narrowing "
                        "to %d single-expiration requests", path, symbol, len(exps))
            if not exps:
                raise VendorError(f"{exc}; no expiration of {symbol} on or after {day} to narrow it to",
                                  vendor=VENDOR, endpoint=exc.endpoint, status=exc.status) from exc
        out: dict[Key, list[tuple[datetime | None, dict]]] = {}
        for exp in exps:
            try:
                out.update(self._bulk(path, self._chain_params(symbol, exp)))
            except RequestTooLarge as exc:
                raise VendorError(f"{exc}; one expiration ({exp:%Y%m%d}) is the narrowest request this "
                                  "client makes: raise the terminal's limits or set max_dte",
                                  vendor=VENDOR, endpoint=exc.endpoint, status=exc.status) from exc
        return out

    def _live_rows(self, symbol: str, snapshot_time: datetime) -> list[dict]:
        day = cal.market_date(snapshot_time)
        paths = PATHS[self.api]
        last = lambda path: {k: v[-1][1] for k, v in self._every_expiration(path, symbol, day).items()}  # noqa: E731
        return normalise_option_rows(
            symbol,
            snapshot_time,
            last(paths["quote"]),
            last(paths["greeks"]),
            last(paths["second"]) if paths["second"] else {},  # v3 greeks/all carries gamma
            last(paths["oi"]),
        )

    def _expirations(self, symbol: str, day: date) -> list[date]:
        """The expirations of ``symbol`` from ``day`` on (within ``max_dte`` days when set)."""
        exps: list[date] = []
        if self.api == "v3":
            rows, endpoint = self._csv(v3.EXPIRATIONS, {"symbol": symbol})
            for line, row in enumerate(rows, start=2):
                try:
                    exps.append(v3.parse_date(row["expiration"], f"row {line}"))
                except ValueError as exc:
                    raise v3._payload(endpoint, str(exc)) from None
        else:
            for fmt, response, endpoint in self._pages("/v2/list/expirations", {"root": symbol}):
                for v in response:
                    # list endpoints answer a flat list of ints; tolerate [[int]] rows as well
                    v = v[0] if isinstance(v, list) and len(v) == 1 else v
                    exps.append(parse_yyyymmdd(v, endpoint))
        last = None if self.max_dte is None else day + timedelta(days=self.max_dte)
        return sorted({e for e in exps if e >= day and (last is None or e <= last)})

    def _history_rows(self, day: date, symbol: str, instants: Sequence[datetime]) -> list[dict]:
        paths = PATHS[self.api]
        if self.api == "v3":
            span, ivl = {"date": f"{day:%Y%m%d}"}, {"interval": "15m"}
        else:
            d = int(f"{day:%Y%m%d}")
            span, ivl = {"start_date": d, "end_date": d}, {"ivl": IVL_15M}
        quotes: dict[Key, list] = {}
        greeks: dict[Key, list] = {}
        oi: dict[Key, dict] = {}
        for exp in self._expirations(symbol, day):
            # one expiration at a time: v2 allows exp=0 only at ivl=60000 (vendor's API
            # documentation); v3 history/greeks takes one expiration, not *
            chain = self._chain_params(symbol, exp)
            quotes.update(self._bulk(paths["quote_history"], {**chain, **span, **ivl}))
            # v2 all_greeks (Pro tier) carries gamma next to the first-order greeks; its exact
            # column list is UNVERIFIED, so every greek is read by name and may be absent
            greeks.update(self._bulk(paths["greeks_history"], {**chain, **span, **ivl}))
            oi.update(self._history_open_interest(paths["oi_history"], {**chain, **span}))
        rows = []
        for t in instants:
            at = lambda table: {k: r for k, v in table.items() if (r := pick_at(v, t, IVL_15M)) is not None}  # noqa: E731
            rows += normalise_option_rows(symbol, t, at(quotes), at(greeks), {}, oi)
        return rows

    def _history_open_interest(self, path: str, params: dict) -> dict[Key, dict]:
        # UNVERIFIED (v2): bulk_hist/option/open_interest's parameters are assumed to mirror the
        # other bulk_hist endpoints; OI is optional in the schema, so a refusal only warns.
        try:
            table = self._bulk(path, params)
        except VendorError as exc:
            if exc.status not in (404, 473):
                raise
            log.warning("thetadata: open interest history unavailable (%s); leaving it null", exc)
            return {}
        return {k: v[-1][1] for k, v in table.items() if v}

    # -- stocks_1m -------------------------------------------------------------------------
    def fetch_stocks_1m(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """Regular-session one-minute bars of ``day``: one row per symbol per minute."""
        rows: list[dict] = []
        for symbol in [normalise_us_ticker(s) for s in symbols]:
            before = len(rows)
            self._stock_rows(symbol, day, rows)
            if len(rows) == before:
                # per symbol: 472 NO_DATA for one symbol of several must not store a day
                # without it as if complete
                raise EmptySession(f"thetadata returned no one-minute bars for {symbol} on {day}")
        return pa.Table.from_pylist(rows, schema=STOCKS_1M_SCHEMA)

    def _stock_rows(self, symbol: str, day: date, rows: list[dict]) -> None:
        """Append the regular-session one-minute bars of ``symbol`` on ``day`` to ``rows``."""
        d = int(f"{day:%Y%m%d}")
        if self.api == "v3":
            # venue: the v3 default is nqb (Nasdaq Basic: one venue's trades, not the whole
            # market); utp_cta is the merged UTP & CTA tape, the consolidated SIP bars v2 gives
            # (https://docs.thetadata.us/operations/stock_history_ohlc.html)
            bars, endpoint = self._csv(v3.STOCK_OHLC, {"symbol": symbol, "date": d, "interval": "1m",
                                                       "venue": v3.STOCK_VENUE})
            bars = [v3.decode_row(b, endpoint, line) for line, b in enumerate(bars, start=2)]
            rows += normalise_stock_bars(symbol, bars, day, endpoint)
            return
        params = {"root": symbol, "start_date": d, "end_date": d, "ivl": 60_000}
        for fmt, response, endpoint in self._pages("/v2/hist/stock/ohlc", params):
            rows += normalise_stock_bars(symbol, list(iter_rows(fmt, response, endpoint)), day, endpoint)

    def close(self) -> None:
        self.http.close()


#: the option endpoints per API (v3 has no separate second-order call: greeks/all has gamma)
PATHS = {
    "v2": {
        "quote": "/v2/bulk_snapshot/option/quote",
        "greeks": "/v2/bulk_snapshot/option/greeks",
        "second": "/v2/bulk_snapshot/option/greeks_second_order",
        "oi": "/v2/bulk_snapshot/option/open_interest",
        "quote_history": "/v2/bulk_hist/option/quote",
        "greeks_history": "/v2/bulk_hist/option/all_greeks",
        "oi_history": "/v2/bulk_hist/option/open_interest",
    },
    "v3": {
        "quote": v3.QUOTE_SNAPSHOT,
        "greeks": v3.GREEKS_SNAPSHOT,
        "second": None,
        "oi": v3.OI_SNAPSHOT,
        "quote_history": v3.QUOTE_HISTORY,
        "greeks_history": v3.GREEKS_HISTORY,
        "oi_history": v3.OI_HISTORY,
    },
}
