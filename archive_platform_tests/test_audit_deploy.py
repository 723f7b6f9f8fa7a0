"""docs/deployment.md followed by a new operator, against a PostgreSQL with password
authentication on loopback: deploy/instance/check-db answers a wrong password, user or database
and a server that is down in one line naming the variable (Dagster's own commands print some 200
lines of tracebacks), and never prints the password; deploy/instance/check-env DIR checks the
variables an instance config actually reads, so a config that names its server itself is
accepted (``./run`` refused every command with it) and one whose own variable is unset is not."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from archive_platform_tests.deploy_helpers import REPO
from archive_platform_tests.pg_helpers import free_port, postgres_server

INSTANCE = REPO / "deploy" / "instance"
CHECK_DB = INSTANCE / "check-db"
CHECK_ENV = INSTANCE / "check-env"
DOC = REPO / "docs" / "deployment.md"

ROLE, SECRET, WRONG = "archive_op", "audit-pg-Secret-7731", "audit-wrong-Pw-1193"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PG"))}
    env.update(extra)
    return env


def _install(home, storage: str) -> None:
    subprocess.run([str(INSTANCE / "install-config"), str(home), storage], env=_clean_env(),
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def pg_password():
    """A cluster whose role ROLE must give SECRET (scram-sha-256), the others keep trust."""
    with postgres_server() as pg:
        pg.query(f"CREATE ROLE {ROLE} LOGIN PASSWORD %s", (SECRET,))
        pg.query(f"GRANT ALL ON DATABASE {pg.db} TO {ROLE}")
        hba = pg.data_dir / "pg_hba.conf"
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        assert pg.query("SELECT pg_reload_conf()") == [(True,)]
        yield pg


def _env_five(pg, **over: str) -> dict[str, str]:
    five = {"DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USER": ROLE,
            "DAGSTER_PG_PASSWORD": SECRET, "DAGSTER_PG_DB": pg.db}
    return _clean_env(**{**five, **over})


def _check_db(home, env):
    return subprocess.run([str(CHECK_DB), str(home)], env=env, capture_output=True, text=True, timeout=120)


def _one_error_line(result, code: int, words: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out
    assert "Traceback" not in out
    assert SECRET not in out and WRONG not in out


def test_check_db_connects_with_the_documented_variables(tmp_path, pg_password):
    home = tmp_path / "home"
    _install(home, "postgres")
    ok = _check_db(home, _env_five(pg_password))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("check-db: connected to the Dagster instance's PostgreSQL (host=127.0.0.1 ")
    assert SECRET not in ok.stdout + ok.stderr
    # DAGSTER_HOME is the default folder
    env = _env_five(pg_password, DAGSTER_HOME=str(home))
    assert subprocess.run([str(CHECK_DB)], env=env, capture_output=True, timeout=120).returncode == 0


@pytest.mark.parametrize(("over", "code", "words"), [
    ({"DAGSTER_PG_PASSWORD": WRONG}, 2,
     f'password authentication failed for user "{ROLE}": check DAGSTER_PG_PASSWORD'),
    ({"DAGSTER_PG_DB": "no_such_db"}, 2, 'database "no_such_db" does not exist: check DAGSTER_PG_DB'),
    ({"DAGSTER_PG_PORT": "PORT"}, 3, "Connection refused"),  # a port nobody listens on
    ({"DAGSTER_PG_PORT": "54x2"}, 2, "DAGSTER_PG_PORT='54x2' is not a port number"),  # check-env first
])
def test_check_db_names_the_variable_in_one_line(tmp_path, pg_password, over, code, words):
    home = tmp_path / "home"
    _install(home, "postgres")
    if over.get("DAGSTER_PG_PORT") == "PORT":
        over = {"DAGSTER_PG_PORT": str(free_port())}
    result = _check_db(home, _env_five(pg_password, **over))
    _one_error_line(result, code, words)
    if code == 3:
        assert "check DAGSTER_PG_HOST and DAGSTER_PG_PORT (is the server up" in result.stderr


def test_check_db_reads_a_url_from_stdin_and_never_prints_its_password(tmp_path, pg_password):
    home = tmp_path / "home"
    _install(home, "postgres-url")
    url = f"postgresql+psycopg2://{ROLE}:{{}}@{pg_password.host}:{pg_password.port}/{pg_password.db}"
    ok = _check_db(home, _clean_env(DAGSTER_PG_URL=url.format(SECRET)))
    assert ok.returncode == 0 and "(DAGSTER_PG_URL, not shown)" in ok.stdout, ok.stderr
    bad = _check_db(home, _clean_env(DAGSTER_PG_URL=url.format(WRONG)))
    _one_error_line(bad, 2, "check the password (and the user) in DAGSTER_PG_URL")


def test_check_db_has_nothing_to_check_on_sqlite(tmp_path):
    home = tmp_path / "home"
    _install(home, "sqlite")
    result = _check_db(home, _clean_env())
    assert result.returncode == 0 and "keeps the instance on SQLite" in result.stderr
    missing = _check_db(tmp_path / "nowhere", _clean_env())
    assert missing.returncode == 2 and "dagster.yaml does not exist" in missing.stderr


def _literal_config(home, password_var: str = "MY_PG_PW") -> None:
    """An operator's own instance config: the server written in, the password from its own
    variable (Dagster loads it; nothing reads DAGSTER_PG_*)."""
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "storage": {
        "postgres": {"postgres_db": {"hostname": "db.internal", "port": 5432, "username": "dagster",
                                     "password": {"env": password_var}, "db_name": "dagster"}}}}))


def test_check_env_accepts_a_config_that_names_its_server_and_checks_its_own_variables(tmp_path):
    home = tmp_path / "home"
    _literal_config(home)
    ok = subprocess.run([str(CHECK_ENV), str(home)], env=_clean_env(MY_PG_PW=SECRET), capture_output=True, text=True)
    assert (ok.returncode, ok.stderr) == (0, ""), ok.stderr  # was: "DAGSTER_PG_HOST, ... are not set"
    unset = subprocess.run([str(CHECK_ENV), str(home)], env=_clean_env(), capture_output=True, text=True)
    assert unset.returncode == 2
    assert unset.stderr == f"error: MY_PG_PW is not set: {home}/dagster.yaml reads it from the environment\n"
    # the template's rules are unchanged: all five variables, or the URL
    tmpl = tmp_path / "tmpl"
    _install(tmpl, "postgres")
    half = subprocess.run([str(CHECK_ENV), str(tmpl)], env=_clean_env(DAGSTER_PG_HOST="db"),
                          capture_output=True, text=True)
    assert half.returncode == 2 and half.stderr.startswith(
        "error: DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB are not set"), half.stderr


def test_the_run_wrapper_runs_commands_with_a_config_that_names_its_server(tmp_path):
    """`./run` checks a DAGSTER_HOME of one's own with check-env DIR: it refused every command
    for a working config that does not read the DAGSTER_PG_* variables."""
    home, marker = tmp_path / "home", tmp_path / "ran"
    _literal_config(home)
    env = _clean_env(DAGSTER_HOME=str(home), MY_PG_PW=SECRET)
    ok = subprocess.run([str(REPO / "run"), "touch", str(marker)], env=env, capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0 and marker.exists(), ok.stderr
    env.pop("MY_PG_PW")
    marker.unlink()
    refused = subprocess.run([str(REPO / "run"), "touch", str(marker)], env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and not marker.exists()
    assert refused.stderr.strip().splitlines()[-1] == f"error: MY_PG_PW is not set: {home}/dagster.yaml reads it from the environment"


def test_the_documented_setup_runs_check_db_before_the_processes():
    block = DOC.read_text().split("## Several processes or machines", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    check = next(i for i, line in enumerate(lines) if line.startswith('deploy/instance/check-db "$DAGSTER_HOME"'))
    install = next(i for i, line in enumerate(lines) if line.startswith("deploy/instance/install-config"))
    first_process = next(i for i, line in enumerate(lines) if line.startswith("./run dagster"))
    assert install < check < first_process


def test_one_machine_postgres_installs_the_config_before_run_dev(tmp_path):
    """docs/deployment.md said: set the variables, `./run dev`, *then* install-config. With a
    DAGSTER_HOME of one's own that already holds the SQLite config, `./run` refuses every command
    until install-config has run, so the documented order stopped at its first step."""
    home, marker = tmp_path / "home", tmp_path / "ran"
    _install(home, "sqlite")
    env = _clean_env(DAGSTER_HOME=str(home), DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT="5432",
                     DAGSTER_PG_USER="dagster", DAGSTER_PG_PASSWORD=SECRET, DAGSTER_PG_DB="dagster")
    refused = subprocess.run([str(REPO / "run"), "touch", str(marker)], env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and not marker.exists()
    assert f"error: DAGSTER_PG_HOST is set but {home}/dagster.yaml keeps the instance on SQLite" in refused.stderr
    subprocess.run([str(INSTANCE / "install-config"), str(home), "postgres"], env=env, check=True, capture_output=True)
    ok = subprocess.run([str(REPO / "run"), "touch", str(marker)], env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and marker.exists(), ok.stderr
    assert SECRET not in refused.stderr + ok.stderr + (home / "dagster.yaml").read_text()
    one_machine = " ".join(DOC.read_text().split("## One machine", 1)[1].split("**Backfills.**", 1)[0].split())
    assert one_machine.index('first run `deploy/instance/install-config "$DAGSTER_HOME" postgres`') < \
        one_machine.index("then `./run dev`")


def test_the_docs_say_the_code_server_needs_the_instance_variables():
    """Checked by hand against PostgreSQL: a code server started without DAGSTER_PG_* loads and
    is healthy, but each run launched into it fails with DagsterLaunchFailedError ...
    DagsterInvalidConfigError (the run resolves the instance's {env: ...} names there). The docs
    gave the code server only the ARCHIVE_* settings and vendor keys."""
    text = " ".join(DOC.read_text().split("## Several processes or machines", 1)[1]
                    .split("## The archive on object storage", 1)[0].split())
    assert "So do the `DAGSTER_PG_*` variables (or `DAGSTER_PG_URL`), on its machine too." in text
    assert "DagsterLaunchFailedError: Error during RPC setup for executing run" in text
