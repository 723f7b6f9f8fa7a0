"""Suite-wide pytest hooks."""

from __future__ import annotations

from collections.abc import Sequence

LONG = 100


def pytest_assertrepr_compare(op, left, right):
    """A short explanation for ``==`` between long sequences.

    With the ``CI`` variable set, pytest explains a failed ``==`` between sequences with a full
    ``difflib.ndiff`` of their pretty-printed forms, which on two 5,000-element lists ran past the
    600 s test timeout; the timeout then crashed pytest's report (INTERNALERROR, exit 3) and ended
    the suite after 27 tests. This names the lengths and the first differing positions instead.
    """
    if op != "==" or not all(isinstance(x, Sequence) and not isinstance(x, (str, bytes)) for x in (left, right)):
        return None
    if max(len(left), len(right)) <= LONG:
        return None
    differ = [i for i, (a, b) in enumerate(zip(left, right)) if not (a is b or a == b)]
    lines = [f"{type(left).__name__} of {len(left)} == {type(right).__name__} of {len(right)}"]
    if len(left) != len(right):
        lines.append(f"lengths differ: {len(left)} != {len(right)}")
    lines.append(f"{len(differ)} of the first {min(len(left), len(right))} positions differ")
    lines += [f"  at {i}: {left[i]!r} != {right[i]!r}" for i in differ[:5]]
    return lines
