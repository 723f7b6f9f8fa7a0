"""ThetaData answer decoding: v2 envelopes and bulk rows, ET timestamps, canonical rows.

Pure functions over the terminal's v2 JSON (no transport); ``thetadata.py`` re-exports them.
Parsing always goes by the ``format`` column names, never by position. The canonical-row
builders (``normalise_option_rows``, ``normalise_stock_bars``) also take v3 rows, whose
``timestamp`` ``thetadata_v3`` has already turned into a UTC datetime.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from archive_platform import calendar as cal
from archive_platform.vendors.errors import PayloadError

UTC = timezone.utc
VENDOR = "thetadata"

Key = tuple[date, float, str]  # expiry, strike in dollars, right


def parse_yyyymmdd(value: Any, where: str) -> date:
    """A ``YYYYMMDD`` integer (ThetaData's date and expiration encoding) -> date."""
    try:
        v = int(value)
        return date(v // 10000, v // 100 % 100, v % 100)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {value!r} is not a YYYYMMDD date") from exc


def et_ms_to_utc(day_value: Any, ms_of_day: Any, where: str) -> datetime:
    """``date`` (YYYYMMDD) + ``ms_of_day`` (ms since midnight US/Eastern) -> UTC instant."""
    d = parse_yyyymmdd(day_value, where)
    try:
        ms = int(ms_of_day)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: ms_of_day {ms_of_day!r} is not an integer") from exc
    # wall-clock ET of that date, then the zone database resolves EST/EDT
    wall = datetime.combine(d, time()) + timedelta(milliseconds=ms)
    return wall.replace(tzinfo=cal.ET).astimezone(UTC)


def parse_envelope(payload: Any, endpoint: str) -> tuple[list[str], list, str | None]:
    """``(format, response, next_page)`` of a v2 JSON answer; PayloadError naming what is wrong."""
    if not isinstance(payload, dict) or not isinstance(payload.get("header"), dict):
        raise _payload(endpoint, "no 'header' object in the answer")
    header = payload["header"]
    response = payload.get("response")
    if not isinstance(response, list):
        raise _payload(endpoint, f"'response' is {type(response).__name__}, expected a list")
    fmt = header.get("format") or []
    if not isinstance(fmt, list) or not all(isinstance(c, str) for c in fmt):
        raise _payload(endpoint, f"header.format is {fmt!r}, expected a list of column names")
    nxt = header.get("next_page")
    # the terminal writes the string "null" when there is no next page
    nxt = nxt if isinstance(nxt, str) and nxt not in ("", "null") else None
    return fmt, response, nxt


def iter_rows(fmt: list[str], response: list, endpoint: str) -> Iterator[dict]:
    """Rows of a single-contract/stock answer as dicts keyed by the ``format`` names."""
    for i, row in enumerate(response):
        if not isinstance(row, list) or len(row) != len(fmt):
            raise _payload(endpoint, f"response[{i}] is {row!r}; expected {len(fmt)} values {fmt}")
        yield dict(zip(fmt, row))


def iter_bulk_rows(fmt: list[str], response: list, endpoint: str) -> Iterator[tuple[Key, dict]]:
    """``(contract key, row)`` of a bulk answer: ``[{"ticks": [[...]], "contract": {...}}, ...]``."""
    for i, item in enumerate(response):
        where = f"{endpoint} response[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("contract"), dict):
            raise _payload(endpoint, f"response[{i}] has no 'contract' object")
        c = item["contract"]
        try:
            key = (
                parse_yyyymmdd(c["expiration"], f"{where}.contract.expiration"),
                int(c["strike"]) / 1000.0,  # strikes are in 1/10 of a cent
                _right(c["right"], where),
            )
        except KeyError as exc:
            raise _payload(endpoint, f"response[{i}].contract lacks field {exc.args[0]!r}") from None
        except ValueError as exc:
            raise _payload(endpoint, str(exc)) from None
        ticks = item.get("ticks")
        if not isinstance(ticks, list):
            raise _payload(endpoint, f"response[{i}].ticks is {type(ticks).__name__}, expected a list")
        for j, tick in enumerate(ticks):
            if not isinstance(tick, list) or len(tick) != len(fmt):
                raise _payload(endpoint, f"response[{i}].ticks[{j}] is {tick!r}; expected {len(fmt)} values {fmt}")
            yield key, dict(zip(fmt, tick))


def _right(value: Any, where: str) -> str:
    r = str(value).upper()
    if r in ("C", "CALL"):
        return "C"
    if r in ("P", "PUT"):
        return "P"
    raise ValueError(f"{where}.contract.right is {value!r}, expected C or P")


def _payload(endpoint: str, detail: str) -> PayloadError:
    return PayloadError(f"{VENDOR}: GET {endpoint}: {detail}", vendor=VENDOR, endpoint=endpoint)


def _num(row: dict | None, name: str) -> float | None:
    v = None if row is None else row.get(name)
    return None if v is None else float(v)


def _row_time(row: dict, endpoint: str) -> datetime:
    if "timestamp" in row:  # a v3 row, its timestamp decoded to UTC by thetadata_v3
        if not isinstance(row["timestamp"], datetime):
            raise _payload(endpoint, f"row {row!r} has no timestamp")
        return row["timestamp"]
    if "ms_of_day" not in row or "date" not in row:
        raise _payload(endpoint, f"row {row!r} lacks 'ms_of_day' or 'date' (check header.format)")
    return et_ms_to_utc(row["date"], row["ms_of_day"], endpoint)


def normalise_option_rows(
    symbol: str,
    snapshot_time: datetime,
    quotes: dict[Key, dict],
    greeks: dict[Key, dict],
    second: dict[Key, dict],
    open_interest: dict[Key, dict],
) -> list[dict]:
    """Join per-contract rows of the four endpoints into canonical options rows.

    Rows without any underlying price (no greeks row anywhere for the symbol) are dropped.
    """
    prices = [p for p in (_num(g, "underlying_price") for g in greeks.values()) if p]
    fallback_price = prices[0] if prices else None
    out = []
    for key in sorted(set(quotes) | set(greeks)):
        q, g, s, oi = quotes.get(key), greeks.get(key), second.get(key), open_interest.get(key)
        und = _num(g, "underlying_price") or fallback_price
        if und is None:
            continue
        ts = _row_time(q if q is not None else g, "option quote/greeks")
        vega = _num(g, "vega")
        gamma = _num(s, "gamma") if s is not None else _num(g, "gamma")
        oi_value = _num(oi, "open_interest")
        out.append({
            "timestamp": ts,
            "snapshot_time": snapshot_time.astimezone(UTC),
            "symbol": symbol,
            "expiry": key[0],
            "strike": key[1],
            "right": key[2],
            "bid": _num(q, "bid") if q is not None else _num(g, "bid"),
            "ask": _num(q, "ask") if q is not None else _num(g, "ask"),
            "last": None,  # quote snapshots carry no last trade
            "volume": None,  # nor volume (bulk ohlc would; not fetched)
            "open_interest": None if oi_value is None else int(oi_value),
            "iv": _num(g, "implied_vol"),
            "delta": _num(g, "delta"),
            "gamma": gamma,
            "theta": _num(g, "theta"),
            # ThetaData's vega is per 1.00 of vol; the docs say divide by 100 for per-point
            "vega": None if vega is None else vega / 100.0,
            "underlying_price": und,
            "et_offset": cal.et_offset_minutes(ts),
            "source": VENDOR,
        })
    return out


def pick_at(rows: list[tuple[datetime | None, dict]], instant: datetime, ivl_ms: int) -> dict | None:
    """The interval row stamped at ``instant``, else the latest one before it within ``ivl_ms``."""
    best = None
    for ts, row in rows:
        if ts is not None and ts <= instant and instant - ts < timedelta(milliseconds=ivl_ms):
            if best is None or ts > best[0]:
                best = (ts, row)
    return None if best is None else best[1]


def normalise_stock_bars(symbol: str, rows: Sequence[dict], day: date, endpoint: str) -> list[dict]:
    """Canonical stocks_1m rows from ``/v2/hist/stock/ohlc`` or ``/v3/stock/history/ohlc`` rows
    within the regular session."""
    session = cal.session(day)
    out = []
    for row in rows:
        ts = _row_time(row, endpoint)
        if not (session.open_utc <= ts < session.close_utc):
            continue
        try:
            prices = [row[k] for k in ("open", "high", "low", "close")]
            volume, count = int(row["volume"] or 0), int(row.get("count") or 0)
            if None in prices and volume == 0:
                continue  # v3 writes a minute without trades with empty prices: no price to store
            o, h, lo, c = (float(p) for p in prices)
        except KeyError as exc:
            raise _payload(endpoint, f"bar row lacks column {exc.args[0]!r} (format has {sorted(row)})") from None
        except (TypeError, ValueError):
            raise _payload(endpoint, f"bar at {ts.isoformat()} has a value that is not a number: {row!r}") from None
        if count == 0 and volume == 0 and o == h == lo == c == 0:
            # UNVERIFIED: interval bars of minutes without trades appear to carry zero prices;
            # a zero-price bar is not a price, so skip it rather than store 0.0
            continue
        out.append({
            "timestamp": ts, "symbol": symbol, "open": o, "high": h, "low": lo, "close": c,
            "volume": volume,
            # v2 OHLC has no VWAP; v3's ``vwap`` is of the session so far, not of the bar (v3
            # docs); a typical-price proxy would be a made-up number
            "vwap": None,
            "trade_count": count,
            "et_offset": cal.et_offset_minutes(ts), "source": VENDOR,
        })
    return out
