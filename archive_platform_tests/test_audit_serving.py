"""Audit of the reader entry point (``archive_platform.connect()``, ``lake.connect``): the errors a
hostile analyst gets for a lake catalog that holds no lake yet and for an unknown ``kind``."""

from __future__ import annotations

import pytest

import archive_platform
from archive_platform.lake.catalog import LakeLocation


def test_a_catalog_file_without_a_lake_is_nothing_written_yet(tmp_path):
    """A writer creates the SQLite catalog file (WAL) before it attaches and creates the lake in
    it; a reader in between (or after that writer died) got DuckDB's "creating a new DuckLake is
    explicitly disabled" instead of the FileNotFoundError of a root with nothing written."""
    root = tmp_path / "root"
    LakeLocation.for_root(root).prepare()  # what Lake() does before attaching read-write
    with pytest.raises(FileNotFoundError, match="nothing has been written to .*root yet"):
        archive_platform.connect(root=root)
    # and the reader created no lake in that file
    with pytest.raises(FileNotFoundError, match="nothing has been written"):
        archive_platform.connect(root=root)


def test_an_unknown_kind_is_a_value_error_with_a_root_too(tmp_path):
    """``kind`` picks the lake settings even when ``root`` is given: an unknown one was a bare
    KeyError('bogus') from the settings."""
    with pytest.raises(ValueError, match="kind must be 'live' or 'sim', got 'bogus'"):
        archive_platform.connect(root=tmp_path / "root", kind="bogus")


def test_the_views_file_survives_a_column_no_compacted_day_has_yet(tmp_path):
    """A dataset whose schema gained a column (the lake adds it on the next write) has old
    compacted days without it: the views file's CAST of the column failed to bind, and the whole
    refresh (every dataset's view) failed until a day with the column was compacted. The column
    is now a typed NULL until then."""
    import dataclasses

    import duckdb
    import pyarrow as pa

    from archive_platform.schemas import spec_for
    from archive_platform.store import ArchiveStore
    from archive_platform.views import refresh_views
    from archive_platform_tests.store_helpers import FULL_DAY, make_table

    store = ArchiveStore(tmp_path / "root", kind="sim")
    store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))
    store.close()
    old = spec_for("gex")
    grown = dataclasses.replace(old, schema=old.schema.append(pa.field("new_col", pa.float64())),
                                units={**old.units, "new_col": "a column added later"})
    db = tmp_path / "archive.duckdb"
    assert refresh_views(tmp_path / "root", db, datasets=[grown]) == ["gex"]
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(new_col), min(date) FROM gex").fetchone() == (3, 0, FULL_DAY)
        assert dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE gex)").fetchall())["new_col"] == "DOUBLE"
    finally:
        con.close()


def test_a_first_write_while_connect_runs_leaves_the_dataset_queryable(tmp_path, monkeypatch):
    """``lake.connect`` makes a view of each lake table it lists, then ``prepare`` lists the
    tables again to add the empty ones: a dataset whose first write committed in between was in
    neither (no view, no empty table), so its name did not resolve in that connection."""
    import archive_platform.lake as lake_pkg
    from archive_platform.store import ArchiveStore
    from archive_platform_tests.store_helpers import FULL_DAY, make_table, options_snapshot

    store = ArchiveStore(tmp_path / "root", kind="sim")
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    real = lake_pkg.connect

    def connect_then_a_writer_commits(*args, **kwargs):
        con = real(*args, **kwargs)
        store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))  # gex's first write
        return con

    monkeypatch.setattr(lake_pkg, "connect", connect_then_a_writer_commits)
    con = archive_platform.connect(root=tmp_path / "root")
    try:
        assert con.execute("SELECT count(*) FROM options").fetchone() == (12,)
        assert con.execute("SELECT count(*), min(date) FROM gex").fetchone() == (3, FULL_DAY)
    finally:
        con.close()
        store.close()


def test_a_dataset_first_written_after_connect_shows_its_rows_in_that_connection(tmp_path):
    """connect() gave a dataset without a lake table an empty stand-in, which never showed the
    rows of its first write made while the connection was open. The store now gives every
    dataset its table before its first write, so a reader follows each one from then on."""
    from archive_platform.store import ArchiveStore
    from archive_platform_tests.store_helpers import FULL_DAY, make_table, options_snapshot

    store = ArchiveStore(tmp_path / "root", kind="sim")
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    con = archive_platform.connect(root=tmp_path / "root")
    try:
        assert con.execute("SELECT count(*) FROM gex").fetchone() == (0,)
        store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))  # gex's first write
        assert con.execute("SELECT count(*), min(date) FROM gex").fetchone() == (3, FULL_DAY)
        # the tables of datasets never written are empty and typed, like the stand-ins were
        assert con.execute("SELECT count(*) FROM crypto_trades").fetchone() == (0,)
        assert "date" in [r[0] for r in con.execute("DESCRIBE crypto_trades").fetchall()]
    finally:
        con.close()
        store.close()
