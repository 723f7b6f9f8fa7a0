"""Capture settings, parsed and validated once from an environment mapping.

``capture_settings_from_env(env)`` is the only place the crypto package reads settings; it takes
the mapping (``archive_platform.settings.environment()`` in production, a dict in tests) and
raises ``SettingsError`` naming the setting on bad input, before anything connects or writes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from archive_platform.crypto.symbols import EXCHANGES, CryptoSymbol, SymbolError, parse_symbols

#: current public endpoints (the service adds the paths: Binance /public and /market, Hyperliquid /ws)
DEFAULT_BINANCE_FUTURES_WS_URL = "wss://fstream.binance.com"
DEFAULT_HYPERLIQUID_WS_URL = "wss://api.hyperliquid.xyz"
DEFAULT_BINANCE_DATA_URL = "https://data.binance.vision"
DEFAULT_SYMBOLS = "BTCUSDT,ETHUSDT,BTC,ETH"
#: books and trades kept in memory while the spool cannot be written (a full disk); beyond it the
#: oldest are dropped and recorded as capture gaps. A Binance book row holds about 3.6 KB in
#: memory, so this caps a failing buffer near 1 GB (docs/crypto.md, "A full disk")
DEFAULT_MAX_UNSPOOLED_ROWS = 250_000


class SettingsError(ValueError):
    """A capture setting that cannot be used; the message starts with the setting's name."""


@dataclass(frozen=True)
class CaptureSettings:
    root: Path = Path("data/archive")
    binance_url: str = DEFAULT_BINANCE_FUTURES_WS_URL
    hyperliquid_url: str = DEFAULT_HYPERLIQUID_WS_URL
    binance_data_url: str = DEFAULT_BINANCE_DATA_URL
    symbols: tuple[CryptoSymbol, ...] = field(default_factory=lambda: parse_symbols(DEFAULT_SYMBOLS))
    flush_seconds: float = 10.0
    max_buffer_rows: int = 50_000
    #: while the spool fails, keep at most this many book and trade rows (the oldest are dropped
    #: and recorded as capture gaps): memory stays bounded through a long full-disk outage
    max_unspooled_rows: int = DEFAULT_MAX_UNSPOOLED_ROWS
    silence_seconds: float = 30.0
    #: Binance closes a connection after 24 h; the service opens its successor this much earlier
    rollover_seconds: float = 23 * 3600.0
    heartbeat_seconds: float = 5.0
    hyperliquid_ping_seconds: float = 50.0
    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    redis_url: str | None = None  # may hold a password: repr() shows it as redis://***@host

    def __repr__(self) -> str:
        """The dataclass repr with ``redis_url``'s ``user:password@`` shown as ``***@``: a repr
        lands in logs and tracebacks (``Settings`` holds these settings as ``crypto``)."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if shown["redis_url"]:
            shown["redis_url"] = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^@/?#]*@", r"\1***@", shown["redis_url"])
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def for_exchanges(self, exchanges: tuple[str, ...]) -> CaptureSettings:
        """Keep only symbols of the given exchanges (the CLI's ``--exchange``)."""
        for ex in exchanges:
            if ex not in EXCHANGES:
                raise SettingsError(f"--exchange: unknown exchange {ex!r} (known: {', '.join(EXCHANGES)})")
        kept = tuple(s for s in self.symbols if s.exchange in exchanges)
        if not kept:
            raise SettingsError(f"ARCHIVE_CRYPTO_SYMBOLS: no symbol of {', '.join(exchanges)} selected")
        return replace(self, symbols=kept)


def validate_ws_url(value: str, setting: str) -> str:
    """A ws:// or wss:// base URL with a host and no query or fragment; trailing '/' removed."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("ws", "wss"):
        raise SettingsError(f"{setting}: {value!r} is not a ws:// or wss:// URL")
    if not parts.hostname or parts.query or parts.fragment or parts.username or parts.password:
        raise SettingsError(f"{setting}: {value!r} must be a base URL (host, optional port and path; no query, credentials)")
    return value.strip().rstrip("/")


def validate_http_url(value: str, setting: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise SettingsError(f"{setting}: {value!r} is not an http(s) base URL")
    return value.strip().rstrip("/")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float, integer: bool = False):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        val = int(raw) if integer else float(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None
    if val < minimum or val != val:
        raise SettingsError(f"{name}: {raw!r} must be >= {minimum}")
    return val


def capture_settings_from_env(env: Mapping[str, str]) -> CaptureSettings:
    """Parse every capture setting from ``env``; see docs/crypto.md for the list."""
    try:
        symbols = parse_symbols(env.get("ARCHIVE_CRYPTO_SYMBOLS") or DEFAULT_SYMBOLS)
    except SymbolError as exc:
        raise SettingsError(str(exc)) from None
    redis_url = (env.get("REDIS_URL") or "").strip() or None
    if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise SettingsError("REDIS_URL: must start with redis://, rediss:// or unix://")
    max_buffer_rows = _number(env, "ARCHIVE_CRYPTO_MAX_BUFFER_ROWS", 50_000, minimum=1, integer=True)
    # unset: the default, raised to ARCHIVE_CRYPTO_MAX_BUFFER_ROWS when that is larger
    max_unspooled_rows = _number(env, "ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS", max(DEFAULT_MAX_UNSPOOLED_ROWS, max_buffer_rows),
                                 minimum=1, integer=True)
    if max_unspooled_rows < max_buffer_rows:
        raise SettingsError(f"ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS: {env.get('ARCHIVE_CRYPTO_MAX_UNSPOOLED_ROWS')!r} must be "
                            f">= ARCHIVE_CRYPTO_MAX_BUFFER_ROWS ({max_buffer_rows}): the rows kept while the spool "
                            "fails include a whole batch waiting to be written")
    return CaptureSettings(
        root=Path(env.get("ARCHIVE_ROOT") or "data/archive"),
        binance_url=validate_ws_url(env.get("BINANCE_FUTURES_WS_URL") or DEFAULT_BINANCE_FUTURES_WS_URL,
                                    "BINANCE_FUTURES_WS_URL"),
        hyperliquid_url=validate_ws_url(env.get("HYPERLIQUID_WS_URL") or DEFAULT_HYPERLIQUID_WS_URL,
                                        "HYPERLIQUID_WS_URL"),
        binance_data_url=validate_http_url(env.get("BINANCE_DATA_URL") or DEFAULT_BINANCE_DATA_URL, "BINANCE_DATA_URL"),
        symbols=symbols,
        flush_seconds=_number(env, "ARCHIVE_CRYPTO_FLUSH_SECONDS", 10.0, minimum=0.05),
        max_buffer_rows=max_buffer_rows,
        max_unspooled_rows=max_unspooled_rows,
        silence_seconds=_number(env, "ARCHIVE_CRYPTO_SILENCE_SECONDS", 30.0, minimum=0.1),
        rollover_seconds=_number(env, "ARCHIVE_CRYPTO_ROLLOVER_SECONDS", 23 * 3600.0, minimum=0.5),
        heartbeat_seconds=_number(env, "ARCHIVE_CRYPTO_HEARTBEAT_SECONDS", 5.0, minimum=0.05),
        redis_url=redis_url,
    )
