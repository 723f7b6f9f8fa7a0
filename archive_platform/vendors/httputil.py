"""Small pure helpers of the vendor HTTP policy: URL path segments, Retry-After, error hints."""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone
from urllib.parse import quote


def path_segment(value: object) -> str:
    """``value`` percent-encoded as one URL path segment: ``/``, ``?``, ``%``... all escaped.

    ``quote`` leaves dots alone, and a segment of only dots (``.``/``..``) would be resolved
    away by URL normalisation, moving the request to another path: those dots are escaped too.
    """
    seg = quote(str(value), safe="")
    return seg.replace(".", "%2E") if seg and set(seg) == {"."} else seg


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def hint(status: int, key_env_var: str | None) -> str:
    key = key_env_var or "the API key"
    if status in (401, 403):
        return f"check {key} is set, valid and entitled to this endpoint"
    if status == 404:
        return "check the symbol/path"
    if status in (400, 422):
        return "check the request parameters (symbol, date format, limits)"
    if status == 429:
        return "rate limited: lower the request rate or check the plan's limits"
    if status >= 500:
        return "vendor-side error: retry later or check the vendor's status page"
    return "check the request and the vendor's documentation for this status"
