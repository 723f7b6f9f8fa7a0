"""Last write wins on the dedup key even where a key part is NULL: orderbook_l2's update_id is
nullable (a venue without update ids), and re-appending such rows stored them twice because the
replacement matched key parts with "=", which never holds for NULL."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from archive_platform.store import ArchiveStore
from archive_platform_tests.store_helpers import make_table

DAY = date(2025, 11, 26)


def _books(n: int, shift: float = 0.0) -> pa.Table:
    t = make_table("orderbook_l2", DAY, n, value_shift=shift)
    i = t.schema.get_field_index("update_id")
    return t.set_column(i, t.schema.field(i), pa.nulls(n, t.schema.field(i).type))


def test_reappending_rows_with_a_null_key_part_replaces_them(tmp_path):
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    store.append_snapshot("orderbook_l2", DAY, _books(6))
    store.append_snapshot("orderbook_l2", DAY, _books(6))  # the same batch again: no effect
    got = store.read_day("orderbook_l2", DAY)
    assert got.num_rows == 6 and got["update_id"].null_count == 6
    store.append_snapshot("orderbook_l2", DAY, _books(4, shift=1.0))  # 4 of them re-delivered
    got = store.read_day("orderbook_l2", DAY)
    assert got.num_rows == 6
    store.close()
