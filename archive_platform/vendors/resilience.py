"""Per-vendor circuit breaker and token-bucket rate limiter (in-process, thread-safe).

Both protect a vendor from us and us from a vendor within one process. Caps across processes and
runs (e.g. "at most 2 concurrent ThetaData requests") come from Dagster concurrency pools on the
assets, not from here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from archive_platform.vendors.errors import CircuitOpenError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failed requests; half-open after a pause.

    A "failed request" is one that still failed after its retries (a transient failure that a
    retry fixed is not a failure). While open, ``before_call`` raises ``CircuitOpenError`` at once,
    so a dead vendor costs nothing. After ``reset_timeout`` seconds one trial call is let through
    (half-open): success closes the breaker, failure re-opens it for another ``reset_timeout``.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at >= self.reset_timeout:
            return HALF_OPEN
        return OPEN

    def before_call(self, vendor: str, endpoint: str = "") -> bool:
        """Admit a call or raise ``CircuitOpenError``; returns True when it is the half-open trial."""
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return False
            if state == HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            wait = max(0.0, self.reset_timeout - (self._clock() - (self._opened_at or 0.0)))
        raise CircuitOpenError(
            f"{vendor}: circuit breaker open after {self.failure_threshold} consecutive failed "
            f"requests; refusing {endpoint or 'the call'} for another {wait:.0f}s "
            "(check the vendor's status and our network; the breaker resets on its own)",
            vendor=vendor,
            endpoint=endpoint,
        )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False


class RateLimiter:
    """Token bucket: ``rate_per_second`` sustained, up to ``burst`` requests back to back."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError(
                f"rate_per_second must be > 0 and burst >= 1, got {rate_per_second}, {burst}"
            )
        self.rate = float(rate_per_second)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            # Reserve the token now (balance may go negative) so concurrent callers queue up
            # behind each other instead of all waking at once.
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait


_registry_lock = threading.Lock()
_breakers: dict[str, CircuitBreaker] = {}
_limiters: dict[str, RateLimiter] = {}


def breaker_for(vendor: str) -> CircuitBreaker:
    """The process-wide breaker of ``vendor`` (created with defaults on first use)."""
    with _registry_lock:
        return _breakers.setdefault(vendor, CircuitBreaker())


def limiter_for(vendor: str, rate_per_second: float, burst: int = 1) -> RateLimiter:
    """The process-wide limiter of ``vendor``; the first caller's rate wins."""
    with _registry_lock:
        if vendor not in _limiters:
            _limiters[vendor] = RateLimiter(rate_per_second, burst)
        return _limiters[vendor]


def reset_registries() -> None:
    """Forget every shared breaker and limiter (tests; a long-lived process after reconfiguring)."""
    with _registry_lock:
        _breakers.clear()
        _limiters.clear()
