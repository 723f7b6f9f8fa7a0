"""A manual clock for breakers, limiters and pacers: tests move ``now`` by hand."""

from __future__ import annotations


class Clock:
    """Callable like ``time.monotonic``; returns ``now``, which the test advances."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
