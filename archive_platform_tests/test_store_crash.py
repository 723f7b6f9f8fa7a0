"""Atomicity and concurrency through the store: a writer killed mid-write, several writers on
one partition (the lake's own crash and stress tests are test_lake_crash/_concurrency)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path


from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import FULL_DAY, iv_rank_rows, make_table, sorted_rows

REPO = Path(__file__).resolve().parents[1]

_PRELUDE = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import FULL_DAY, make_table, iv_rank_rows
root = Path({root!r})
store = ArchiveStore(root, kind="sim")
"""


def _spawn(tmp_path: Path, body: str, name: str) -> subprocess.Popen:
    script = tmp_path / f"{name}.py"
    script.write_text(_PRELUDE.format(repo=str(REPO), root=str(tmp_path / "archive")) + textwrap.dedent(body))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


def test_writer_killed_at_a_random_moment_leaves_one_whole_version(tmp_path):
    """Rewrite the day in a loop with alternating content; whatever survives is one of them."""
    started = tmp_path / "started"
    proc = _spawn(
        tmp_path,
        f"""
        a = make_table("stocks_1m", FULL_DAY, 20000, tag="a")
        b = make_table("stocks_1m", FULL_DAY, 15000, tag="b")
        store.write_day("stocks_1m", FULL_DAY, a)
        Path({str(started)!r}).write_text("1")
        while True:
            store.write_day("stocks_1m", FULL_DAY, b)
            store.write_day("stocks_1m", FULL_DAY, a)
        """,
        "loop_writer",
    )
    try:
        _wait_for(started, proc)
        time.sleep(0.7)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = ArchiveStore(tmp_path / "archive", kind="sim")
    got = store.read_day("stocks_1m", FULL_DAY)
    tags = {s[0] for s in got["symbol"].to_pylist()}
    assert (got.num_rows, tags) in ((20000, {"a"}), (15000, {"b"}))
    want = make_table("stocks_1m", FULL_DAY, got.num_rows, tag=tags.pop())
    assert sorted_rows(got, ["symbol", "timestamp"]) == sorted_rows(want, ["symbol", "timestamp"])


def test_concurrent_appends_from_several_processes_lose_nothing(tmp_path):
    writers, batches = 3, 5
    go = tmp_path / "go"
    procs = [
        _spawn(
            tmp_path,
            f"""
            Path({str(tmp_path)!r}, "ready{w}").write_text("1")
            while not Path({str(go)!r}).exists():
                time.sleep(0.005)
            for b in range({batches}):
                # a snapshot batch replaces the snapshots it carries, whole: each writer owns
                # snapshots 3w..3w+2 of the day
                rows = [(3 * {w} + k, f"W{w}B{{b}}S{{s}}", float(b)) for k in range(3) for s in range(5)]
                store.append_snapshot("iv_rank", FULL_DAY, iv_rank_rows(FULL_DAY, rows))
                # every writer also rewrites one shared key: last write wins, never lost
                store.append_snapshot("iv_rank", FULL_DAY, iv_rank_rows(FULL_DAY, [(20, "SHARED", {w}.0 + b)]))
            """,
            f"writer{w}",
        )
        for w in range(writers)
    ]
    for w, p in enumerate(procs):  # let the interpreters import before they race
        _wait_for(tmp_path / f"ready{w}", p)
    go.write_text("1")
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    store = ArchiveStore(tmp_path / "archive", kind="sim")
    got = store.read_day("iv_rank", FULL_DAY)
    symbols = got["symbol"].to_pylist()
    # each writer's snapshots hold its last batch (earlier batches of the same snapshots were
    # replaced whole), plus one SHARED row
    expected = {f"W{w}B{batches - 1}S{s}" for w in range(writers) for s in range(5)}
    assert set(symbols) == expected | {"SHARED"}
    assert got.num_rows == len(expected) * 3 + 1
    shared = [r["iv"] for r in got.to_pylist() if r["symbol"] == "SHARED"]
    assert shared[0] in {float(w + batches - 1) for w in range(writers)}  # some writer's last batch
    keys = set(zip(got["snapshot_time"].to_pylist(), symbols))
    assert len(keys) == got.num_rows  # no key twice
