"""The HTTP policy every vendor client owns: timeouts, retries, breaker, rate limit, redaction.

One ``VendorHttpClient`` per source instance. Per request:

1. the vendor's circuit breaker (pybreaker) admits the call (or ``CircuitOpenError`` at once);
2. each attempt takes a rate-limiter token, is sent with a timeout, and is logged at debug with
   the redacted URL (headers are never logged);
3. 429, 5xx, timeouts, connection errors and the client's extra ``retry_statuses`` are retried
   with exponential backoff and jitter (tenacity), honouring ``Retry-After`` (capped), or for a
   429 without it the vendor's rate-window reset header (``rate_reset_header``), read from the
   429 itself or else remembered from the last successful response. The time
   spent waiting for answers is bounded by ``deadline`` (default: one ``timeout``): each
   attempt gets at most what is left of it, so a vendor that answers slowly costs one timeout,
   not ``max_attempts`` of them;
4. 400/401/403/404/422 and every other non-2xx fail at once with a ``VendorError`` (marked
   ``refused``) naming the vendor, the redacted endpoint, the status and what to check;
5. ``empty_statuses`` (ThetaData 472 NO_DATA) are answers meaning "no data", not errors.

A call that still fails after its retries counts as one failure for the breaker; client errors
(4xx) do not, since they say nothing about the vendor's health.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import httpx
import pybreaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from archive_platform.vendors.errors import CircuitOpenError, PayloadError, VendorError
from archive_platform.vendors.http_attempt import AttemptPolicy, _Transient
from archive_platform.vendors.httputil import parse_retry_after, path_segment
from archive_platform.vendors.redact import protect_third_party_logs, redact, redact_url, truncate
from archive_platform.vendors.resilience import (
    HALF_OPEN,
    CircuitBreaker,
    RateLimiter,
    breaker_for,
    circuit_open_error,
    limiter_for,
    new_breaker,
    reset_registries,
)

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "PayloadError",
    "RateLimiter",
    "VendorError",
    "VendorHttpClient",
    "breaker_for",
    "limiter_for",
    "new_breaker",
    "parse_retry_after",
    "path_segment",
    "redact",
    "redact_url",
    "reset_registries",
    "truncate",
]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_SECRET_HEADERS = {"authorization", "x-api-key", "apikey", "api-key", "token"}


class VendorHttpClient(AttemptPolicy):
    """Synchronous HTTP client of one vendor with the project's retry/breaker/redaction policy.

    ``secret_params`` are query params that carry keys (e.g. ``{"apiKey": key}``): sent on every
    request, including absolute pagination URLs, and always redacted. ``secrets`` are further
    strings to redact (a bearer token is picked up from ``headers`` automatically).
    ``key_env_var`` names the environment variable of the key in 401/403 hints.
    ``timeout`` bounds one attempt; ``deadline`` (default ``timeout``) bounds the time all the
    attempts of one request spend waiting for answers (backoff sleeps not included).
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secret_params: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        key_env_var: str | None = None,
        timeout: float = 15.0,
        deadline: float | None = None,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_max: float = 120.0,
        rate_reset_header: tuple[str, float] | None = None,
        retry_statuses: Collection[int] = (),
        empty_statuses: Collection[int] = (),
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        answer_status: Callable[[httpx.Response], tuple[int, str] | None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if timeout <= 0 or (deadline is not None and deadline < timeout):
            raise ValueError(
                f"{vendor}: timeout must be > 0 and deadline >= timeout, got {timeout}, {deadline}"
            )
        self.vendor = vendor
        self.base_url = httpx.URL(base_url)
        self.key_env_var = key_env_var
        self.timeout = timeout
        self.deadline = timeout if deadline is None else deadline
        self.max_attempts = max_attempts
        self.retry_statuses = RETRY_STATUSES | frozenset(retry_statuses)
        self.empty_statuses = frozenset(empty_statuses)
        self.breaker = breaker if breaker is not None else breaker_for(vendor)
        self.limiter = limiter
        self._secret_params = dict(secret_params or {})
        found = [v for k, v in (headers or {}).items() if k.lower() in _SECRET_HEADERS]
        found += [v.split(" ", 1)[1] for v in found if " " in v]
        self._secrets = tuple(s for s in [*secrets, *self._secret_params.values(), *found] if s)
        protect_third_party_logs(self._secrets, self._secret_params.keys())
        self._sleep = sleep
        #: a vendor that reports failures inside a 2xx answer (Barchart's ``status.code``):
        #: ``(code, message)`` of that in-body status, or None; a code in ``retry_statuses`` is
        #: retried like the same HTTP status, with the same backoff, deadline and breaker
        self.answer_status = answer_status
        self._backoff = wait_exponential_jitter(
            multiplier=backoff_initial, max=backoff_max, jitter=backoff_initial
        )
        self._retry_after_max = retry_after_max
        #: (header, seconds per unit): the vendor's own "rate window resets in" header, used
        #: after a 429 without Retry-After (UW: x-uw-req-per-minute-reset, in ms)
        self.rate_reset_header = rate_reset_header
        #: monotonic instant the vendor's rate window resets, as the last successful response
        #: said (UW sends its usage headers on successful responses only); None until known
        self._rate_reset_at: float | None = None
        self._client = httpx.Client(
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    # -- public ---------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """``text`` with this client's secrets removed (use on anything built from responses)."""
        return redact(text, self._secrets)

    def redact_url(self, url: str | httpx.URL) -> str:
        return redact_url(url, self._secret_params.keys(), self._secrets)

    def url_for(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> httpx.URL:
        """The full request URL, secret params included (never log or store it unredacted).

        An absolute URL (a pagination link) keeps its path and query but is re-rooted on the
        configured base URL's scheme and host: keys only ever go to the host we were given, and
        ThetaData's "use one host string per session" rule holds.
        """
        if path_or_url.startswith(("http://", "https://")):
            given = httpx.URL(path_or_url)
            url = self.base_url.copy_with(path=given.path, query=given.query or None)
        else:
            base_path = self.base_url.path.rstrip("/")
            url = self.base_url.copy_with(
                path=base_path + "/" + path_or_url.lstrip("/"), query=None
            )
        merged = {k: v for k, v in (params or {}).items() if v is not None}
        merged.update(self._secret_params)
        return url.copy_merge_params(merged) if merged else url

    def endpoint(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> str:
        """The redacted request URL: safe for messages, logs and metadata."""
        return self.redact_url(self.url_for(path_or_url, params))

    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        """GET with the full policy; returns a 2xx response or one of ``empty_statuses``."""
        url = self.url_for(path_or_url, params)
        endpoint = self.redact_url(url)
        try:
            with self.breaker.calling():
                # the half-open trial is a single attempt: one probe, not a burst of retries
                trial = self.breaker.current_state == HALF_OPEN
                return self._with_retries(url, endpoint, 1 if trial else self.max_attempts)
        except pybreaker.CircuitBreakerError:
            raise circuit_open_error(self.breaker, self.vendor, endpoint) from None
        except _Transient as exc:
            raise VendorError(
                f"{self.vendor}: GET {endpoint} failed after {exc.attempts} attempt(s): {exc.detail}",
                vendor=self.vendor,
                endpoint=endpoint,
                status=exc.status,
            ) from None

    def _with_retries(self, url: httpx.URL, endpoint: str, max_attempts: int) -> httpx.Response:
        spent, attempts = [0.0], [0]  # seconds spent waiting for answers; attempts made

        def stop(rs: RetryCallState) -> bool:
            return rs.attempt_number >= max_attempts or spent[0] >= self.deadline - 1e-3

        def attempt() -> httpx.Response:
            if self.limiter is not None:
                self.limiter.acquire()  # waiting for our own rate limit is not the vendor's time
            timeout = min(self.timeout, max(self.deadline - spent[0], 1e-3))
            attempts[0] += 1
            start = time.monotonic()
            try:
                return self._attempt(url, endpoint, timeout)
            finally:
                spent[0] += time.monotonic() - start

        retrying = Retrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=lambda rs: self._log_retry(rs, endpoint, max_attempts),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Transient as exc:
            exc.attempts = attempts[0]
            if spent[0] >= self.deadline - 1e-3 and exc.attempts < max_attempts:
                exc.detail += f"; gave up: the request deadline of {self.deadline:g}s is spent"
            raise

    def is_empty(self, response: httpx.Response) -> bool:
        """True when the vendor answered with one of its "no data" statuses."""
        return response.status_code in self.empty_statuses

    def get_json(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> Any:
        """``get`` and decode JSON; None for an ``empty_statuses`` answer."""
        response = self.get(path_or_url, params)
        if self.is_empty(response):
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            endpoint = self.redact_url(response.request.url)
            raise PayloadError(
                f"{self.vendor}: GET {endpoint} returned invalid JSON ({exc}): "
                f"{self.redact(truncate(response.text))}",
                vendor=self.vendor,
                endpoint=endpoint,
                status=response.status_code,
            ) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> VendorHttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
