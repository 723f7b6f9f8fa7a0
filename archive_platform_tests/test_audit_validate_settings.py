"""Hostile-input audit of batch validation, settings and secrets.

Each test pins a bug found by feeding the archive what a careless vendor or operator would:
a refused batch must name the dataset, column, row and value and leave the stored partition
as it was; a bad setting must fail naming its variable; a secret must never show in repr(),
an exception (nor its chained cause) or a run's logs.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from archive_platform.config import ConfigError
from archive_platform.defs.resources import ArchiveResource, resources_from_env
from archive_platform.defs.vendor_resources.uw import UnusualWhalesResource
from archive_platform.lake.remote import LakeConfig
from archive_platform.schemas import spec_for
from archive_platform.settings import Settings
from archive_platform.store import ArchiveStore
from archive_platform.store.errors import ArchiveValidationError, ArchiveWriteError
from archive_platform.store.validate import dedup_and_sort, dedup_last_wins
from archive_platform_tests.store_helpers import make_table

DAY = date(2025, 11, 26)
SECRET = "Zq7-audit-SECRET-4242"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"ARCHIVE_ROOT": str(tmp_path / "live"), "ARCHIVE_SIM_ROOT": str(tmp_path / "sim"),
            "ARCHIVE_DUCKDB": str(tmp_path / "live.duckdb"),
            "ARCHIVE_SIM_DUCKDB": str(tmp_path / "sim.duckdb"), **extra}


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- validation ---------------------------------------------------------------------------------

def _bad_batches(good: pa.Table) -> dict[str, tuple[pa.Table, str]]:
    """name -> (batch, a regex the refusal must match: dataset, column and row or value)."""
    n = good.num_rows
    vol = good["volume"].to_pylist()
    return {
        "uint64 volume overflowing int64": (
            _set(good, "volume", pa.array(vol[:2] + [2**64 - 1] + vol[3:], pa.uint64())),
            r"^stocks_1m: column 'volume': cannot convert uint64 to int64 without loss at row 2 "
            r"\(value 18446744073709551615\)"),
        "string prices": (
            _set(good, "open", pa.array([str(v) for v in good["open"].to_pylist()])),
            r"^stocks_1m: column 'open' has type string, expected double"),
        "naive timestamps": (
            _set(good, "timestamp", pc.cast(good["timestamp"], pa.timestamp("us"))),
            r"^stocks_1m: column 'timestamp': naive timestamp"),
        "nanoseconds lost": (
            _set(good, "timestamp", pa.array(
                [v.value + (7 if i == 3 else 0) for i, v in enumerate(
                    pc.cast(good["timestamp"], pa.timestamp("ns", tz="UTC")))],
                pa.timestamp("ns", tz="UTC"))),
            r"^stocks_1m: column 'timestamp': cannot convert timestamp\[ns, tz=UTC\] to "
            r"timestamp\[us, tz=UTC\] without loss at row 3"),
        "NaN close": (
            _set(good, "close", pa.array([float("nan")] + good["close"].to_pylist()[1:])),
            r"^stocks_1m: column 'close' has value nan at row 0, breaking the rule 'close is finite'"),
        "negative open": (  # low >= 0 held, and "low <= open" is only a soft rule
            _set(good, "open", pa.array(good["open"].to_pylist()[:1] + [-1.5] + good["open"].to_pylist()[2:])),
            r"^stocks_1m: column 'open' has value -1.5 at row 1, breaking the rule 'open >= 0'"),
        "negative trade count": (
            _set(good, "trade_count", pa.array([-1] + good["trade_count"].to_pylist()[1:], pa.int64())),
            r"^stocks_1m: column 'trade_count' has value -1 at row 0, breaking the rule 'trade_count >= 0'"),
        "null symbol": (
            _set(good, "symbol", pa.array(good["symbol"].to_pylist()[:-1] + [None], pa.string())),
            rf"^stocks_1m: column 'symbol' is not nullable but row {n - 1} is null"),
    }


@pytest.mark.parametrize("case", list(_bad_batches(make_table("stocks_1m", DAY, 5))))
def test_a_refused_batch_names_dataset_column_row_and_leaves_the_partition_as_it_was(tmp_path, case):
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    stored = make_table("stocks_1m", DAY, 5, tag="kept")
    store.write_day("stocks_1m", DAY, stored)
    before_rows, before_files = store.read_day("stocks_1m", DAY), _files(store.root)
    batch, message = _bad_batches(make_table("stocks_1m", DAY, 5, tag="new"))[case]
    for write in (store.append_snapshot, store.write_day):
        with pytest.raises(ArchiveValidationError, match=message):
            write("stocks_1m", DAY, batch)
        assert store.read_day("stocks_1m", DAY).equals(before_rows)
        assert _files(store.root) == before_files
    store.close()


@pytest.mark.parametrize("bad", ["", "SPY ", " SPY", "SP\u200bY", "SPY\n", "\u00a0SPY"])
def test_an_empty_padded_or_invisible_key_value_is_refused(tmp_path, bad):
    """"SPY " or "SPY\u200b" was stored as another symbol than "SPY": never deduplicated
    against it, and missed by every query on SPY."""
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    store.write_day("stocks_1m", DAY, make_table("stocks_1m", DAY, 3, tag="kept"))
    before, files = store.read_day("stocks_1m", DAY), _files(store.root)
    good = make_table("stocks_1m", DAY, 4)
    batch = _set(good, "symbol", pa.array(good["symbol"].to_pylist()[:3] + [bad]))
    with pytest.raises(ArchiveValidationError,
                       match=rf"^stocks_1m: key column 'symbol' has value {re.escape(repr(bad))} at row 3: "
                             "empty, padded with whitespace or holding invisible characters"):
        store.append_snapshot("stocks_1m", DAY, batch)
    assert store.read_day("stocks_1m", DAY).equals(before) and _files(store.root) == files
    unicode = _set(good, "symbol", pa.array(["ÄPPL", "BRK.B", "日本", "X"]))  # visible: kept
    store.append_snapshot("stocks_1m", DAY, unicode)
    assert {"ÄPPL", "BRK.B", "日本"} <= set(store.read_day("stocks_1m", DAY)["symbol"].to_pylist())
    store.close()


def test_a_wrong_day_or_table_type_names_the_dataset(tmp_path):
    from datetime import datetime

    store = ArchiveStore(tmp_path / "sim", kind="sim")
    rows = make_table("stocks_1m", DAY, 2)
    with pytest.raises(ArchiveValidationError, match=r"^stocks_1m: partition day must be a datetime.date"):
        store.write_day("stocks_1m", datetime(2025, 11, 26), rows)
    with pytest.raises(ArchiveValidationError, match=r"^stocks_1m: expected a pyarrow.Table .*got list"):
        store.append_snapshot("stocks_1m", DAY, rows.to_pylist())
    assert store.days("stocks_1m") == [] and not (tmp_path / "sim").exists()


def test_rows_repeated_in_one_batch_with_a_null_key_part_are_stored_once(tmp_path):
    """orderbook_l2's update_id is nullable: the sorted dedup compared key parts with "=",
    which never holds for NULL, so a batch repeating such rows stored every copy."""
    t = make_table("orderbook_l2", DAY, 3)
    i = t.schema.get_field_index("update_id")
    t = t.set_column(i, t.schema.field(i), pa.nulls(3, t.schema.field(i).type))
    spec = spec_for("orderbook_l2")
    again = t.set_column(t.schema.get_field_index("bid_sz"), t.schema.field("bid_sz"),
                         pa.array([[7.0, 7.0, 7.0]] * 3, t.schema.field("bid_sz").type))
    batch = pa.concat_tables([t, again])
    out = dedup_and_sort(spec, batch)
    assert out.num_rows == 3 == dedup_last_wins(batch, spec.dedup_key).num_rows
    assert out["bid_sz"].to_pylist() == [[7.0, 7.0, 7.0]] * 3  # the last copy wins
    store = ArchiveStore(tmp_path / "sim", kind="sim")
    store.append_snapshot("orderbook_l2", DAY, batch)
    got = store.read_day("orderbook_l2", DAY)
    assert got.num_rows == 3 and got["bid_sz"].to_pylist() == [[7.0, 7.0, 7.0]] * 3
    store.write_day("orderbook_l2", DAY, batch)
    assert store.read_day("orderbook_l2", DAY).num_rows == 3
    store.close()


# -- secrets ------------------------------------------------------------------------------------

def test_resolved_resources_never_show_their_secrets(tmp_path, monkeypatch):
    """In a run, Dagster hands the asset resources with the EnvVar values resolved: their repr
    (a log line, a traceback's locals) showed the API key and the S3 keys."""
    env = _env(tmp_path, ARCHIVE_SOURCE_UW_FLOW="unusual_whales", UW_API_KEY=SECRET,
               ARCHIVE_SIM_S3_URL="s3://audit-bucket/sim", AWS_ACCESS_KEY_ID="AKIA" + SECRET,
               AWS_SECRET_ACCESS_KEY="S3" + SECRET)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    resources = resources_from_env(env)
    seen: list[str] = []

    @dg.asset
    def probe(context, vendor_unusual_whales: UnusualWhalesResource, archive: ArchiveResource):
        assert vendor_unusual_whales.api_key == SECRET  # resolved: the client gets the key
        assert archive.aws_secret_access_key == "S3" + SECRET
        for text in (repr(vendor_unusual_whales), str(vendor_unusual_whales), repr(archive),
                     str(archive), repr(archive.lake_config("sim"))):
            seen.append(text)
            context.log.info(text)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([probe], resources=resources, instance=instance)
    assert result.success and len(seen) == 5
    assert "api_key='***'" in seen[0] and "aws_secret_access_key='***'" in seen[2]
    logged = [e.message for e in result.all_events if e.message]
    records = instance.all_logs(result.run_id)
    for text in seen + logged + [r.user_message for r in records]:
        assert SECRET not in text
    # before the run: the EnvVar shows its variable's name, not its value
    assert "UW_API_KEY" in repr(resources["vendor_unusual_whales"])


def _failing_lake(tmp_path, monkeypatch, message: str) -> ArchiveStore:
    from archive_platform.lake import Lake

    def attach_fails(self, *a, **k):
        raise duckdb.IOException(message)

    monkeypatch.setattr(Lake, "__init__", attach_fails)
    return ArchiveStore(tmp_path / "sim", kind="sim", lake=LakeConfig(pg_password=SECRET))


def test_a_lake_that_fails_to_attach_gives_one_write_error_without_the_secret(tmp_path, monkeypatch):
    """The catalog error handler named ``self.lake.location``: when attaching the lake was what
    failed, that attached again and the raw DuckDB error escaped; and the driver's text (which
    may quote a password) was copied into the message and chained as its cause."""
    store = _failing_lake(tmp_path, monkeypatch, f"could not connect: password={SECRET} rejected "
                                                 f"for user:{SECRET}@catalog")
    with pytest.raises(ArchiveWriteError) as info:
        store.write_day("stocks_1m", DAY, make_table("stocks_1m", DAY, 3))
    err = info.value
    assert str(err).startswith("[Errno 5] stocks_1m 2025-11-26: write_day failed in the lake catalog")
    assert "could not connect: password=*** rejected" in str(err)
    shown = "".join(traceback.format_exception(err))
    assert SECRET not in shown and err.__cause__ is None


def test_a_write_error_without_a_secret_keeps_its_cause(tmp_path, monkeypatch):
    store = _failing_lake(tmp_path, monkeypatch, "disk on fire")
    with pytest.raises(ArchiveWriteError, match="disk on fire; nothing was changed") as info:
        store.append_snapshot("stocks_1m", DAY, make_table("stocks_1m", DAY, 3))
    assert isinstance(info.value.__cause__, duckdb.IOException)


# -- settings -----------------------------------------------------------------------------------

def test_a_source_variable_naming_no_dataset_is_refused(tmp_path):
    """A typo (ARCHIVE_SOURCE_STOCKS1M) was ignored: the dataset quietly stayed simulated."""
    with pytest.raises(ConfigError, match=r"^ARCHIVE_SOURCE_STOCKS1M names no dataset \('stocks1m' "
                                          r"is unknown\).*ARCHIVE_SOURCE_STOCKS_1M"):
        Settings.from_env(_env(tmp_path, ARCHIVE_SOURCE_STOCKS1M="polygon", POLYGON_API_KEY="k"))
    ok = Settings.from_env(_env(tmp_path, ARCHIVE_SOURCE_STOCKS_1M="polygon", POLYGON_API_KEY="k",
                                ARCHIVE_SOURCE_UNUSED=""))  # set but empty: nothing to ignore
    assert ok.sources["stocks_1m"] == "polygon"


@pytest.mark.parametrize("value", [f"https://user:{SECRET}@api.unusualwhales.com",
                                   f"ftp://user:{SECRET}@host", f"https://api.x.com/v1?apiKey={SECRET}",
                                   f"https://api.x.com/#{SECRET}"])
def test_a_base_url_holding_a_secret_is_refused_without_repeating_it(tmp_path, value):
    """Base URLs are plain config (the Dagster UI, run config): a key in one was kept, and a
    non-http one was echoed whole in the error."""
    with pytest.raises(ConfigError, match=r"^UW_BASE_URL (holds credentials|has a query string)"
                                          r".*UW_API_KEY.*not shown") as info:
        Settings.from_env(_env(tmp_path, UW_BASE_URL=value))
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("value", ["https://", "http:// spaces here", "https://host:99999",
                                   "api.polygon.io"])
def test_a_malformed_base_url_is_refused_naming_the_variable(tmp_path, value):
    with pytest.raises(ConfigError, match=r"^POLYGON_BASE_URL=.* is not an http\(s\) URL"):
        Settings.from_env(_env(tmp_path, POLYGON_BASE_URL=value))


def test_well_formed_base_urls_are_kept(tmp_path):
    s = Settings.from_env(_env(tmp_path, POLYGON_BASE_URL=" https://api.polygon.io ",
                               THETADATA_BASE_URL="http://127.0.0.1:25503/v3"))
    assert s.vendor["POLYGON_BASE_URL"] == "https://api.polygon.io"
    assert s.vendor["THETADATA_BASE_URL"] == "http://127.0.0.1:25503/v3"


def test_live_and_simulated_roots_and_views_files_never_coincide(tmp_path):
    """Both kinds pointed at one folder loaded fine; the first write of the second kind then
    failed in a run with ArchiveKindError (README: simulated and live data never mix)."""
    same = str(tmp_path / "archive")
    with pytest.raises(ConfigError, match=r"^ARCHIVE_ROOT=.* and ARCHIVE_SIM_ROOT=.* are the same folder"):
        Settings.from_env(_env(tmp_path, ARCHIVE_ROOT=same, ARCHIVE_SIM_ROOT=same + "/"))
    with pytest.raises(ConfigError, match=r"are one inside the other"):
        Settings.from_env(_env(tmp_path, ARCHIVE_ROOT=same, ARCHIVE_SIM_ROOT=same + "/sim"))
    views = str(tmp_path / "views.duckdb")
    with pytest.raises(ConfigError, match=r"^ARCHIVE_DUCKDB and ARCHIVE_SIM_DUCKDB are both"):
        Settings.from_env(_env(tmp_path, ARCHIVE_DUCKDB=views, ARCHIVE_SIM_DUCKDB=views))
    s = Settings.from_env(_env(tmp_path, ARCHIVE_ROOT=str(tmp_path / "a" / "archive"),
                               ARCHIVE_SIM_ROOT=str(tmp_path / "a" / "archive-sim")))  # siblings
    assert s.root("live") != s.root("sim")


@pytest.mark.parametrize("raw", ["\u0663", "1_0", "１０"])
def test_integer_settings_take_ascii_digits_only(tmp_path, raw):
    with pytest.raises(ConfigError, match=r"^ARCHIVE_RECOVERY_LOOKBACK=.* is not an integer"):
        Settings.from_env(_env(tmp_path, ARCHIVE_RECOVERY_LOOKBACK=raw))
    assert Settings.from_env(_env(tmp_path, ARCHIVE_RECOVERY_LOOKBACK=" 12 ")).recovery_lookback == 12


def test_an_s3_endpoint_port_out_of_range_is_refused(tmp_path):
    env = _env(tmp_path, ARCHIVE_S3_URL="s3://audit-bucket/live", AWS_ACCESS_KEY_ID="a",
               AWS_SECRET_ACCESS_KEY="b")
    with pytest.raises(ConfigError, match=r"^ARCHIVE_S3_ENDPOINT='http://minio:99999': port 99999"):
        Settings.from_env({**env, "ARCHIVE_S3_ENDPOINT": "http://minio:99999"})
    s = Settings.from_env({**env, "ARCHIVE_S3_ENDPOINT": "http://minio:9000"})
    assert s.lakes["live"].s3.endpoint == "minio:9000"


def test_settings_repr_hides_the_redis_password(tmp_path):
    """Settings held REDIS_URL (crypto capture) whole: repr(settings) showed its password."""
    s = Settings.from_env(_env(tmp_path, REDIS_URL=f"redis://:{SECRET}@redis:6379/0"))
    assert s.crypto.redis_url == f"redis://:{SECRET}@redis:6379/0"  # the publisher still gets it
    for text in (repr(s), str(s), repr(s.crypto)):
        assert SECRET not in text and "redis_url='redis://***@redis:6379/0'" in text


@pytest.mark.parametrize("value", ["http://127.0.0.1", "127.0.0.1:7497", "gate way", "host/x"])
def test_a_malformed_ib_host_is_refused_naming_the_variable(tmp_path, value):
    with pytest.raises(ConfigError, match=r"^IB_HOST=.* is not a host name or IP address"):
        Settings.from_env(_env(tmp_path, IB_HOST=value))


@pytest.mark.parametrize("value", ["127.0.0.1", "ib-gateway", "gw.internal.example", "::1"])
def test_well_formed_ib_hosts_are_kept(tmp_path, value):
    assert Settings.from_env(_env(tmp_path, IB_HOST=f" {value} ")).vendor["IB_HOST"] == value


@pytest.mark.parametrize("kind,var", [("live", "ARCHIVE_ROOT"), ("sim", "ARCHIVE_SIM_ROOT")])
def test_default_root_is_the_root_the_settings_give(tmp_path, kind, var):
    """Settings stripped the variable, default_root (connect(), the CLI) did not: a trailing
    space from an .env file sent readers to another, empty folder; blank gave a folder "  "."""
    from archive_platform.store import default_root

    padded = _env(tmp_path, **{var: f"{tmp_path / 'padded'}  "})
    assert default_root(kind, padded) == Settings.from_env(padded).root(kind) == tmp_path / "padded"
    blank = {**_env(tmp_path), var: "  "}
    assert default_root(kind, blank) == Settings.from_env(blank).root(kind)
    assert str(default_root(kind, blank)) == {"live": "data/archive", "sim": "data/sim/archive"}[kind]


def test_the_instance_port_is_one_port_not_a_list(tmp_path):
    """libpq takes "5432,5433" (one port per host), so it passed; the instance's storage reads
    DAGSTER_PG_PORT as one integer and failed with a traceback at the first command."""
    pg = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_USER": "u", "DAGSTER_PG_PASSWORD": "p",
          "DAGSTER_PG_DB": "d"}
    with pytest.raises(ConfigError, match=r"^DAGSTER_PG_PORT='5432,5433' is not a port number"):
        Settings.from_env(_env(tmp_path, **pg, DAGSTER_PG_PORT="5432,5433"))
    Settings.from_env(_env(tmp_path, **pg, DAGSTER_PG_PORT="5432"))
