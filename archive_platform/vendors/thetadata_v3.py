"""ThetaData over the Theta Terminal v3 REST API (https://docs.thetadata.us/, "for v3 only").

The terminal (``ThetaTerminalv3.jar``) serves ``http://127.0.0.1:25503/v3/...`` to the local
machine, logged in already (no auth header). What differs from v2 (``thetadata_decode.py``):

- params ``symbol`` (was ``root``), ``expiration`` ``YYYYMMDD`` or ``YYYY-MM-DD`` (``*`` = every
  expiration on snapshot and list endpoints; ``/option/history/greeks/*`` takes one expiration),
  ``date`` (one day), ``interval`` (``1m``, ``15m``, ...), ``format`` (``csv`` is the default;
  this client always asks for it explicitly);
- answers are CSV with a header row (no ``next_page``: v3 has no pagination). Rows are read by
  the header's column names, never by position: added columns are ignored, a missing column this
  client uses is a ``PayloadError`` naming it;
- ``timestamp`` is ``YYYY-MM-DDTHH:mm:ss.SSS`` (the docs; real answers also write a space for
  the ``T``) in US/Eastern wall-clock time without an offset -> converted to UTC through the zone
  database, so EST/EDT and the DST switch days come out right;
- ``strike`` is in dollars (``270.000``), never 1/10 cent; ``right`` is ``CALL``/``PUT`` (the
  dataset writes ``C``/``P``); ``expiration`` is ``YYYY-MM-DD``.

Status codes are v2's (472 NO_DATA is an empty answer, see ``thetadata.py``). Endpoints, columns
(v3 OpenAPI, https://docs.thetadata.us/operations/...):

=============================================  ================================================
``/v3/option/snapshot/quote``                  timestamp, expiration, strike, right, bid, ask
``/v3/option/snapshot/greeks/all``             + delta, theta, vega, rho, gamma, ..., implied_vol,
                                               iv_error, underlying_timestamp, underlying_price
``/v3/option/snapshot/open_interest``          expiration, strike, right, open_interest
``/v3/option/history/{quote,greeks/all}``      as the snapshots, one row per interval
``/v3/option/history/open_interest``           as the snapshot (reported ~06:30 ET)
``/v3/option/list/expirations``                symbol, expiration
``/v3/stock/history/ohlc``                     timestamp, open, high, low, close, volume, count,
                                               vwap (of the session so far, not of the bar);
                                               asked with ``venue=utp_cta`` (the default ``nqb``
                                               is Nasdaq Basic only)
``/v3/index/history/price``                    timestamp, price (the price AT the timestamp)
=============================================  ================================================
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from archive_platform import calendar as cal
from archive_platform.vendors.errors import PayloadError
from archive_platform.vendors.thetadata_decode import UTC, VENDOR, Key

#: what a v3 path needs of its CSV header (everything else it carries is ignored)
CONTRACT = ("expiration", "strike", "right")
QUOTE_SNAPSHOT = "/v3/option/snapshot/quote"
GREEKS_SNAPSHOT = "/v3/option/snapshot/greeks/all"
OI_SNAPSHOT = "/v3/option/snapshot/open_interest"
QUOTE_HISTORY = "/v3/option/history/quote"
GREEKS_HISTORY = "/v3/option/history/greeks/all"
OI_HISTORY = "/v3/option/history/open_interest"
EXPIRATIONS = "/v3/option/list/expirations"
STOCK_OHLC = "/v3/stock/history/ohlc"
INDEX_PRICE = "/v3/index/history/price"
#: the stock endpoints' ``venue``: ``utp_cta`` (merged UTP & CTA, the consolidated tape), not the
#: documented default ``nqb`` (Nasdaq Basic only), https://docs.thetadata.us/operations/stock_history_ohlc.html
STOCK_VENUE = "utp_cta"
_QUOTE = ("timestamp", *CONTRACT, "bid", "ask")
_GREEKS = ("timestamp", *CONTRACT, "delta", "theta", "vega", "gamma", "implied_vol", "underlying_price")
_OI = (*CONTRACT, "open_interest")
REQUIRED: Mapping[str, tuple[str, ...]] = {
    QUOTE_SNAPSHOT: _QUOTE, QUOTE_HISTORY: _QUOTE,
    GREEKS_SNAPSHOT: _GREEKS, GREEKS_HISTORY: _GREEKS,
    OI_SNAPSHOT: _OI, OI_HISTORY: _OI,
    EXPIRATIONS: ("expiration",),
    STOCK_OHLC: ("timestamp", "open", "high", "low", "close", "volume"),
    INDEX_PRICE: ("timestamp", "price"),
}


def _payload(endpoint: str, detail: str) -> PayloadError:
    return PayloadError(f"{VENDOR}: GET {endpoint}: {detail}", vendor=VENDOR, endpoint=endpoint)


def parse_csv(text: str, endpoint: str, required: Iterable[str]) -> list[dict[str, str | None]]:
    """Rows of a v3 CSV answer as dicts keyed by the header's names (empty cells -> None).

    An empty body is no rows; a header without a ``required`` column, or a row whose width is
    not the header's, is a ``PayloadError`` naming it."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        return []
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise _payload(endpoint, f"the CSV header lacks the column(s) {missing} (header: {header})")
    rows = []
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line (e.g. a trailing CRLF)
        if len(cells) != len(header):
            raise _payload(endpoint, f"CSV line {line} has {len(cells)} values, the header {len(header)}: {cells!r}")
        rows.append({h: (c.strip() or None) for h, c in zip(header, cells)})
    return rows


