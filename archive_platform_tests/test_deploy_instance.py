"""The instance configuration template and its installer (deploy/instance/)."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from archive_platform_tests.deploy_helpers import REPO

INSTALL = REPO / "deploy" / "instance" / "install-config"


def _install(home, *args, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PG_")}
    return subprocess.run([str(INSTALL), str(home), *args], env={**full, **env}, capture_output=True, text=True)


def test_no_instance_config_in_the_repository_root():
    # `dagster dev` warns "dagster.yaml ... will not be used" when the folder it starts in has one
    assert not (REPO / "dagster.yaml").exists() and not (REPO / "dagster.yml").exists()


def test_default_instance_is_sqlite_with_monitoring_retries_and_timeouts(tmp_path):
    assert _install(tmp_path).returncode == 0
    config = yaml.safe_load((tmp_path / "dagster.yaml").read_text())
    assert "storage" not in config
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_monitoring_max_runtime_seconds == 21600
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.code_server_settings["local_startup_timeout"] == 300
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_coordinator.dequeue_interval_seconds == 2
        concurrency = instance.get_concurrency_config()  # what the run queue daemon applies
        assert concurrency.run_queue_config.max_concurrent_runs == 3
        assert concurrency.pool_config.default_pool_limit == 1


PG_FIVE = {"DAGSTER_PG_HOST": "db", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "dagster",
           "DAGSTER_PG_PASSWORD": "s3cr3t-pw", "DAGSTER_PG_DB": "dagster"}


@pytest.mark.parametrize(("env", "key"), [
    (PG_FIVE, "postgres_db"),
    ({"DAGSTER_PG_URL": "postgresql+psycopg2://u:s3cr3t-pw@db:5432/d"}, "postgres_url"),
])
def test_postgres_storage_follows_the_environment_and_never_writes_the_password(tmp_path, env, key):
    result = _install(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "dagster.yaml").read_text()
    assert "s3cr3t-pw" not in text + result.stdout + result.stderr
    pg = yaml.safe_load(text)["storage"]["postgres"]
    assert list(pg) == [key]
    if key == "postgres_db":
        assert pg[key]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
        assert pg[key]["scheme"] == "postgresql+psycopg2"
    else:
        assert pg[key] == {"env": "DAGSTER_PG_URL"}
    # the monitoring/retry settings are the same template
    assert yaml.safe_load(text)["run_retries"]["max_retries"] == 2


def test_unknown_storage_is_refused_with_its_name(tmp_path):
    result = _install(tmp_path, "mysql")
    assert result.returncode == 2
    assert "unknown storage 'mysql'" in result.stderr
    assert not (tmp_path / "dagster.yaml").exists()


@pytest.mark.slow
def test_loading_the_code_location_prints_no_beta_or_preview_warning(tmp_path):
    """What a code server or run worker does: import the module, build the definitions."""
    from archive_platform_tests.dagster_helpers import sim_env

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "PYTHONWARNINGS"))}
    env.update(sim_env(tmp_path))
    code = ("import archive_platform.definitions as m\n"
            "from archive_platform.defs import build_definitions\n"
            "d = build_definitions()\n"
            "print(len(d.get_repository_def().assets_defs_by_key))\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    from archive_platform.datasets import DATASETS

    # every dataset, the views, the coverage ledger and the backtests
    assert int(result.stdout.strip()) == len(DATASETS) + 3
    assert "BetaWarning" not in result.stderr and "PreviewWarning" not in result.stderr, result.stderr[:2000]


# Half-set PostgreSQL settings: install-config (which `./run` calls) refuses them with one line
# naming the variable, before Dagster fails on them with a page of tracebacks, and writes nothing.
HALF_SET = [  # (environment, install-config's words, the definitions' words)
    ({"DAGSTER_PG_HOST": "db", "DAGSTER_PG_PASSWORD": "s3cr3t-pw"},
     "DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_DB are not set",
     "DAGSTER_PG_HOST is set but DAGSTER_PG_PORT, DAGSTER_PG_USER and DAGSTER_PG_DB are not"),
    ({**PG_FIVE, "DAGSTER_PG_DB": ""}, "DAGSTER_PG_DB is not set", "DAGSTER_PG_HOST is set but DAGSTER_PG_DB is not"),
    ({k: v for k, v in PG_FIVE.items() if k != "DAGSTER_PG_PASSWORD"},
     "DAGSTER_PG_PASSWORD is not set", "DAGSTER_PG_HOST is set but DAGSTER_PG_PASSWORD is not"),
    ({**PG_FIVE, "DAGSTER_PG_PORT": "54x2"}, "DAGSTER_PG_PORT='54x2' is not a port number", None),
    ({"DAGSTER_PG_URL": "postgresql://u:s3cr3t-pw@db:5432/d"},
     "DAGSTER_PG_URL has the scheme 'postgresql'; use postgresql+psycopg2://", None),
    ({"DAGSTER_PG_URL": "postgres://u:s3cr3t-pw@db/d"}, "DAGSTER_PG_URL has the scheme 'postgres'", None),
    ({"DAGSTER_PG_URL": "u:s3cr3t-pw@db/d"}, "DAGSTER_PG_URL is not a URL", None),
    ({"DAGSTER_PG_URL": "postgresql+psycopg2://u:s3cr3t-pw@db:5432"}, "DAGSTER_PG_URL names no database", None),
    ({"DAGSTER_PG_URL": "postgresql+psycopg2://u:s3cr3t-pw@db:port/d"},
     "DAGSTER_PG_URL: the port is not a number", None),
    ({"DAGSTER_PG_USER": "dagster", "DAGSTER_PG_DB": "dagster"},
     "DAGSTER_PG_USER, DAGSTER_PG_DB are set but DAGSTER_PG_HOST is not, so the instance would stay on SQLite",
     None),
]


@pytest.mark.parametrize(("env", "words", "_"), HALF_SET)
def test_half_set_postgres_settings_are_refused_in_one_line_naming_the_variable(tmp_path, env, words, _):
    result = _install(tmp_path / "home", **env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "s3cr3t-pw" not in result.stdout + result.stderr
    assert not (tmp_path / "home" / "dagster.yaml").exists()  # nothing written


def test_the_run_wrapper_stops_on_half_set_postgres_settings_before_any_dagster_process(tmp_path):
    """`./run` (DAGSTER_HOME unset) installs the config first: the half-set environment stops it
    with install-config's line, and the command never runs."""
    marker = tmp_path / "ran"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env.update(DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PASSWORD="s3cr3t-pw")
    before = (REPO / ".dagster_home" / "dagster.yaml").read_bytes() if (REPO / ".dagster_home" / "dagster.yaml").exists() else None
    result = subprocess.run([str(REPO / "run"), "touch", str(marker)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_DB are not set")
    assert "s3cr3t-pw" not in result.stdout + result.stderr
    assert not marker.exists()
    after = (REPO / ".dagster_home" / "dagster.yaml").read_bytes() if (REPO / ".dagster_home" / "dagster.yaml").exists() else None
    assert after == before  # the repository's instance keeps its (SQLite) config


@pytest.mark.parametrize("storage", ["postgres", "postgres-url"])
def test_a_storage_named_without_its_variables_is_written_for_an_image_build(tmp_path, storage):
    """The Dockerfile installs the PostgreSQL config at build time, when no value is known."""
    result = _install(tmp_path, storage)
    assert result.returncode == 0, result.stderr
    assert "must have" in result.stderr  # a note, not an error
    assert "postgres" in yaml.safe_load((tmp_path / "dagster.yaml").read_text())["storage"]


@pytest.mark.parametrize(("env", "words"), [
    ({"DAGSTER_PG_HOST": "db"}, "DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB are not set"),
    ({"DAGSTER_PG_URL": "postgresql+psycopg2://u:s3cr3t-pw@db:5432/d"},
     "DAGSTER_PG_URL is set but {home}/dagster.yaml keeps the instance on SQLite"),
])
def test_check_env_compares_an_existing_instance_config_with_the_environment(tmp_path, env, words):
    """deploy/instance/check-env DIR: for a DAGSTER_HOME of one's own, whose config `./run` does
    not rewrite (the config's storage against the variables set now)."""
    home = tmp_path / "home"
    assert _install(home, "postgres" if "DAGSTER_PG_HOST" in env else "sqlite").returncode == 0
    full = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PG_")}
    result = subprocess.run([str(INSTALL.parent / "check-env"), str(home)], env={**full, **env},
                            capture_output=True, text=True)
    assert result.returncode == 2 and words.format(home=home) in result.stderr, result.stderr
    assert "s3cr3t-pw" not in result.stderr
    ok = subprocess.run([str(INSTALL.parent / "check-env"), str(home)], env={**full, **PG_FIVE},
                        capture_output=True, text=True)
    assert ok.returncode == (0 if "DAGSTER_PG_HOST" in env else 2), ok.stderr


@pytest.mark.parametrize(("env", "_", "words"), HALF_SET)
def test_the_definitions_refuse_half_set_postgres_settings_naming_the_variable(tmp_path, env, _, words):
    """The code server (and `dagster dev`'s) loads the definitions: Settings checks the instance's
    variables by the same rules, so the load fails with that line, not a run at 03:00."""
    from archive_platform.config import ConfigError
    from archive_platform.defs import build_definitions
    from archive_platform_tests.dagster_helpers import sim_env

    with pytest.raises(ConfigError) as err:
        build_definitions({**sim_env(tmp_path), **env})
    msg = str(err.value)
    assert (words or _) in msg and "\n" not in msg
    assert "s3cr3t-pw" not in msg


def test_a_url_whose_password_holds_slash_hash_or_question_mark_is_accepted(tmp_path):
    """Split as SQLAlchemy splits it (the password runs to the first "@"), by both checks."""
    from archive_platform.settings import Settings
    from archive_platform_tests.dagster_helpers import sim_env

    url = "postgresql+psycopg2://dagster:s3cr3t/pw#x?y@db.internal:5432/dagster"
    result = _install(tmp_path / "home", DAGSTER_PG_URL=url)
    assert result.returncode == 0 and "s3cr3t" not in result.stderr, result.stderr
    assert yaml.safe_load((tmp_path / "home" / "dagster.yaml").read_text())["storage"]["postgres"] == {
        "postgres_url": {"env": "DAGSTER_PG_URL"}}
    assert Settings.from_env({**sim_env(tmp_path), "DAGSTER_PG_URL": url}).secrets_set == frozenset()


def test_the_run_wrapper_checks_a_users_own_instance_config_against_the_environment(tmp_path):
    """`./run` with DAGSTER_HOME set keeps that config, but checks it first: a PostgreSQL config
    without its DAGSTER_PG_URL stops with check-env's line and the command never runs (it ran,
    and every Dagster process failed with a traceback). `./run test` is not held to it."""
    home, marker = tmp_path / "home", tmp_path / "ran"
    assert _install(home, "postgres-url").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["DAGSTER_HOME"] = str(home)
    result = subprocess.run([str(REPO / "run"), "touch", str(marker)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: DAGSTER_PG_URL is not set"), result.stderr
    assert not marker.exists()
    env["DAGSTER_PG_URL"] = "postgresql+psycopg2://u:s3cr3t-pw@127.0.0.1:5432/d"
    ok = subprocess.run([str(REPO / "run"), "touch", str(marker)], env=env, capture_output=True,
                        text=True, timeout=300)
    assert ok.returncode == 0 and marker.exists(), ok.stderr
    assert "s3cr3t-pw" not in result.stderr + ok.stdout + ok.stderr
