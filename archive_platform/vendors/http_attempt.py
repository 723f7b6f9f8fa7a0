"""One attempt of a ``VendorHttpClient`` request and what decides the next one.

``_attempt`` sends one GET and sorts the answer: 2xx or an empty status is returned,
a retryable status / timeout / connection error raises ``_Transient`` (retried by the client's
tenacity loop), anything else is a refused ``VendorError``. ``_wait`` honours ``Retry-After``
(or the vendor's rate-window reset header after a 429; capped) before falling back to exponential backoff; ``_log_retry`` logs each retry.
``VendorHttpClient`` mixes ``AttemptPolicy`` in and provides the attributes it reads.
"""

from __future__ import annotations

import logging
import time

import httpx
from tenacity import RetryCallState

from archive_platform.vendors.errors import VendorError
from archive_platform.vendors.httputil import hint as _hint
from archive_platform.vendors.httputil import parse_retry_after
from archive_platform.vendors.redact import truncate

# the logger of vendors/http.py, where this code came from, so log filters keep matching
log = logging.getLogger("archive_platform.vendors.http")


class _Transient(Exception):
    """An attempt failed in a way worth retrying; carries the (redacted) detail."""

    def __init__(self, detail: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.attempts = 1


class AttemptPolicy:
    """The per-attempt half of ``VendorHttpClient`` (uses its ``vendor``, ``_client``,
    ``empty_statuses``, ``retry_statuses``, ``answer_status``, ``key_env_var``, ``redact``, ``_backoff``,
    ``rate_reset_header``, ``_rate_reset_at`` and ``_retry_after_max``)."""

    def _attempt(self, url: httpx.URL, endpoint: str, timeout: float) -> httpx.Response:
        log.debug("%s GET %s", self.vendor, endpoint)
        try:
            response = self._client.get(url, timeout=httpx.Timeout(timeout))
        except httpx.TimeoutException:
            raise _Transient(f"no response within {timeout:g}s (timeout)", None, None) from None
        except httpx.TransportError as exc:
            raise _Transient(
                f"connection error ({type(exc).__name__}: {self.redact(truncate(str(exc)))})",
                None,
                None,
            ) from None
        status = response.status_code
        if 200 <= status < 300 or status in self.empty_statuses:
            self._note_rate_reset(response)
            inner = self.answer_status(response) if self.answer_status and 200 <= status < 300 else None
            if inner is not None and inner[0] in self.retry_statuses:
                said = self.redact(truncate(inner[1])) if inner[1] else ""
                raise _Transient(f"HTTP {status} whose body says status {inner[0]}"
                                 + (f": {said}" if said else ""), inner[0], None)
            return response
        body = self.redact(truncate(response.text))
        detail = f"HTTP {status}: {body}" if body else f"HTTP {status}"
        if status in self.retry_statuses:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is None and status == 429 and self.rate_reset_header is not None:
                header, unit = self.rate_reset_header
                reset = parse_retry_after(response.headers.get(header))
                if reset is not None:
                    retry_after = reset * unit
                elif self._rate_reset_at is not None:
                    # the vendor sends its usage headers on successful responses only (UW:
                    # "Usage Details Are In The Header Of Successful Responses"): wait for the
                    # window reset the last one announced, if it is still ahead
                    left = self._rate_reset_at - time.monotonic()
                    retry_after = left if left > 0 else None
            raise _Transient(f"{detail} ({_hint(status, self.key_env_var)})", status, retry_after)
        raise VendorError(
            f"{self.vendor}: GET {endpoint} failed with {detail}; "
            f"{_hint(status, self.key_env_var)} (not retried)",
            vendor=self.vendor,
            endpoint=endpoint,
            status=status,
            refused=True,
        )

    def _note_rate_reset(self, response: httpx.Response) -> None:
        """Remember when the vendor's rate window resets, from a successful response's header."""
        if self.rate_reset_header is None:
            return
        header, unit = self.rate_reset_header
        reset = parse_retry_after(response.headers.get(header))
        if reset is not None:
            self._rate_reset_at = time.monotonic() + reset * unit

    def _wait(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self._retry_after_max)
        return self._backoff(retry_state)

    def _log_retry(self, retry_state: RetryCallState, endpoint: str, max_attempts: int) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        log.warning(
            "%s GET %s attempt %d/%d failed: %s; retrying in %.2fs",
            self.vendor,
            endpoint,
            retry_state.attempt_number,
            max_attempts,
            getattr(exc, "detail", exc),
            wait,
        )
