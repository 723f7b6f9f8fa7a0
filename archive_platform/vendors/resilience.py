"""Per-vendor circuit breaker (pybreaker) and rate limits (pyrate-limiter), in-process.

Both protect a vendor from us and us from a vendor within one process. Caps across processes and
runs (e.g. "at most 2 concurrent ThetaData requests") come from Dagster concurrency pools on the
assets, not from here.

* ``new_breaker`` builds a ``pybreaker.CircuitBreaker`` whose clock is injectable (tests move a
  manual clock; production uses ``time.monotonic``, so a wall-clock jump cannot open or close
  it). Callers guard a call with ``breaker.calling()``, which - unlike ``breaker.call`` - does
  not hold the breaker's lock while the guarded code runs (network I/O, retries, backoff).
* ``RateLimiter`` is a token bucket: pyrate-limiter's ``TokenBucket`` algorithm in a
  ``StateBucket``. ``HistoricalPacer`` (IB) is pyrate-limiter's sliding-window log
  (``InMemoryBucket``) with two rates, 1 per ``min_interval`` and ``max_requests`` per
  ``window``. Both reserve their slot under the bucket's lock and then sleep once, through an
  injectable ``sleep``; pyrate-limiter's own ``Limiter`` is not used because it sleeps with
  ``time.sleep`` directly, adds a 50 ms buffer to every wait and starts a background leak
  thread, none of which a test with a manual clock can drive.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pybreaker
from pyrate_limiter import AbstractClock, InMemoryBucket, Rate, RateItem, StateBucket, TokenBucket

from archive_platform.vendors.errors import CircuitOpenError, VendorError

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
CircuitBreaker = pybreaker.CircuitBreaker


class _ClockStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker's memory storage measuring the open period with an injectable clock.

    pybreaker compares ``datetime.now(UTC)`` with ``opened_at + reset_timeout``; this storage
    records the opening instant on ``clock`` and reports ``opened_at`` as "now minus the time
    elapsed on ``clock``", so the comparison follows ``clock``.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(CLOSED)
        self._clock = clock
        self._opened_on_clock: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self._opened_on_clock is None:
            return None
        elapsed = self._clock() - self._opened_on_clock
        return datetime.now(timezone.utc) - timedelta(seconds=elapsed)

    @opened_at.setter
    def opened_at(self, _wall: datetime) -> None:
        self._opened_on_clock = self._clock()

    def seconds_open(self) -> float:
        return 0.0 if self._opened_on_clock is None else self._clock() - self._opened_on_clock


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, VendorError) and exc.refused


def new_breaker(
    fail_max: int = 5,
    reset_timeout: float = 60.0,
    *,
    clock: Callable[[], float] = time.monotonic,
    name: str | None = None,
) -> pybreaker.CircuitBreaker:
    """A breaker that opens after ``fail_max`` consecutive failed calls for ``reset_timeout`` s.

    After the pause one trial call goes through (half-open): success closes it, failure re-opens
    it. The failing call itself raises its own error (``throw_new_error_on_trip=False``).
    A ``VendorError`` with ``refused`` set (the vendor answered and refused the request) counts
    as a success: it says nothing about the vendor's health.
    """
    if fail_max < 1:
        raise ValueError(f"fail_max must be >= 1, got {fail_max}")
    return pybreaker.CircuitBreaker(
        fail_max=fail_max,
        reset_timeout=reset_timeout,
        state_storage=_ClockStorage(clock),
        throw_new_error_on_trip=False,
        exclude=[_refused],
        name=name,
    )


def circuit_open_error(
    breaker: pybreaker.CircuitBreaker, vendor: str, endpoint: str = ""
) -> CircuitOpenError:
    """The project's error for a call the open ``breaker`` refused (no request was sent)."""
    storage = breaker._state_storage  # noqa: SLF001 (ours: see new_breaker)
    opened = storage.seconds_open() if isinstance(storage, _ClockStorage) else 0.0
    wait = max(0.0, breaker.reset_timeout - opened)
    return CircuitOpenError(
        f"{vendor}: circuit breaker open after {breaker.fail_max} consecutive failed "
        f"requests; refusing {endpoint or 'the call'} for another {wait:.0f}s "
        "(check the vendor's status and our network; the breaker resets on its own)",
        vendor=vendor,
        endpoint=endpoint,
    )


