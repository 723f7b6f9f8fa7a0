"""The suite's own pytest hooks (conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_failed_comparison_of_long_lists_is_explained_quickly_on_ci(tmp_path):
    """On CI, pytest's default explanation diffs the lists with difflib.ndiff, which ran past the
    test timeout on two 5,000-element lists differing from a point on (without the hook this run
    is killed at its 60 s timeout); the hook names the first differences instead."""
    from archive_platform_tests import conftest

    (tmp_path / "conftest.py").write_text(open(conftest.__file__).read())
    (tmp_path / "test_long.py").write_text(textwrap.dedent("""
        def test_long():
            a = [None] * 3000 + [0.1 * i for i in range(3000)]
            b = a[:3579] + [x + 1.0 for x in a[3579:]]  # 2,421 values differ
            assert a == b
    """))
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--timeout", "60",
                          "-o", "addopts=", str(tmp_path / "test_long.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"CI": "true", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1, out.stdout[-2000:]
    assert "2421 of the first 6000 positions differ" in out.stdout
    assert "at 3579: 57.900000000000006 != 58.900000000000006" in out.stdout
    assert "INTERNALERROR" not in out.stdout
