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


@pytest.mark.parametrize(("env", "key"), [
    ({"DAGSTER_PG_HOST": "db", "DAGSTER_PG_PASSWORD": "s3cr3t-pw"}, "postgres_db"),
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