class _Clock(AbstractClock):
    """pyrate-limiter clock (integer ms) over a seconds callable like ``time.monotonic``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def now(self) -> int:
        return math.floor(self.clock() * 1000)


def _reserve(bucket, name: str, clock: Callable[[], float]) -> float:
    """Admit one item at the earliest instant the bucket allows; seconds from now until then.

    The item is put at a future timestamp when needed (as pyrate-limiter's own ``Limiter``
    does), so concurrent callers queue behind each other instead of all waking at once.
    """
    now = clock()
    item = RateItem(name, math.floor(now * 1000))
    while not bucket.put(item):
        wait_ms = bucket.waiting(item)
        if wait_ms < 0:
            raise ValueError(f"{name}: one request can never fit the rates {bucket.rates}")
        item.timestamp += max(1, wait_ms)
    return max(0.0, item.timestamp / 1000.0 - now)


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
        self.rate, self.burst = float(rate_per_second), int(burst)
        per_s = Fraction(rate_per_second).limit_denominator(1000)  # 5/60 -> 1 per 12 s, exactly
        rate = Rate(per_s.numerator, per_s.denominator * 1000, burst=self.burst)
        self.bucket = StateBucket([rate], algorithm=TokenBucket(), clock=_Clock(clock))
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the time slept."""
        with self._lock:
            wait = _reserve(self.bucket, "requests", self._clock)
        if wait > 0:
            self._sleep(wait)
        return wait


class HistoricalPacer:
    """Spaces requests: >= ``min_interval`` s apart and <= ``max_requests`` per ``window`` s.

    IB's documented historical-data limits are 60 requests per 10 minutes and no bursts; the
    newer page says 1-min bars are exempt, but soft throttling still happens, so both are kept.
    Intervals are whole milliseconds, rounded up (stricter); pyrate-limiter's sliding window
    adds 1 ms past each bound. A rate the other one already implies is dropped, because
    pyrate-limiter requires rate lists ordered generous-before-tight.
    """

    def __init__(
        self,
        *,
        min_interval: float = 1.0,
        max_requests: int = 60,
        window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_requests < 1 or window <= 0 or min_interval < 0:
            raise ValueError("pacer needs max_requests >= 1, window > 0, min_interval >= 0")
        self.min_interval, self.max_requests, self.window = min_interval, max_requests, window
        gap, span = math.ceil(min_interval * 1000), math.ceil(window * 1000)
        if gap == 0:
            rates = [Rate(max_requests, span)]
        elif max_requests == 1:
            rates = [Rate(1, max(gap, span))]
        elif span <= gap or max_requests * gap >= span:
            rates = [Rate(1, gap)]  # the spacing alone keeps any window under max_requests
        else:
            rates = [Rate(1, gap), Rate(max_requests, span)]
        self.bucket = InMemoryBucket(rates)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until one more request is allowed, record it, and return the seconds slept."""
        with self._lock:
            self.bucket.leak(math.floor(self._clock() * 1000))  # forget requests out of every window
            delay = _reserve(self.bucket, "historical", self._clock)
        if delay > 0:
            self._sleep(delay)
        return delay


_registry_lock = threading.Lock()
_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_limiters: dict[str, RateLimiter] = {}


def breaker_for(vendor: str) -> pybreaker.CircuitBreaker:
    """The process-wide breaker of ``vendor`` (created with defaults on first use)."""
    with _registry_lock:
        if vendor not in _breakers:
            _breakers[vendor] = new_breaker(name=vendor)
        return _breakers[vendor]


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
