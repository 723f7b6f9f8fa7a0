"""ThetaData source over the local Theta Terminal's v2 REST API (vendor's API documentation).

No auth header: the terminal is logged in already and serves 127.0.0.1 only. Every request goes
through one ``VendorHttpClient`` bound to one host string, because the terminal answers 476
WRONG_IP when a session mixes ``127.0.0.1`` and ``localhost`` (pagination URLs are re-rooted on
that host by the client for the same reason).

Options: live snapshots join four bulk snapshot endpoints (quote, first-order greeks,
second-order greeks for gamma, open interest) per contract; past snapshot instants come from
the bulk history endpoints at a 15-minute interval, one expiration at a time (``exp=0`` is only
allowed at 1-minute intervals), picking the row stamped at each requested instant. Stocks:
1-minute OHLC history. Parsing always goes by the ``format`` column names, never by position.
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
NO_DATA = 472
# 570 LARGE_REQUEST is not retried: the same request would be refused again. It is narrowed.
RETRY_STATUSES = frozenset({429, 470, 474, 571})
LARGE_REQUEST = 570
IVL_15M = 900_000
# Status meanings from the v2 "Error-Codes" page, with what to do about each.
STATUS_MEANINGS = {
    404: "NO_IMPL: the terminal does not implement this endpoint (update the terminal?)",
    470: "GENERAL: a general terminal error",
    471: "PERMISSION: your ThetaData subscription does not include this data",
    473: "INVALID_PARAMS: the request parameters are invalid",
    474: "DISCONNECTED: the terminal lost its connection to ThetaData's servers",
    475: "TERMINAL_PARSE: the terminal could not parse the request",
    476: "WRONG_IP: requests arrived under two host strings; keep one host string "
    "(e.g. always 127.0.0.1, never also localhost) for the whole session",
    477: "NO_PAGE_FOUND: a next_page expired before it was fetched",
    570: "LARGE_REQUEST: the request is too large; narrow it",
    571: "SERVER_STARTING: ThetaData's servers are starting",
    572: "UNCAUGHT_ERROR: an uncaught terminal error",
}


class RequestTooLarge(VendorError):
    """570 LARGE_REQUEST: the terminal wants a narrower request (fewer expirations or days)."""


# -- the source ------------------------------------------------------------------------------


class ThetaDataSource(ThetaDataVix, MarketSource):
    """Options (live and backfill), stocks_1m and vix from a local Theta Terminal (v2).

    Grains: options one row per contract per snapshot; stocks_1m one row per symbol per
    regular-session minute; vix one row per snapshot (``vendors/vix.py``).
    """

    name = VENDOR
    supported = frozenset({ArchiveType.OPTIONS, ArchiveType.STOCKS_1M, ArchiveType.VIX})
    backfillable = frozenset({ArchiveType.OPTIONS, ArchiveType.STOCKS_1M, ArchiveType.VIX})

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:25510",
        *,
        http: VendorHttpClient | None = None,
        timeout: float = 60.0,
        deadline: float | None = None,
        live_tolerance: timedelta = timedelta(minutes=10),
        max_dte: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.http = http or VendorHttpClient(
            VENDOR, base_url, timeout=timeout, deadline=deadline, retry_statuses=RETRY_STATUSES,
            empty_statuses={NO_DATA},
        )
        if NO_DATA not in self.http.empty_statuses:
            raise ValueError("the ThetaData http client must treat 472 NO_DATA as an empty answer")
        self.live_tolerance, self.max_dte, self._clock = live_tolerance, max_dte, clock

    # -- transport -------------------------------------------------------------------------
    def _pages(self, path: str, params: dict) -> Iterator[tuple[list[str], list, str]]:
        """Every page of one request, following ``header.next_page`` at once (pages expire)."""
        target: str | None = path
        first = True
        while target is not None:
            endpoint = path if first else f"{path} (next_page {target})"
            try:
                payload = self.http.get_json(target, params if first else None)
            except VendorError as exc:
                meaning = STATUS_MEANINGS.get(exc.status or 0)
                if meaning is None:  # timeouts, breaker refusals, payload errors: already clear
                    raise
                cls = RequestTooLarge if exc.status == LARGE_REQUEST else VendorError
                raise cls(f"{exc} [{VENDOR} {exc.status} {meaning}]", vendor=VENDOR,
                          endpoint=exc.endpoint, status=exc.status, refused=exc.refused) from exc
            if payload is None:  # 472 NO_DATA
                return
            fmt, response, target = parse_envelope(payload, endpoint)
            first = False
            yield fmt, response, endpoint

    def _bulk(self, path: str, params: dict) -> dict[Key, list[tuple[datetime, dict]]]:
        out: dict[Key, list[tuple[datetime, dict]]] = {}
        for fmt, response, endpoint in self._pages(path, params):
            for key, row in iter_bulk_rows(fmt, response, endpoint):
                out.setdefault(key, []).append((_row_time(row, endpoint) if "ms_of_day" in row else None, row))
        return out

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
            for t in live:
                rows += self._live_rows(symbol, t)
            if past:
                rows += self._history_rows(day, symbol, past)
        if symbols and snapshot_times and not rows:
            raise EmptySession(f"thetadata returned no option data for {', '.join(symbols)} on {day}")
        return pa.Table.from_pylist(rows, schema=OPTIONS_SCHEMA)

    def _every_expiration(self, path: str, symbol: str, day: date) -> dict[Key, list[tuple[datetime, dict]]]:
        """A bulk snapshot over every expiration (``exp=0``); narrowed to one request per
        expiration when the terminal answers 570 LARGE_REQUEST (a busy chain such as SPX)."""
        try:
            return self._bulk(path, {"root": symbol, "exp": 0})
        except RequestTooLarge as exc:
            exps = self._expirations(symbol, day)
            log.warning("thetadata: %s exp=0 for %s is too large (570); narrowing to %d "
                        "single-expiration requests", path, symbol, len(exps))
            if not exps:
                raise VendorError(f"{exc}; no expiration of {symbol} on or after {day} to narrow it to",
                                  vendor=VENDOR, endpoint=exc.endpoint, status=exc.status) from exc
        out: dict[Key, list[tuple[datetime, dict]]] = {}
        for exp in exps:
            try:
                out.update(self._bulk(path, {"root": symbol, "exp": exp}))
            except RequestTooLarge as exc:
                raise VendorError(f"{exc}; one expiration ({exp}) is the narrowest request this "
                                  "client makes: raise the terminal's limits or set max_dte",
                                  vendor=VENDOR, endpoint=exc.endpoint, status=exc.status) from exc
        return out

    def _live_rows(self, symbol: str, snapshot_time: datetime) -> list[dict]:
        day = cal.market_date(snapshot_time)
        last = lambda path: {k: v[-1][1] for k, v in self._every_expiration(path, symbol, day).items()}  # noqa: E731
        return normalise_option_rows(
            symbol,
            snapshot_time,
            last("/v2/bulk_snapshot/option/quote"),
            last("/v2/bulk_snapshot/option/greeks"),
            last("/v2/bulk_snapshot/option/greeks_second_order"),
            last("/v2/bulk_snapshot/option/open_interest"),
        )

    def _expirations(self, symbol: str, day: date) -> list[int]:
        exps: list[int] = []
        for fmt, response, endpoint in self._pages("/v2/list/expirations", {"root": symbol}):
            for v in response:
                # list endpoints answer a flat list of ints; tolerate [[int]] rows as well
                v = v[0] if isinstance(v, list) and len(v) == 1 else v
                exp = parse_yyyymmdd(v, endpoint)
                if exp >= day and (self.max_dte is None or exp <= day + timedelta(days=self.max_dte)):
                    exps.append(int(v))
        return sorted(set(exps))

    def _history_rows(self, day: date, symbol: str, instants: Sequence[datetime]) -> list[dict]:
        d = int(f"{day:%Y%m%d}")
        quotes: dict[Key, list] = {}
        greeks: dict[Key, list] = {}
        oi: dict[Key, dict] = {}
        for exp in self._expirations(symbol, day):
            # exp=0 is only allowed at ivl=60000, so one expiration at a time (vendor's API documentation)
            params = {"root": symbol, "exp": exp, "start_date": d, "end_date": d, "ivl": IVL_15M}
            quotes.update(self._bulk("/v2/bulk_hist/option/quote", params))
            # all_greeks (Pro tier) carries gamma next to the first-order greeks; its exact
            # column list is UNVERIFIED, so every greek is read by name and may be absent
            greeks.update(self._bulk("/v2/bulk_hist/option/all_greeks", params))
            oi.update(self._history_open_interest(symbol, exp, d))
        rows = []
        for t in instants:
            at = lambda table: {k: r for k, v in table.items() if (r := pick_at(v, t, IVL_15M)) is not None}  # noqa: E731
            rows += normalise_option_rows(symbol, t, at(quotes), at(greeks), {}, oi)
        return rows

    def _history_open_interest(self, symbol: str, exp: int, d: int) -> dict[Key, dict]:
        # UNVERIFIED: bulk_hist/option/open_interest's parameters are assumed to mirror the
        # other bulk_hist endpoints; OI is optional in the schema, so a refusal only warns.
        params = {"root": symbol, "exp": exp, "start_date": d, "end_date": d}
        try:
            table = self._bulk("/v2/bulk_hist/option/open_interest", params)
        except VendorError as exc:
            if exc.status not in (404, 473):
                raise
            log.warning("thetadata: open interest history unavailable (%s); leaving it null", exc)
            return {}
        return {k: v[-1][1] for k, v in table.items() if v}

    # -- stocks_1m -------------------------------------------------------------------------
    def fetch_stocks_1m(self, day: date, symbols: Sequence[str]) -> pa.Table:
        """Regular-session one-minute bars of ``day``: one row per symbol per minute."""
        d = int(f"{day:%Y%m%d}")
        rows: list[dict] = []
        for symbol in [normalise_us_ticker(s) for s in symbols]:
            params = {"root": symbol, "start_date": d, "end_date": d, "ivl": 60_000}
            for fmt, response, endpoint in self._pages("/v2/hist/stock/ohlc", params):
                rows += normalise_stock_bars(symbol, list(iter_rows(fmt, response, endpoint)), day, endpoint)
        if symbols and not rows:
            raise EmptySession(f"thetadata returned no one-minute bars for {', '.join(symbols)} on {day}")
        return pa.Table.from_pylist(rows, schema=STOCKS_1M_SCHEMA)

    def close(self) -> None:
        self.http.close()
