"""The test servers themselves: a throwaway PostgreSQL and an S3-compatible server on loopback."""

from __future__ import annotations

import pytest

from archive_platform_tests.pg_helpers import postgres_server
from archive_platform_tests.s3_helpers import s3_server


def test_s3_server_creates_bucket_and_round_trips_an_object():
    with s3_server() as s3:
        client = s3.client()
        client.create_bucket(Bucket="archive")
        client.put_object(Bucket="archive", Key="stocks/date=2025-11-03/x.parquet", Body=b"PAR1abc")
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["archive"]
        listed = client.list_objects_v2(Bucket="archive", Prefix="stocks/")["Contents"]
        assert [(o["Key"], o["Size"]) for o in listed] == [("stocks/date=2025-11-03/x.parquet", 7)]
        body = client.get_object(Bucket="archive", Key="stocks/date=2025-11-03/x.parquet")["Body"].read()
        assert body == b"PAR1abc"


def test_each_s3_server_starts_empty():
    """moto keeps its state per process: a second server must not see the first one's buckets
    (one test module's bucket would otherwise turn up in the next module's listing)."""
    with s3_server() as s3:
        s3.client().create_bucket(Bucket="left-behind")
        assert [b["Name"] for b in s3.client().list_buckets()["Buckets"]] == ["left-behind"]
    with s3_server() as s3:
        assert s3.client().list_buckets()["Buckets"] == []


@pytest.mark.slow
def test_postgres_server_accepts_sql_on_loopback():
    with postgres_server("probe") as pg:
        pg.query("CREATE TABLE t (a int)")
        pg.query("INSERT INTO t VALUES (1), (2)")
        assert pg.query("SELECT a FROM t ORDER BY a") == [(1,), (2,)]  # committed, seen by a new connection
        assert pg.query("SELECT current_database()")[0][0] == "probe"
        assert pg.query("SHOW port")[0][0] == str(pg.port)