def parse_timestamp(value: Any, where: str) -> datetime:
    """A v3 ``timestamp`` (US/Eastern wall clock, ``T`` or space, optional fraction) -> UTC."""
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{where}: timestamp {value!r} is not YYYY-MM-DDTHH:mm:ss.SSS") from None
    if t.tzinfo is None:  # the terminal writes ET without an offset
        t = t.replace(tzinfo=cal.ET)
    return t.astimezone(UTC)


def parse_date(value: Any, where: str, name: str = "expiration") -> date:
    """``YYYY-MM-DD`` (what v3 writes) or ``YYYYMMDD`` -> date."""
    s = str(value).strip()
    try:
        if len(s) == 8 and s.isdigit():
            return date(int(s[:4]), int(s[4:6]), int(s[6:]))
        if len(s) == 10:
            return date.fromisoformat(s)
    except ValueError:
        pass
    raise ValueError(f"{where}: {name} {value!r} is not a YYYY-MM-DD date")


def parse_strike(value: Any, where: str) -> float:
    """A v3 strike: dollars as written (``270.000`` -> 270.0; never divided by 1000)."""
    try:
        strike = float(value)
    except (TypeError, ValueError):
        strike = math.nan
    if not (math.isfinite(strike) and strike > 0):
        raise ValueError(f"{where}: strike {value!r} is not a positive number of dollars")
    return strike


def parse_right(value: Any, where: str) -> str:
    """``CALL``/``PUT`` (also ``C``/``P``, any case) -> the dataset's ``C``/``P``."""
    r = str(value).strip().upper()
    if r in ("CALL", "C"):
        return "C"
    if r in ("PUT", "P"):
        return "P"
    raise ValueError(f"{where}: right {value!r} is neither CALL nor PUT")


def number(value: Any, where: str, name: str) -> float | None:
    """A numeric cell (None stays None); anything else is a ValueError naming the column."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} {value!r} is not a number") from None


def decode_row(row: dict, endpoint: str, line: int) -> dict:
    """The row with its ``timestamp`` as a UTC datetime (what ``_row_time`` reads)."""
    if row.get("timestamp") is None:
        return row
    try:
        return {**row, "timestamp": parse_timestamp(row["timestamp"], f"row {line}")}
    except ValueError as exc:
        raise _payload(endpoint, str(exc)) from None


def contract_rows(rows: list[dict], endpoint: str) -> list[tuple[Key, dict]]:
    """``(contract key, row)`` per row: key ``(expiration, strike in dollars, C|P)``."""
    out = []
    for line, row in enumerate(rows, start=2):
        where = f"row {line}"
        try:
            key = (parse_date(row["expiration"], where), parse_strike(row["strike"], where),
                   parse_right(row["right"], where))
        except ValueError as exc:
            raise _payload(endpoint, str(exc)) from None
        out.append((key, decode_row(row, endpoint, line)))
    return out
