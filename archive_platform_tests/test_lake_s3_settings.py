"""Settings of a lake on S3 / PostgreSQL: defaults, validation naming the variable, secrets kept
out of ``Settings`` and reprs, and the Dagster resource handing credentials over as ``EnvVar``."""

from __future__ import annotations

import dagster as dg
import pytest

from archive_platform.config import ConfigError
from archive_platform.defs.resources import ArchiveResource, resources_from_settings
from archive_platform.settings import Settings, lake_config

KEY, SECRET, PG_PW = "AKIAEXAMPLEKEY42", "s3cret-value-never-shown", "pg-password-never-shown"
ENV = {"ARCHIVE_S3_URL": "s3://market-archive/live/", "ARCHIVE_S3_ENDPOINT": "http://127.0.0.1:9000",
       "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
       "ARCHIVE_LAKE_CATALOG": "postgres:host=db.internal port=5433 dbname=lake user=archive",
       "ARCHIVE_LAKE_PG_PASSWORD": PG_PW}


def test_local_is_the_default():
    assert lake_config("live", {}) is None and lake_config("sim", {"ARCHIVE_LAKE_CATALOG": "sqlite"}) is None


def test_s3_and_postgres_are_parsed_and_secrets_stay_out_of_reprs():
    cfg = lake_config("live", ENV)
    assert cfg.s3.url == "s3://market-archive/live" and cfg.s3.data_path == "s3://market-archive/live/_lake/data/"
    assert (cfg.s3.endpoint, cfg.s3.use_ssl, cfg.s3.url_style, cfg.s3.region) == ("127.0.0.1:9000", False, "path", "us-east-1")
    assert cfg.catalog == "postgres:dbname=lake host=db.internal port=5433 user=archive"
    assert cfg.pg_schema == "archive_live" and cfg.pg_password == PG_PW
    assert (cfg.s3.key_id, cfg.s3.secret) == (KEY, SECRET)
    for text in (repr(cfg), str(cfg)):
        assert SECRET not in text and KEY not in text and PG_PW not in text
    # the secrets reach DuckDB only through the secret statements
    setup = "\n".join(cfg.setup_sql())
    assert SECRET in setup and PG_PW in setup and "SCOPE 's3://market-archive'" in setup
    # Settings validates the same variables but keeps no secret value
    env = {**ENV, "ARCHIVE_ROOT": "/tmp/a", "ARCHIVE_SIM_ROOT": "/tmp/b"}
    held = Settings.from_env(env)
    assert set(held.lakes) == {"live"}
    assert (held.lakes["live"].s3.secret, held.lakes["live"].pg_password) == ("", "")
    assert SECRET not in repr(held) and PG_PW not in repr(held)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ARCHIVE_LAKE_PG_PASSWORD"} <= held.secrets_set


def test_postgres_from_the_dagster_instance_variables():
    env = {"ARCHIVE_SIM_LAKE_CATALOG": "postgres", "DAGSTER_PG_HOST": "pg", "DAGSTER_PG_USER": "dagster",
           "DAGSTER_PG_PASSWORD": PG_PW, "DAGSTER_PG_DB": "dagster", "ARCHIVE_LAKE_PG_DB": "lake"}
    cfg = lake_config("sim", env)
    assert cfg.catalog == "postgres:dbname=lake host=pg port=5432 user=dagster"
    assert cfg.pg_schema == "archive_sim" and cfg.pg_password == PG_PW and cfg.s3 is None
    assert lake_config("live", env) is None


