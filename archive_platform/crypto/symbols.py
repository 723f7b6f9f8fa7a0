"""Crypto symbol grammar and routing: which exchange a user-given symbol belongs to.

Naming (ARCHIVE_CRYPTO_SYMBOLS, ``capture --symbols``): each entry is either
``exchange:SYMBOL`` (explicit) or a bare symbol routed by its shape:

* Binance USD-M futures: the exchange's own symbol, base + quote, ending in ``USDT`` or ``USDC``
  (``BTCUSDT``, ``1000PEPEUSDT``), optionally a delivery suffix ``_YYMMDD`` (``BTCUSDT_261225``).
  Case-insensitive on input, stored upper-case.
* Hyperliquid perpetuals: the bare coin as Hyperliquid names it (``BTC``, ``ETH``, ``kPEPE``):
  letters and digits only, case kept (Hyperliquid's ``k`` prefix is lower-case).

A bare name that ends in USDT/USDC goes to Binance, any other bare coin to Hyperliquid. Anything
with path or URL characters (``/ \\ ? # % .`` whitespace) is refused: symbols become URL paths.
A list of more than 500 Hyperliquid coins is refused too: two subscriptions per coin, and
Hyperliquid allows 1000 per IP address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXCHANGES = ("binance", "hyperliquid")
_BINANCE = re.compile(r"^[A-Z0-9]{1,20}(USDT|USDC)(_\d{6})?$")
_HYPERLIQUID = re.compile(r"^[A-Za-z0-9]{1,20}$")
_PATHY = re.compile(r"[/\\?#%.&=:\s]")
#: Hyperliquid allows at most 1000 WebSocket subscriptions per IP address
#: (https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/rate-limits); the service
#: takes two per coin (l2Book and trades)
HYPERLIQUID_MAX_SUBSCRIPTIONS = 1000
HYPERLIQUID_SUBSCRIPTIONS_PER_COIN = 2


class SymbolError(ValueError):
    """A symbol or exchange name that cannot be captured; the message names the setting."""


@dataclass(frozen=True, order=True)
class CryptoSymbol:
    exchange: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol}"


def _check_path(raw: str, setting: str) -> None:
    if _PATHY.search(raw) or not raw:
        raise SymbolError(f"{setting}: symbol {raw!r} contains path or URL characters (or is empty)")


def parse_symbol(raw: str, setting: str = "ARCHIVE_CRYPTO_SYMBOLS") -> CryptoSymbol:
    """One entry (``BTCUSDT``, ``BTC``, ``binance:ethusdt``, ``hyperliquid:kPEPE``) -> CryptoSymbol."""
    text = raw.strip()
    exchange = None
    if ":" in text:
        exchange, _, text = text.partition(":")
        exchange = exchange.strip().lower()
        text = text.strip()
        if exchange not in EXCHANGES:
            raise SymbolError(f"{setting}: unknown exchange {exchange!r} in {raw!r} (known: {', '.join(EXCHANGES)})")
    _check_path(text, setting)
    upper = text.upper()
    if exchange in (None, "binance") and _BINANCE.match(upper):
        return CryptoSymbol("binance", upper)
    if exchange == "binance":
        raise SymbolError(f"{setting}: {raw!r} is not a Binance USD-M futures symbol (e.g. BTCUSDT)")
    if _HYPERLIQUID.match(text) and not _BINANCE.match(upper):
        # Hyperliquid names are upper-case except the 'k' (thousands) prefix: kPEPE, kBONK
        coin = text if (text[:1] == "k" and text[1:].isupper()) else upper
        return CryptoSymbol("hyperliquid", coin)
    raise SymbolError(f"{setting}: unknown symbol {raw!r}: neither a Binance USD-M symbol nor a Hyperliquid coin")


def parse_symbols(value: str, setting: str = "ARCHIVE_CRYPTO_SYMBOLS") -> tuple[CryptoSymbol, ...]:
    """A comma list -> distinct symbols in the given order; an empty list is an error."""
    out: list[CryptoSymbol] = []
    for part in value.split(","):
        if part.strip():
            sym = parse_symbol(part, setting)
            if sym not in out:
                out.append(sym)
    if not out:
        raise SymbolError(f"{setting}: no symbols given")
    coins = sum(s.exchange == "hyperliquid" for s in out)
    subs, most = coins * HYPERLIQUID_SUBSCRIPTIONS_PER_COIN, HYPERLIQUID_MAX_SUBSCRIPTIONS
    if subs > most:
        raise SymbolError(
            f"{setting}: {coins} Hyperliquid coins need {subs} subscriptions (l2Book and trades each); "
            f"Hyperliquid allows at most {most} WebSocket subscriptions per IP address, so at most "
            f"{most // HYPERLIQUID_SUBSCRIPTIONS_PER_COIN} coins")
    return tuple(out)


def stream_name(sym: CryptoSymbol, stream: str) -> str:
    """Binance stream names are lower-case: ``btcusdt@depth20@100ms``."""
    return f"{sym.symbol.lower()}@{stream}"
