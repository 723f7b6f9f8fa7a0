"""Property tests: appends in any order, repeated, equal an independent last-write-wins reference
(a snapshot batch replaces every snapshot it carries, whole)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive_platform.schemas import spec_for
from archive_platform.store import ArchiveStore
from archive_platform.store.validate import dedup_and_sort, dedup_last_wins, sort_canonical
from archive_platform_tests.store_helpers import FULL_DAY, HALF_DAY, iv_rank_rows

# Small key space so batches overlap often: 4 snapshots x 4 symbols.
ROW = st.tuples(st.integers(0, 3), st.sampled_from(["AA", "BB", "CC", "DD"]),
                st.floats(0.01, 5.0, allow_nan=False).map(lambda x: round(x, 3)))
BATCH = st.lists(ROW, min_size=1, max_size=8)
# Each step: which batch to append (index into the batch list); repeats are allowed.
SCENARIO = st.lists(BATCH, min_size=1, max_size=5).flatmap(
    lambda batches: st.tuples(
        st.just(batches),
        st.lists(st.integers(0, len(batches) - 1), min_size=1, max_size=8),
        st.sampled_from([FULL_DAY, HALF_DAY]),
        st.booleans(),
    )
)
PROFILE = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _reference(batches: list[list[tuple[int, str, float]]], order: list[int]) -> dict:
    """Last write wins, computed without the store: a batch first drops every snapshot it
    carries, then its rows go in (a later row of the batch overwrites an earlier one)."""
    ref: dict[tuple[int, str], float] = {}
    for i in order:
        snaps = {k for k, _, _ in batches[i]}
        ref = {key: v for key, v in ref.items() if key[0] not in snaps}
        for k, sym, iv in batches[i]:
            ref[(k, sym)] = iv
    return ref


def _as_dict(table, day) -> dict:
    from archive_platform.calendar import session

    open_utc = session(day).open_utc
    return {
        (int((r["snapshot_time"] - open_utc).total_seconds() // 900), r["symbol"]): r["iv"]
        for r in table.to_pylist()
    }


@PROFILE
@given(SCENARIO)
def test_appends_equal_reference_dedup(scenario):
    batches, order, day, compact_midway = scenario
    with tempfile.TemporaryDirectory() as tmp:
        store = ArchiveStore(Path(tmp), kind="sim")
        for step, i in enumerate(order):
            store.append_snapshot("iv_rank", day, iv_rank_rows(day, batches[i]))
            if compact_midway and step == len(order) // 2:
                store.compact_day("iv_rank", day)
        got = store.read_day("iv_rank", day)
        ref = _reference(batches, order)
        assert got.num_rows == len(ref)  # no duplicate keys
        assert _as_dict(got, day) == ref
        store.close()


@settings(PROFILE, max_examples=12)  # replays every append: twice the work per example
@given(SCENARIO)
def test_appending_everything_twice_is_idempotent(scenario):
    batches, order, day, _ = scenario
    with tempfile.TemporaryDirectory() as tmp:
        store = ArchiveStore(Path(tmp), kind="sim")
        for i in order:
            store.append_snapshot("iv_rank", day, iv_rank_rows(day, batches[i]))
        once = store.read_day("iv_rank", day)
        store.append_snapshot("iv_rank", day, iv_rank_rows(day, batches[order[-1]]))
        assert store.read_day("iv_rank", day).equals(once)  # the newest batch again: no change
        for i in order:  # replaying the whole sequence ends in the same state
            store.append_snapshot("iv_rank", day, iv_rank_rows(day, batches[i]))
        assert store.read_day("iv_rank", day).equals(once)
        store.close()


@PROFILE
@given(SCENARIO)
def test_compaction_preserves_content_and_leaves_one_file(scenario):
    batches, order, day, _ = scenario
    with tempfile.TemporaryDirectory() as tmp:
        store = ArchiveStore(Path(tmp), kind="sim")
        for i in order:
            store.append_snapshot("iv_rank", day, iv_rank_rows(day, batches[i]))
        before = store.read_day("iv_rank", day)
        store.compact_day("iv_rank", day)
        [only] = store.partition_files("iv_rank", day)
        assert only.samefile(store.daily_path("iv_rank", day))
        assert pq.ParquetFile(only).metadata.num_rows == before.num_rows
        assert store.read_day("iv_rank", day).equals(before)
        assert _as_dict(before, day) == _reference(batches, order)
        store.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, max_size=30), st.booleans())
def test_dedup_and_sort_equals_hash_dedup_then_sort(rows, fallback):
    """The sort-based fast path agrees with the plain group-by dedup (and keeps the last row)."""
    table = iv_rank_rows(FULL_DAY, rows)
    spec = spec_for("iv_rank")
    if fallback:  # a sort key that is not the dedup key (like uw_flow's) takes the hash path
        spec = replace(spec, sort_key=("iv", "symbol", "snapshot_time"), dedup_key=("snapshot_time", "symbol"))
    fast = dedup_and_sort(spec, table)
    slow = sort_canonical(spec, dedup_last_wins(table, spec.dedup_key))
    assert fast.equals(slow)
    assert _as_dict(fast, FULL_DAY) == _reference([rows], [0])
