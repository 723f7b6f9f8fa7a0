"""A data file the lake catalog lists is gone from storage (deleted by hand, a disk or bucket
rule). Before: every write of that day (the recovery's re-archive included) and every read
failed with DuckDB's "Cannot open file" for ever, because DuckLake reads a file to delete its
rows. Now a compacted day file is put back from its plain-layout link, which still holds it,
and the write goes on; a lost appended part (no second copy) is a ``LostDataFiles`` naming it,
and nothing stored changes."""

from __future__ import annotations

import errno
import os
import shutil

import pyarrow.parquet as pq
import pytest

from archive_platform.lake import Lake, publish
from archive_platform.store import ArchiveStore
from archive_platform.store.errors import ArchiveWriteError
from archive_platform_tests.lake_helpers import D1, OPTIONS, day_table, snapshot, sort, versions
from archive_platform_tests.store_helpers import FULL_DAY, options_snapshot


@pytest.fixture
def lake(tmp_path):
    with Lake(tmp_path / "archive") as lk:
        yield lk


def _reopen(lake: Lake) -> Lake:
    lake.close()  # a fresh connection: nothing of the lost file in DuckDB's caches
    return lake


def test_a_compacted_day_file_deleted_by_hand_is_put_back_from_its_plain_link(lake):
    first = sort(day_table(D1, 3, version=0), OPTIONS.sort_key)
    lake.write_day(OPTIONS, D1, first)
    (data,) = lake.files(OPTIONS, D1)
    plain = lake.plain_file(OPTIONS, D1)
    os.unlink(data)  # the data folder "cleaned up"; the plain layout still links the file
    _reopen(lake)

    lake.compact_day(OPTIONS, D1)  # a no-op once the file is back
    assert data.exists() and os.path.samefile(data, plain)
    assert lake.read_day(OPTIONS, D1).num_rows == first.num_rows

    os.unlink(data)
    _reopen(lake)
    second = sort(day_table(D1, 2, version=1), OPTIONS.sort_key)
    w = lake.write_day(OPTIONS, D1, second)  # the recovery's re-archive of the day
    assert w.rows_written == second.num_rows
    got = lake.read_day(OPTIONS, D1)
    assert got.num_rows == second.num_rows and versions(got) == {1}
    assert pq.read_table(plain).num_rows == second.num_rows

    os.unlink(lake.files(OPTIONS, D1)[0])
    _reopen(lake)
    lake.append(OPTIONS, D1, snapshot(D1, 0, version=2))  # a re-delivery of snapshot 0
    got = lake.read_day(OPTIONS, D1)
    assert got.num_rows == second.num_rows and versions(got) == {1, 2}


def test_a_lost_appended_part_is_named_and_nothing_stored_changes(lake, tmp_path):
    lake.append(OPTIONS, D1, snapshot(D1, 0))
    lake.append(OPTIONS, D1, snapshot(D1, 1))
    parts = lake.files(OPTIONS, D1)
    assert len(parts) == 2
    backup = tmp_path / "backup.parquet"
    shutil.copyfile(parts[0], backup)
    os.unlink(parts[0])
    _reopen(lake)
    before = set(lake.files(OPTIONS, D1))

    for attempt in (lambda: lake.write_day(OPTIONS, D1, sort(day_table(D1, 2, version=1), OPTIONS.sort_key)),
                    lambda: lake.compact_day(OPTIONS, D1),
                    lambda: lake.append(OPTIONS, D1, snapshot(D1, 0, version=1))):
        with pytest.raises(publish.LostDataFiles) as err:
            attempt()
        assert err.value.errno == errno.ENOENT
        assert err.value.lost == [str(parts[0])]
        assert str(parts[0]) in str(err.value) and "restored from a backup" in str(err.value)
        assert "options 2025-11-25" in str(err.value)
        assert set(lake.files(OPTIONS, D1)) == before  # the catalog is as it was
        assert sorted(p.name for p in parts[1].parent.iterdir()) == [parts[1].name]  # no new file left

    with pytest.raises(publish.LostDataFiles, match="neither read nor replaced") as err:
        lake.read_day(OPTIONS, D1)
    assert "nothing was changed" not in str(err.value)

    # the file restored from a backup at its path: the day reads whole and is writable again
    shutil.copyfile(backup, parts[0])
    _reopen(lake)
    assert lake.read_day(OPTIONS, D1).num_rows == 2 * snapshot(D1, 0).num_rows
    lake.write_day(OPTIONS, D1, sort(day_table(D1, 2, version=1), OPTIONS.sort_key))
    assert versions(lake.read_day(OPTIONS, D1)) == {1}


def test_the_store_names_the_partition_and_the_lost_file(tmp_path):
    store = ArchiveStore(tmp_path / "root", kind="sim")
    store.append_snapshot("options", FULL_DAY, options_snapshot(FULL_DAY, 0))
    (part,) = store.partition_files("options", FULL_DAY)
    os.unlink(part)
    store.close()
    store = ArchiveStore(tmp_path / "root", kind="sim")
    with pytest.raises(ArchiveWriteError) as err:
        store.write_day("options", FULL_DAY, options_snapshot(FULL_DAY, 1))
    assert err.value.errno == errno.ENOENT
    assert err.value.strerror.startswith(f"options {FULL_DAY.isoformat()}: write_day failed")
    assert str(part) in err.value.strerror and "restored from a backup" in err.value.strerror
    assert store.partition_files("options", FULL_DAY) == [part]  # nothing changed
    store.close()


@pytest.mark.slow
def test_on_s3_a_compacted_day_object_deleted_from_the_bucket_is_copied_back_from_the_plain_object(tmp_path):
    import logging

    from archive_platform.settings import lake_config
    from archive_platform_tests.s3_helpers import s3_server
    from archive_platform_tests.store_helpers import make_table

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with s3_server() as s3:
        s3.client().create_bucket(Bucket="lost")
        env = {"ARCHIVE_SIM_ROOT": str(tmp_path / "sim"), "ARCHIVE_SIM_S3_URL": "s3://lost/arch",
               "ARCHIVE_S3_ENDPOINT": s3.endpoint_url, "AWS_ACCESS_KEY_ID": "AKIALOSTFILES0000001",
               "AWS_SECRET_ACCESS_KEY": "lost-files-secret"}
        store = ArchiveStore(env["ARCHIVE_SIM_ROOT"], kind="sim", lake=lake_config("sim", env))
        store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 3))
        (data,) = store.lake.files(_td("gex"), FULL_DAY)
        key = data[len("s3://lost/"):]
        s3.client().delete_object(Bucket="lost", Key=key)
        store.close()

        store = ArchiveStore(env["ARCHIVE_SIM_ROOT"], kind="sim", lake=lake_config("sim", env))
        store.write_day("gex", FULL_DAY, make_table("gex", FULL_DAY, 5, value_shift=1.0))
        assert store.read_day("gex", FULL_DAY).num_rows == 5
        keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket="lost")["Contents"]}
        assert key in keys  # put back, then superseded (expiry removes it after the retention)
        store.close()


def _td(name: str):
    from archive_platform.lake import TableDef
    from archive_platform.schemas import spec_for

    return TableDef.from_spec(spec_for(name))