@pytest.mark.parametrize("env,var,words", [
    ({"ARCHIVE_S3_URL": "https://bucket/x"}, "ARCHIVE_S3_URL", "s3://bucket/prefix"),
    ({"ARCHIVE_S3_URL": "s3://Bad_Bucket/x"}, "ARCHIVE_S3_URL", "bucket name"),
    ({"ARCHIVE_S3_URL": "s3://bucket/a/../b"}, "ARCHIVE_S3_URL", "'..'"),
    ({"ARCHIVE_S3_URL": "s3://bucket/x", "AWS_SECRET_ACCESS_KEY": "x"}, "AWS_ACCESS_KEY_ID", "required"),
    ({**ENV, "ARCHIVE_S3_ENDPOINT": "ftp://host"}, "ARCHIVE_S3_ENDPOINT", "host[:port]"),
    ({**ENV, "ARCHIVE_S3_USE_SSL": "yes"}, "ARCHIVE_S3_USE_SSL", "contradicts"),
    ({**ENV, "ARCHIVE_S3_USE_SSL": "maybe", "ARCHIVE_S3_ENDPOINT": "minio:9000"}, "ARCHIVE_S3_USE_SSL", "boolean"),
    ({**ENV, "ARCHIVE_S3_URL_STYLE": "virtual"}, "ARCHIVE_S3_URL_STYLE", "path, vhost"),
    ({**ENV, "ARCHIVE_S3_REGION": "US East"}, "ARCHIVE_S3_REGION", "region"),
    ({**ENV, "ARCHIVE_SIM_S3_URL": "s3://market-archive/live/sim"}, "ARCHIVE_S3_URL", "overlaps"),
    ({"ARCHIVE_LAKE_CATALOG": "postgres"}, "ARCHIVE_LAKE_CATALOG", "DAGSTER_PG_HOST"),
    ({"ARCHIVE_LAKE_CATALOG": "mysql:host=x"}, "ARCHIVE_LAKE_CATALOG", "sqlite, postgres"),
    # half-set PostgreSQL catalog settings: named, never defaulted to libpq's user/database
    ({"ARCHIVE_LAKE_CATALOG": "postgres", "DAGSTER_PG_HOST": "db"}, "ARCHIVE_LAKE_CATALOG=postgres",
     "DAGSTER_PG_USER, ARCHIVE_LAKE_PG_DB (or DAGSTER_PG_DB) and DAGSTER_PG_PASSWORD"),
    ({"ARCHIVE_LAKE_CATALOG": "postgres", "DAGSTER_PG_HOST": "db", "DAGSTER_PG_USER": "u",
      "DAGSTER_PG_PASSWORD": ""}, "ARCHIVE_LAKE_PG_DB (or DAGSTER_PG_DB)", "is not set"),
    ({"ARCHIVE_LAKE_CATALOG": "postgres", "DAGSTER_PG_HOST": "db", "DAGSTER_PG_USER": "u",
      "DAGSTER_PG_DB": "d", "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_PORT": "5432x"},
     "DAGSTER_PG_PORT", "not a port number"),
    ({"ARCHIVE_LAKE_CATALOG": "postgres:host=db port=x5 dbname=d"}, "ARCHIVE_LAKE_CATALOG", "port='x5'"),
    # remote-only settings without the setting that makes the archive remote
    ({"ARCHIVE_LAKE_PG_DB": "lake"}, "ARCHIVE_LAKE_PG_DB", "neither ARCHIVE_LAKE_CATALOG nor ARCHIVE_SIM_LAKE_CATALOG"),
    ({"ARCHIVE_LAKE_PG_PASSWORD": PG_PW}, "ARCHIVE_LAKE_PG_PASSWORD", "local SQLite"),
    ({"ARCHIVE_S3_ENDPOINT": "http://minio:9000", "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET},
     "ARCHIVE_S3_ENDPOINT", "neither ARCHIVE_S3_URL nor ARCHIVE_SIM_S3_URL"),
])
def test_bad_settings_name_the_variable(env, var, words):
    with pytest.raises(ConfigError) as err:
        lake_config("live", env)
    assert var in str(err.value) and words in str(err.value), str(err.value)
    for secret in (KEY, SECRET, PG_PW):
        assert secret not in str(err.value)


@pytest.mark.parametrize("catalog", ["postgres:host=h password=pg-password-never-shown dbname=x",
                                     "postgres:postgresql://u:pg-password-never-shown@h/db",
                                     "postgresql://u:pg-password-never-shown@h/db"])
def test_a_password_in_the_catalog_is_refused_without_echoing_it(catalog):
    with pytest.raises(ConfigError) as err:
        lake_config("live", {"ARCHIVE_LAKE_CATALOG": catalog})
    assert "ARCHIVE_LAKE_CATALOG" in str(err.value) and PG_PW not in str(err.value)


@pytest.mark.parametrize(("var", "value"), [
    ("ARCHIVE_S3_URL", f"s3://{KEY}:{SECRET}@market-archive/live"),
    ("ARCHIVE_SIM_S3_URL", f"s3://{KEY}:{SECRET}@market-archive/sim"),
    ("ARCHIVE_S3_ENDPOINT", f"http://{KEY}:{SECRET}@minio:9000"),
])
def test_credentials_written_into_an_s3_url_are_refused_without_echoing_them(var, value):
    env = {**ENV, var: value}
    kind = "sim" if var == "ARCHIVE_SIM_S3_URL" else "live"
    with pytest.raises(ConfigError) as err:
        lake_config(kind, env)
    msg = str(err.value)
    assert var in msg and "AWS_ACCESS_KEY_ID" in msg, msg
    assert SECRET not in msg and KEY not in msg


def test_the_dagster_resource_gets_credentials_as_env_vars(monkeypatch, tmp_path):
    env = {**ENV, "ARCHIVE_ROOT": str(tmp_path / "a"), "ARCHIVE_SIM_ROOT": str(tmp_path / "b")}
    archive = resources_from_settings(Settings.from_env(env))["archive"]
    assert isinstance(archive, ArchiveResource)
    assert archive.lakes["live"]["s3_bucket"] == "market-archive" and "sim" not in archive.lakes
    assert archive.aws_secret_access_key == dg.EnvVar("AWS_SECRET_ACCESS_KEY")
    assert archive.lake_pg_password == dg.EnvVar("ARCHIVE_LAKE_PG_PASSWORD")
    assert SECRET not in repr(archive.lakes) and PG_PW not in repr(archive.lakes)
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)

    @dg.asset
    def probe(archive: ArchiveResource) -> None:
        cfg = archive.lake_config("live")
        assert (cfg.s3.key_id, cfg.s3.secret, cfg.pg_password) == (KEY, SECRET, PG_PW)
        assert cfg == lake_config("live", ENV)
        assert archive.lake_config("sim") is None

    assert dg.materialize([probe], resources={"archive": archive}).success
