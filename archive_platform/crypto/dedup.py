"""A bounded set of recently seen row keys (pure).

Two overlapping sessions (the 24 h rollover) deliver the same rows, and a Hyperliquid
resubscription replays recent trades; the service drops a row whose key it saw recently.
"""

from __future__ import annotations

from collections import deque

DEDUP_MEMORY = 200_000


class RecentKeys:
    """A bounded set of the most recent keys (overlapping sessions and trade replays repeat rows)."""

    def __init__(self, size: int = DEDUP_MEMORY) -> None:
        self.size, self.keys, self.order = size, set(), deque()

    def add(self, key: tuple) -> bool:
        """True when the key is new."""
        if key in self.keys:
            return False
        self.keys.add(key)
        self.order.append(key)
        if len(self.order) > self.size:
            self.keys.discard(self.order.popleft())
        return True
