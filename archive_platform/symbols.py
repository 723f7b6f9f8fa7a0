"""The one grammar for US ticker symbols (pure, no I/O).

Every place a symbol enters the archive (settings, vendor clients, URL paths) checks it here, so
a value like ``..``, ``A/B`` or ``ＳＰＹ`` (full-width letters) can never reach a URL path, a
file name or a SQL string.

Grammar (ASCII only, checked on the exact characters given)::

    ticker := ROOT [ "." CLASS ]
    ROOT   := 1 to 6 uppercase letters A-Z      (SPY, AAPL, GOOGL; index underlyings SPX, VIX,
                                                 NDX, RUT, XSP, DJX are plain roots too)
    CLASS  := 1 or 2 uppercase letters A-Z      (share class: BRK.B, BF.B, HEI.A)

The vendors this project talks to use exactly these forms for the symbols we send them:
Unusual Whales, Polygon (``/v2/aggs/ticker/BRK.B``), ThetaData (``root=``), Barchart and IB all
take ``BRK.B`` with a dot and index underlyings as bare roots (``SPX``); vendor-specific prefixes
(Polygon's ``I:SPX``) are added by a client, never accepted from configuration.

Refused, each with a ``SymbolError`` naming the symbol and the reason: the empty string,
``.``/``..``, a leading/trailing or doubled dot, more than one class suffix, ``-`` (Yahoo's
``BRK-B`` spelling: write ``BRK.B``), ``/``, ``\\``, quotes, whitespace, NUL and other control
characters, digits (ASCII, full-width or Arabic-Indic), lowercase letters (``us_ticker`` is
strict; ``normalise_us_ticker`` upper-cases ASCII input first) and every non-ASCII character.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["SymbolError", "US_TICKER", "normalise_us_ticker", "normalise_us_tickers", "us_ticker"]

US_TICKER = re.compile(r"[A-Z]{1,6}(?:\.[A-Z]{1,2})?", re.ASCII)
MAX_ROOT, MAX_CLASS = 6, 2


class SymbolError(ValueError):
    """A symbol does not follow the US ticker grammar; the message says which and why."""

    def __init__(self, symbol: object, reason: str) -> None:
        super().__init__(f"{symbol!r} is not a US ticker symbol: {reason}")
        self.symbol = symbol
        self.reason = reason


def _char_name(c: str) -> str:
    name = unicodedata.name(c, "")
    return f"{c!r} (U+{ord(c):04X}{' ' + name if name else ''})"


def _reason(s: str) -> str:
    """Why ``s`` (already known not to match) is refused: the first rule it breaks."""
    if s == "":
        return "it is empty"
    if s.strip() != s or any(c.isspace() for c in s):
        return "it contains whitespace"
    for c in s:
        if not c.isascii():
            kind = "digit" if c.isdigit() or unicodedata.category(c) == "Nd" else "character"
            return f"non-ASCII {kind} {_char_name(c)}; only A-Z and one '.' are allowed"
        if ord(c) < 32 or ord(c) == 127:
            return f"control character {_char_name(c)}"
        if c in "'\"`":
            return f"quote character {c!r}"
        if c in "/\\":
            return f"path separator {c!r}"
        if c == "-":
            return "'-' is not allowed (write a share class with a dot, e.g. BRK.B)"
        if c.isdigit():
            return f"digit {c!r}; US tickers are letters only"
        if c.islower():
            return "lowercase letters (tickers are upper case, e.g. SPY)"
        if not (c.isalpha() or c == "."):
            return f"character {c!r} is not allowed"
    if set(s) == {"."}:
        return "it is only dots"
    parts = s.split(".")
    if len(parts) > 2:
        return "more than one '.' (one share-class suffix at most, e.g. BRK.B)"
    if not parts[0] or (len(parts) == 2 and not parts[1]):
        return "a '.' must sit between the root and a class letter (e.g. BRK.B)"
    if len(parts[0]) > MAX_ROOT:
        return f"the root {parts[0]!r} is longer than {MAX_ROOT} letters"
    return f"the class suffix {parts[1]!r} is longer than {MAX_CLASS} letters"


def us_ticker(symbol: object) -> str:
    """``symbol`` itself when it follows the grammar exactly, else ``SymbolError``."""
    if not isinstance(symbol, str):
        raise SymbolError(symbol, f"expected a string, got {type(symbol).__name__}")
    if US_TICKER.fullmatch(symbol) is None:
        raise SymbolError(symbol, _reason(symbol))
    return symbol


def normalise_us_ticker(symbol: object) -> str:
    """Strip surrounding blanks and upper-case ASCII letters, then apply ``us_ticker``.

    Upper-casing happens only on ASCII input: ``str.upper`` maps some non-ASCII characters to
    ASCII letters (the ligature ``ﬀ`` becomes ``FF``), which must stay refused.
    """
    if not isinstance(symbol, str):
        raise SymbolError(symbol, f"expected a string, got {type(symbol).__name__}")
    s = symbol.strip(" \t")
    try:
        return us_ticker(s.upper() if s.isascii() else s)
    except SymbolError as exc:
        raise SymbolError(symbol, exc.reason) from None  # name the symbol as it was given


def normalise_us_tickers(symbols: Iterable[object]) -> list[str]:
    """``normalise_us_ticker`` of each, duplicates dropped, order kept."""
    out: list[str] = []
    for sym in symbols:
        t = normalise_us_ticker(sym)
        if t not in out:
            out.append(t)
    return out
