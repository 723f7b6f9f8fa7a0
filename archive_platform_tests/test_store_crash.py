"""Atomicity and concurrency: writers killed mid-write, several writers on one partition."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import FULL_DAY, iv_rank_rows, make_table, sorted_rows

REPO = Path(__file__).resolve().parents[1]

_PRELUDE = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from archive_platform.store import ArchiveStore
from archive_platform.store import files as F
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


def test_writer_killed_before_the_rename_leaves_previous_file_whole(tmp_path):
    """A hook pauses the writer after the temp file is complete; SIGKILL it there."""
    ready = tmp_path / "paused"
    proc = _spawn(
        tmp_path,
        f"""
        store.write_day("stocks_1m", FULL_DAY, make_table("stocks_1m", FULL_DAY, 500))
        real = F._install
        def pause(tmp, final):
            Path({str(ready)!r}).write_text(str(tmp))
            time.sleep(120)
            real(tmp, final)
        F._install = pause
        store.write_day("stocks_1m", FULL_DAY, make_table("stocks_1m", FULL_DAY, 900, tag="new"))
        """,
        "pause_writer",
    )
    try:
        _wait_for(ready, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    tmp_file = Path(ready.read_text())
    assert tmp_file.exists() and tmp_file.stat().st_size > 0  # the new content never got renamed in
    store = ArchiveStore(tmp_path / "archive", kind="sim")
    expected = make_table("stocks_1m", FULL_DAY, 500)
    assert sorted_rows(store.read_day("stocks_1m", FULL_DAY), ["symbol", "timestamp"]) == sorted_rows(
        expected, ["symbol", "timestamp"]
    )
    assert store.partition_files("stocks_1m", FULL_DAY) == [store.daily_path("stocks_1m", FULL_DAY)]
    # the lock died with the writer: the next write proceeds and clears the temp file
    store.append_snapshot("stocks_1m", FULL_DAY, make_table("stocks_1m", FULL_DAY, 3, tag="z"))
    assert not tmp_file.exists()
    assert store.read_day("stocks_1m", FULL_DAY).num_rows == 503


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
                rows = [(k, f"W{w}B{{b}}S{{s}}", float(b)) for k in range(3) for s in range(5)]
                store.append_snapshot("iv_rank", FULL_DAY, iv_rank_rows(FULL_DAY, rows))
                # every writer also rewrites one shared key: last write wins, never lost
                store.append_snapshot("iv_rank", FULL_DAY, iv_rank_rows(FULL_DAY, [(0, "SHARED", {w}.0 + b)]))
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
    expected = {f"W{w}B{b}S{s}" for w in range(writers) for b in range(batches) for s in range(5)}
    assert set(symbols) == expected | {"SHARED"}
    assert got.num_rows == len(expected) * 3 + 1
    shared = [r["iv"] for r in got.to_pylist() if r["symbol"] == "SHARED"]
    assert shared[0] in {float(w + batches - 1) for w in range(writers)}  # some writer's last batch
    # the invariant the views rely on: no key in two files
    on_disk = sum(pq.ParquetFile(p).metadata.num_rows for p in store.partition_files("iv_rank", FULL_DAY))
    assert on_disk == got.num_rows


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_lock_file_is_not_a_parquet_file(tmp_path):
    store = ArchiveStore(tmp_path / "archive", kind="sim")
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 2))
    names = sorted(p.name for p in store.partition_dir("gex", FULL_DAY).iterdir())
    assert names == [".lock", "gex_20251126.parquet"]
