"""Pure normalisers for Interactive Brokers objects (ib_async shapes) -> canonical rows.

No I/O and no ib_async import: these take ``Ticker``/``BarData``/``Fill``-shaped objects (real
ones, or the fakes in the tests) and plain values, and return plain dicts or values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

from archive_platform import calendar as cal
from archive_platform.vendors.errors import VendorError
from archive_platform.vendors.occ import parse_occ

UTC = timezone.utc
VENDOR = "ib"


def clean_float(x: Any, *, price: bool = False) -> float | None:
    """A finite float or None: NaN, None, IB's unset sentinel (~1.8e308) become null.

    ``price=True`` also nulls negative values: IB sends -1 for "no bid/ask" outside hours.
    """
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v) or abs(v) >= 1e300 or (price and v < 0):
        return None
    return v


def clean_int(x: Any) -> int | None:
    v = clean_float(x)
    return None if v is None or v < 0 else int(round(v))


def parse_ib_expiry(value: str) -> date:
    """``lastTradeDateOrContractMonth`` (``YYYYMMDD``, possibly followed by a time) -> date."""
    text = (value or "").strip()[:8]
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"IB expiry {value!r} is not YYYYMMDD")
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def normalise_right(value: str) -> str:
    r = (value or "").upper()
    if r in ("C", "CALL"):
        return "C"
    if r in ("P", "PUT"):
        return "P"
    raise ValueError(f"IB option right {value!r} is not C/CALL/P/PUT")


def occ_symbol(root: str, expiry: date, right: str, strike: float) -> str:
    """OCC option symbol without padding (as Unusual Whales writes it): SPY250117C00450000."""
    return f"{root}{expiry:%y%m%d}{right}{int(round(strike * 1000)):08d}"


def option_root(contract: Any) -> str:
    """The OCC root of an option contract: SPX monthlies and SPXW weeklies (or an adjusted
    ``AAPL1``) share ``symbol`` but not their OCC root, which ``localSymbol`` (the padded OCC
    symbol IB sends) carries, or else ``tradingClass``; ``symbol`` when IB sent neither."""
    local = (getattr(contract, "localSymbol", "") or "").strip()
    if local:
        try:
            return parse_occ(local).root
        except ValueError:
            pass
    return (getattr(contract, "tradingClass", "") or "").strip() or contract.symbol


def pick_chain(chains: Sequence[Any], symbol: str, trading_class: str | None = None) -> Any:
    """The SMART ``OptionChain`` whose trading class is ``trading_class`` (default: the symbol)."""
    want = trading_class or symbol
    for chain in chains:
        if chain.exchange == "SMART" and chain.tradingClass == want:
            return chain
    seen = sorted({(c.exchange, c.tradingClass) for c in chains})
    raise VendorError(
        f"ib: no SMART option chain with trading class {want!r} for {symbol}; "
        f"reqSecDefOptParams returned {seen or 'nothing'}",
        vendor=VENDOR,
        endpoint="reqSecDefOptParams",
    )


def select_expirations(expirations: Sequence[str], day: date, count: int) -> list[str]:
    """The ``count`` nearest expirations on or after ``day`` (``YYYYMMDD`` strings, sorted)."""
    upcoming = sorted(e for e in expirations if parse_ib_expiry(e) >= day)
    return upcoming[:count]


def select_strikes(strikes: Sequence[float], price: float, band: float, count: int) -> list[float]:
    """Up to ``count`` strikes nearest ``price`` within ``price * (1 +/- band)``, ascending."""
    lo, hi = price * (1 - band), price * (1 + band)
    inside = [s for s in strikes if lo <= s <= hi]
    nearest = sorted(inside, key=lambda s: (abs(s - price), s))[:count]
    return sorted(nearest)


def ticker_price(ticker: Any) -> float | None:
    """Underlying price from a ``Ticker``: last, else bid/ask midpoint, else previous close."""
    last = clean_float(getattr(ticker, "last", None), price=True)
    if last:
        return last
    bid = clean_float(getattr(ticker, "bid", None), price=True)
    ask = clean_float(getattr(ticker, "ask", None), price=True)
    if bid and ask:
        return (bid + ask) / 2
    return clean_float(getattr(ticker, "close", None), price=True) or None


def normalise_option_ticker(
    ticker: Any,
    symbol: str,
    snapshot_time: datetime,
    underlying_price: float | None,
    fetched_at: datetime,
) -> dict | None:
    """One canonical options row from an option ``Ticker``; None when no underlying price is known."""
    c = ticker.contract
    right = normalise_right(c.right)
    greeks = getattr(ticker, "modelGreeks", None)
    g = (lambda name: clean_float(getattr(greeks, name, None))) if greeks else (lambda n: None)
    und = clean_float(g("undPrice"), price=True) or underlying_price
    if und is None:
        return None
    oi_field = "callOpenInterest" if right == "C" else "putOpenInterest"
    oi = clean_int(getattr(ticker, oi_field, None))
    if oi is None:
        oi = clean_int(getattr(ticker, "openInterest", None))
    ts = getattr(ticker, "time", None) or fetched_at
    ts = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    return {
        "timestamp": ts,
        "snapshot_time": snapshot_time.astimezone(UTC),
        "symbol": symbol,
        "expiry": parse_ib_expiry(c.lastTradeDateOrContractMonth),
        "strike": float(c.strike),
        "right": right,
        "bid": clean_float(ticker.bid, price=True),
        "ask": clean_float(ticker.ask, price=True),
        "last": clean_float(ticker.last, price=True),
        "volume": clean_int(ticker.volume),
        "open_interest": oi,
        "iv": g("impliedVol"),
        "delta": g("delta"),
        "gamma": g("gamma"),
        "theta": g("theta"),
        "vega": g("vega"),
        "underlying_price": und,
        "et_offset": cal.et_offset_minutes(ts),
        "source": VENDOR,
    }


def normalise_bar(bar: Any, symbol: str) -> dict:
    """One canonical stocks_1m row from a ``BarData`` fetched with ``formatDate=2`` (UTC)."""
    ts = bar.date
    if not isinstance(ts, datetime) or ts.tzinfo is None:
        raise VendorError(
            f"ib: bar of {symbol} has date {ts!r}; expected a UTC datetime (formatDate=2)",
            vendor=VENDOR,
            endpoint="reqHistoricalData",
        )
    ts = ts.astimezone(UTC)
    return {
        "timestamp": ts,
        "symbol": symbol,
        "open": float(bar.open),
        "high": float(bar.high),
        "low": float(bar.low),
        "close": float(bar.close),
        "volume": clean_int(bar.volume) or 0,
        "vwap": clean_float(bar.average, price=True),
        "trade_count": clean_int(bar.barCount),
        "et_offset": cal.et_offset_minutes(ts),
        "source": VENDOR,
    }


_SIDES = {"BOT": "BUY", "SLD": "SELL", "BUY": "BUY", "SELL": "SELL"}


def normalise_fill(fill: Any) -> dict | None:
    """One canonical trades row from a ``Fill``; None for security types other than STK/OPT."""
    c, ex, report = fill.contract, fill.execution, fill.commissionReport
    if c.secType not in ("STK", "OPT"):
        return None
    side = _SIDES.get(ex.side)
    if side is None:
        raise VendorError(
            f"ib: execution {ex.execId} has side {ex.side!r}; expected BOT or SLD",
            vendor=VENDOR,
            endpoint="reqExecutions",
        )
    # ib_async converts execution times to its defaultTimezone (UTC unless changed)
    ts = ex.time if ex.time.tzinfo else ex.time.replace(tzinfo=UTC)
    ts = ts.astimezone(UTC)
    expiry = strike = right = None
    contract = c.symbol
    if c.secType == "OPT":
        expiry = parse_ib_expiry(c.lastTradeDateOrContractMonth)
        strike, right = float(c.strike), normalise_right(c.right)
        contract = occ_symbol(option_root(c), expiry, right, strike)
    # The commission report arrives separately; until it has, its execId is empty.
    commission = clean_float(report.commission) if report and report.execId else None
    # orderId is 0 for orders placed outside the API (e.g. TWS by hand); permId is still unique
    order_id = str(ex.orderId) if ex.orderId else f"perm:{ex.permId}"
    return {
        "timestamp": ts,
        "exec_id": ex.execId,
        "order_id": order_id,
        "symbol": c.symbol,
        "contract": contract,
        "sec_type": c.secType,
        "expiry": expiry,
        "strike": strike,
        "right": right,
        "side": side,
        "quantity": float(ex.shares),
        "price": float(ex.price),
        "commission": commission,
        "et_offset": cal.et_offset_minutes(ts),
        "source": VENDOR,
    }


# -- the source ------------------------------------------------------------------------------
