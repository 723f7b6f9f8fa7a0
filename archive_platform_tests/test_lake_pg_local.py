"""A lake whose catalog is in PostgreSQL and whose data is on the local disk: a whole-day
write's transaction is open on the commit worker while the day is encoded (``Lake._commit_file``),
here on a PostgreSQL connection rather than SQLite's."""

from __future__ import annotations

import glob

import pytest

from archive_platform.lake import Lake
from archive_platform_tests.lake_helpers import D1, D2, OPTIONS, day_table, snapshot
from archive_platform_tests.pg_helpers import postgres_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg():
    with postgres_server("lake") as server:
        yield server


def test_whole_day_writes_commit_or_roll_back_with_a_postgres_catalog(pg, tmp_path, monkeypatch):
    from archive_platform.lake import parquet

    catalog = f"postgres:host={pg.host} port={pg.port} dbname={pg.db} user={pg.user}"
    with Lake(tmp_path / "root", catalog=catalog) as lake:
        for k in range(3):
            lake.append(OPTIONS, D1, snapshot(D1, k))
        lake.write_day(OPTIONS, D2, day_table(D2, 2))
        first = lake.snapshot_id()

        def failing(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(parquet, "encode", failing)
        with pytest.raises(OSError, match="No space left"):
            lake.compact_day(OPTIONS, D1)
        monkeypatch.undo()
        assert lake.snapshot_id() == first
        assert len(lake.files(OPTIONS, D1)) == 3 and lake.read_day(OPTIONS, D1).num_rows == 360

        w = lake.compact_day(OPTIONS, D1)
        assert w.rows_written == 360 and lake.snapshot_id() == first + 1
        assert len(lake.files(OPTIONS, D1)) == 1
        plain = glob.glob(str(lake.root / "options" / "date=2025-11-25" / "*.parquet"))
        assert [p.rsplit("/", 1)[-1] for p in plain] == ["options_20251125.parquet"]
        assert lake.write_day(OPTIONS, D2, day_table(D2, 1, version=3)).rows_written == 120
        assert lake.read_day(OPTIONS, D2).num_rows == 120
        live = lake.con.execute("SELECT count(*) FROM ducklake_list_files('lake', 'options')").fetchone()[0]
        assert live == 2
