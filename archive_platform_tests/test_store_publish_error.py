"""A whole-day write whose rows are committed but whose plain-Parquet copy cannot be refreshed
says exactly that: it used to raise "nothing was changed, retry once resolved" while the lake
already held the new rows."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from archive_platform.store import ArchivePublishError, ArchiveStore, ArchiveWriteError
from archive_platform_tests.store_helpers import FULL_DAY, make_table


def test_a_failed_publish_after_the_commit_says_the_rows_are_stored_and_a_compaction_repairs_it(tmp_path):
    store = ArchiveStore(tmp_path / "root", kind="sim")
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))
    plain = store.daily_path("gex", FULL_DAY)
    assert pq.read_table(plain).num_rows == 3
    # a real fault at the plain layout: its day folder is a file, so no copy can be made there
    folder = plain.parent
    plain.unlink()
    folder.rmdir()
    folder.write_text("in the way")
    with pytest.raises(ArchivePublishError) as raised:
        store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5, value_shift=1.0))
    message = raised.value.strerror  # str() adds "[Errno 17] " in front, as for every OSError
    assert isinstance(raised.value, ArchiveWriteError)  # callers catching the parent still see it
    assert message.startswith(f"gex {FULL_DAY.isoformat()}: write_day committed its rows")
    assert str(plain) in message and "nothing was changed" not in message
    assert store.read_day("gex", FULL_DAY).num_rows == 5  # the write took effect, as it says
    # once the fault is gone, compaction (already compacted: it only publishes) repairs the copy
    folder.unlink()
    assert store.compact_day("gex", FULL_DAY).skipped
    assert pq.read_table(plain).num_rows == 5
    store.close()
