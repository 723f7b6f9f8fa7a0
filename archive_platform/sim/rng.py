"""Counter-based random streams keyed by what they are for, never by call order.

Every random number of the simulated market comes from a Philox generator whose key is a
BLAKE2b hash of (seed, symbol, day, purpose). Python's ``hash()`` is salted per process, so it
is never used: the same key gives the same numbers on every run, process and machine.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_digest(*parts: object, size: int = 16) -> bytes:
    """BLAKE2b digest of the ``repr``-free text form of ``parts`` (ints, strings, dates)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


def stream(*parts: object) -> np.random.Generator:
    """A generator keyed by ``parts`` (e.g. seed, symbol, day, purpose)."""
    key = np.frombuffer(stable_digest(*parts, size=16), dtype="<u8").copy()
    return np.random.Generator(np.random.Philox(key=key))


def stable_hex(*parts: object, size: int = 16) -> str:
    """Hex digest for identifiers (alert ids, exec ids)."""
    return stable_digest(*parts, size=size).hex()
