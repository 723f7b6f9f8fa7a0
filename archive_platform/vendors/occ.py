"""OCC option symbols: ``ROOT`` + ``YYMMDD`` + ``C|P`` + strike x 1000 in 8 digits.

Vendors spell them differently: UW unpadded (``MSFT231222C00375000``), Polygon with an ``O:``
prefix (``O:AAPL230616C00150000``), OCC/IB padded to six root characters
(``SPY   231222C00375000``). ``parse_occ`` accepts all three; ``format_occ`` writes the unpadded
form the archive stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_OCC = re.compile(r"^(?P<root>[A-Z0-9.]{1,6}?)\s*(?P<ymd>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")


@dataclass(frozen=True)
class OccContract:
    """One option contract: underlying root, expiry, right (``C``/``P``), strike in dollars."""

    root: str
    expiry: date
    right: str
    strike: float


def parse_occ(symbol: str) -> OccContract:
    """Parse an OCC symbol (padded, unpadded or ``O:``-prefixed); ValueError naming it otherwise."""
    s = symbol.strip().upper()
    if s.startswith("O:"):
        s = s[2:]
    m = _OCC.match(s)
    if not m:
        raise ValueError(
            f"not an OCC option symbol: {symbol!r} (expected ROOT+YYMMDD+C|P+8-digit strike, "
            "e.g. MSFT231222C00375000)"
        )
    ymd = m["ymd"]
    try:
        expiry = date(2000 + int(ymd[:2]), int(ymd[2:4]), int(ymd[4:]))
    except ValueError:
        raise ValueError(f"OCC symbol {symbol!r} has an invalid expiry date {ymd!r}") from None
    return OccContract(m["root"], expiry, m["right"], int(m["strike"]) / 1000.0)


def format_occ(root: str, expiry: date, right: str, strike: float, *, padded: bool = False) -> str:
    """The OCC symbol of a contract; ``padded`` pads the root to six characters (OCC/IB style)."""
    right = right.upper()[:1]
    if right not in ("C", "P"):
        raise ValueError(f"option right must be C or P, got {right!r}")
    milli = round(strike * 1000)
    if not 0 <= milli < 10**8:
        raise ValueError(f"strike {strike} does not fit the OCC 8-digit field")
    head = root.upper().ljust(6) if padded else root.upper()
    return f"{head}{expiry:%y%m%d}{right}{milli:08d}"
