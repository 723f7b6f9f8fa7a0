"""Redaction of secrets (API keys, tokens) from text and URLs.

Keys must never reach exceptions, log records, Dagster metadata, stored URLs or files, so every
string a client builds from a URL or an error body goes through here first.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection, Iterable
from urllib.parse import quote, quote_plus

import httpx

REDACTED = "REDACTED"

# Shorter strings would be replaced inside ordinary words (a test key "k" would eat every "k").
_MIN_SECRET_LEN = 4


def _variants(secret: str) -> set[str]:
    # A key can appear raw, percent-encoded (in a URL) or form-encoded (spaces as '+').
    return {secret, quote(secret, safe=""), quote_plus(secret)}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (raw or URL-encoded) replaced."""
    out = str(text)
    # Longest first, so a secret that contains another one is replaced whole.
    variants = sorted(
        {v for s in secrets if s and len(s) >= _MIN_SECRET_LEN for v in _variants(s)},
        key=len,
        reverse=True,
    )
    for v in variants:
        out = out.replace(v, REDACTED)
    return out


def redact_url(
    url: str | httpx.URL, secret_params: Collection[str] = (), secrets: Iterable[str] = ()
) -> str:
    """The URL as a string with the values of ``secret_params`` replaced, then ``redact``-ed.

    Parameter names match case-insensitively (Polygon spells it ``apiKey``, Barchart ``apikey``).
    """
    u = httpx.URL(str(url))
    names = {n.lower() for n in secret_params}
    if names and u.query:
        pairs = [
            (k, REDACTED if k.lower() in names else v) for k, v in u.params.multi_items()
        ]
        u = u.copy_with(params=pairs)
    return redact(str(u), secrets)


def truncate(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, marking the cut (error bodies can be huge)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


class RedactingFilter(logging.Filter):
    """Rewrites records of third-party loggers that print request URLs (httpx logs every
    request URL, query string included, at INFO): registered secrets and secret params go."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._params: set[str] = set()

    def register(self, secrets: Iterable[str], params: Iterable[str] = ()) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s)
            self._params.update(params)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets, params = tuple(self._secrets), tuple(self._params)
        msg = record.getMessage()
        clean = redact(msg, secrets)
        for name in params:
            clean = re.sub(rf"(?i)([?&]{re.escape(name)}=)[^&\s\"']*", rf"\g<1>{REDACTED}", clean)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


_filter = RedactingFilter()
_THIRD_PARTY_LOGGERS = ("httpx", "httpcore")


def protect_third_party_logs(secrets: Iterable[str], params: Iterable[str] = ()) -> None:
    """Register secrets with the redacting filter on httpx/httpcore loggers (idempotent)."""
    _filter.register(secrets, params)
    for name in _THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
