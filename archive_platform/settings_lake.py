"""The lake's settings: where each kind's catalog and data live (PostgreSQL, S3), read from the
environment mapping ``archive_platform.settings`` passes (or, by default, reads itself there).

Split from settings.py to keep that module small; the variables are documented in
docs/deployment.md ("The archive on object storage"). Pure (no Dagster); the lake package (and
so DuckDB) is imported only when a lake is configured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from archive_platform.config import ConfigError

if TYPE_CHECKING:
    from archive_platform.lake.remote import LakeConfig

#: per kind: the variable with its S3 URL and the one with its catalog (docs/deployment.md)
LAKE_VARS = {"live": ("ARCHIVE_S3_URL", "ARCHIVE_LAKE_CATALOG"),
             "sim": ("ARCHIVE_SIM_S3_URL", "ARCHIVE_SIM_LAKE_CATALOG")}
#: secrets the lake reads (never stored in Settings, metadata or files)
LAKE_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ARCHIVE_LAKE_PG_PASSWORD")
#: the Dagster instance's PostgreSQL variables (deploy/instance/storage-postgres.yaml): all five
#: must be set once DAGSTER_PG_HOST is, DAGSTER_PG_PASSWORD may be empty (trust authentication)
PG_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
#: the one URL scheme the instance's PostgreSQL storage can use (psycopg 3 is not installed)
PG_URL_SCHEME = "postgresql+psycopg2"
#: settings that only mean something with an S3 URL, or with a ``postgres`` catalog: set without
#: one, the archive would silently stay local (each machine its own SQLite catalog)
S3_ONLY = ("ARCHIVE_S3_ENDPOINT", "ARCHIVE_S3_REGION", "ARCHIVE_S3_URL_STYLE", "ARCHIVE_S3_USE_SSL")
NOT_SHOWN = "the value is not shown: it may hold a password"


def check_instance_env(env: Mapping[str, str]) -> None:
    """The Dagster instance's PostgreSQL settings, as deploy/instance/ reads them, complete and
    well formed: ``DAGSTER_PG_URL`` with the ``postgresql+psycopg2`` scheme, a host and a
    database, or, once ``DAGSTER_PG_HOST`` is set, all five ``DAGSTER_PG_*`` variables with a
    numeric port. ConfigError names the variable; a URL or password is never repeated.
    (``deploy/instance/check-env`` applies the same rules before a Dagster process starts.)"""
    get = lambda var: (env.get(var) or "").strip()  # noqa: E731
    if get("DAGSTER_PG_URL"):
        _check_pg_url(get("DAGSTER_PG_URL"))
        return
    if not get("DAGSTER_PG_HOST"):
        stray = [v for v in ("DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB") if get(v)]
        if stray:
            listed = ", ".join(stray)
            raise ConfigError(
                f"{listed} {'is' if len(stray) == 1 else 'are'} set but DAGSTER_PG_HOST is not, so the "
                f"instance would stay on SQLite: set DAGSTER_PG_HOST (all of {_and(list(PG_VARS))}), "
                f"or unset {listed}")
        return
    missing = [v for v in PG_VARS if (env.get(v) is None if v == "DAGSTER_PG_PASSWORD" else not get(v))]
    if missing:
        raise ConfigError(
            f"DAGSTER_PG_HOST is set but {_and(missing)} {'is' if len(missing) == 1 else 'are'} not: "
            f"PostgreSQL instance storage needs all of {', '.join(PG_VARS)} "
            "(DAGSTER_PG_PASSWORD may be empty for trust authentication; docs/deployment.md)")
    _port("DAGSTER_PG_PORT", get("DAGSTER_PG_PORT"), single=True)


def _check_pg_url(url: str) -> None:
    example = f"{PG_URL_SCHEME}://user:password@host:5432/db"
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]{0,40})://.*", url, re.DOTALL)
    if not m:
        raise ConfigError(f"DAGSTER_PG_URL is not a URL like {example}; {NOT_SHOWN}")
    scheme = m.group(1)
    if scheme.lower() != PG_URL_SCHEME:
        why = (" (SQLAlchemy 2.1 reads postgresql:// as psycopg 3, which is not installed)"
               if scheme.lower() == "postgresql" else "")
        raise ConfigError(f"DAGSTER_PG_URL has the scheme {scheme!r}; use {example}{why}. "
                          f"The rest of the value is not shown: it holds the password")
    from sqlalchemy.engine import make_url  # parsed as the instance's storage will parse it

    try:
        parsed = make_url(url)
        port = parsed.port
    except ValueError:  # the message would quote the URL
        raise ConfigError(f"DAGSTER_PG_URL: the port is not a number from 1 to 65535 ({example}); "
                          f"{NOT_SHOWN}") from None
    except Exception:
        raise ConfigError(f"DAGSTER_PG_URL is not a URL like {example}; {NOT_SHOWN}") from None
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"DAGSTER_PG_URL: the port is not a number from 1 to 65535 ({example}); "
                          f"{NOT_SHOWN}")
    if not parsed.host and "host" not in parsed.query:
        raise ConfigError(f"DAGSTER_PG_URL names no host ({example}); {NOT_SHOWN}")
    if not parsed.database:
        raise ConfigError(f"DAGSTER_PG_URL names no database after the host ({example}); {NOT_SHOWN}")


def _is_port(raw: str) -> bool:
    """A TCP port (libpq also takes a comma list, one per host)."""
    return all(p.strip().isdigit() and 1 <= int(p) <= 65535 for p in raw.split(","))


def _port(var: str, raw: str, *, single: bool = False) -> str:
    """``raw`` if it is a port (``single``: one port, not libpq's comma list: the instance's
    storage reads ``DAGSTER_PG_PORT`` as one integer and failed on "5432,5433" with a traceback)."""
    if not _is_port(raw) or (single and "," in raw):
        raise ConfigError(f"{var}={raw!r} is not a port number (1-65535)")
    return raw


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _check_lake_vars(env: Mapping[str, str]) -> None:
    """Refuse lake settings that say "remote" without the setting that makes it so: an S3
    endpoint (region, style, TLS) without any S3 URL, or ``ARCHIVE_LAKE_PG_DB`` /
    ``ARCHIVE_LAKE_PG_PASSWORD`` without a PostgreSQL catalog. Otherwise each machine would
    quietly write its own local archive."""
    get = lambda var: (env.get(var) or "").strip()  # noqa: E731
    urls = [v for v, _ in LAKE_VARS.values()]
    stray = [v for v in S3_ONLY if get(v)]
    if stray and not any(get(v) for v in urls):
        raise ConfigError(f"{_and(stray)} {'is' if len(stray) == 1 else 'are'} set but neither "
                          f"{_and(urls).replace(' and ', ' nor ')} is, so the archive would stay on local "
                          "disk: set the archive's s3://bucket/prefix, or unset them")
    cats = [v for _, v in LAKE_VARS.values()]
    catalogs = [get(v) for v in cats]
    if get("ARCHIVE_LAKE_PG_DB") and "postgres" not in catalogs:
        raise ConfigError(f"ARCHIVE_LAKE_PG_DB is set but neither {_and(cats).replace(' and ', ' nor ')} "
                          "is 'postgres' (the only catalog it applies to), so the catalog would stay "
                          "in local SQLite: set the catalog, or unset ARCHIVE_LAKE_PG_DB")
    if get("ARCHIVE_LAKE_PG_PASSWORD") and not any(c == "postgres" or c.startswith("postgres:")
                                                   for c in catalogs):
        raise ConfigError(f"ARCHIVE_LAKE_PG_PASSWORD is set but neither "
                          f"{_and(cats).replace(' and ', ' nor ')} is a PostgreSQL catalog, so the "
                          "catalog would stay in local SQLite: set the catalog, or unset the password")


def lake_config(kind: str, env: Mapping[str, str] | None = None, *,
                secrets: bool = True) -> LakeConfig | None:
    """The lake of ``kind`` (``live``/``sim``): local SQLite catalog and data by default; the
    data path on S3 when ``ARCHIVE_S3_URL`` (``ARCHIVE_SIM_S3_URL``) is set, the catalog on
    PostgreSQL when ``ARCHIVE_LAKE_CATALOG`` (``ARCHIVE_SIM_LAKE_CATALOG``) is ``postgres`` or
    ``postgres:<conninfo>``. ``secrets=False`` checks the secret variables are set without
    keeping their values. None: the local default. ConfigError names the variable."""
    from archive_platform.settings import environment, parse_bool

    env = environment() if env is None else env
    get = lambda var: (env.get(var) or "").strip()  # noqa: E731
    _check_lake_vars(env)
    url_var, cat_var = LAKE_VARS[kind]
    if not get(url_var) and get(cat_var) in ("", "sqlite"):
        return None
    from archive_platform.lake.remote import LakeConfig, S3Location  # imports DuckDB

    other_url = get(LAKE_VARS["sim" if kind == "live" else "live"][0])
    s3 = None
    if get(url_var):
        try:
            bucket, prefix = S3Location.parse_url(get(url_var))
        except ValueError as exc:
            raise ConfigError(f"{url_var}: {exc}") from None
        here = f"{bucket}/{prefix}".rstrip("/") + "/"
        there = other_url.removeprefix("s3://").rstrip("/") + "/"
        if other_url and (there.startswith(here) or here.startswith(there)):
            raise ConfigError(f"{url_var}={get(url_var)!r} overlaps the other kind's S3 URL "
                              f"{other_url!r}; live and simulated archives never share a prefix")
        for var in LAKE_SECRETS[:2]:
            if not get(var):
                raise ConfigError(f"{var} is not set; it is required with {url_var}")
        endpoint, ssl = _s3_endpoint(get("ARCHIVE_S3_ENDPOINT"))
        if get("ARCHIVE_S3_USE_SSL"):
            flag = parse_bool(env, "ARCHIVE_S3_USE_SSL", True)
            if ssl is not None and flag != ssl:
                raise ConfigError(f"ARCHIVE_S3_USE_SSL={get('ARCHIVE_S3_USE_SSL')!r} contradicts the "
                                  f"scheme of ARCHIVE_S3_ENDPOINT={get('ARCHIVE_S3_ENDPOINT')!r}")
            ssl = flag
        style = get("ARCHIVE_S3_URL_STYLE").lower() or ("path" if endpoint else "vhost")
        if style not in ("path", "vhost"):
            raise ConfigError(f"ARCHIVE_S3_URL_STYLE={style!r}; allowed: path, vhost")
        region = get("ARCHIVE_S3_REGION") or get("AWS_REGION") or get("AWS_DEFAULT_REGION") or "us-east-1"
        if not re.fullmatch(r"[a-z0-9-]{2,32}", region):
            raise ConfigError(f"ARCHIVE_S3_REGION={region!r} is not a region name (like us-east-1)")
        s3 = S3Location(bucket, prefix, endpoint, region, style, True if ssl is None else ssl,
                        get("AWS_ACCESS_KEY_ID") if secrets else "",
                        get("AWS_SECRET_ACCESS_KEY") if secrets else "")
    catalog = _lake_catalog(cat_var, get, env)
    password = get("ARCHIVE_LAKE_PG_PASSWORD") or get("DAGSTER_PG_PASSWORD")
    return LakeConfig(catalog, s3, f"archive_{kind}" if catalog else "",
                      password if (catalog and secrets) else "")


def _s3_endpoint(raw: str) -> tuple[str, bool | None]:
    """``host[:port]`` and whether the scheme asked for TLS (None: no scheme given)."""
    if not raw:
        return "", None
    if "@" in raw.split("://", 1)[-1].split("/", 1)[0]:  # http://KEY:SECRET@minio:9000
        raise ConfigError("ARCHIVE_S3_ENDPOINT holds credentials: give them as AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (the value is not shown: it may hold a secret)")
    m = re.fullmatch(r"(?:(https?)://)?([A-Za-z0-9.-]+(?::(\d{1,5}))?)/?", raw)
    if not m:
        raise ConfigError(f"ARCHIVE_S3_ENDPOINT={raw!r} is not host[:port] or http(s)://host[:port]")
    if m.group(3) is not None and not 1 <= int(m.group(3)) <= 65535:
        raise ConfigError(f"ARCHIVE_S3_ENDPOINT={raw!r}: port {m.group(3)} is not a port number (1-65535)")
    return m.group(2), (m.group(1) == "https") if m.group(1) else None


def _lake_catalog(var: str, get, env: Mapping[str, str]) -> str | None:
    """``None`` (SQLite under the root) or ``postgres:<conninfo without password>``."""
    raw = get(var)
    if raw in ("", "sqlite"):
        return None
    if raw == "postgres":  # the Dagster instance's server; database ARCHIVE_LAKE_PG_DB
        if not get("DAGSTER_PG_HOST"):
            url = " (DAGSTER_PG_URL is not read for the catalog)" if get("DAGSTER_PG_URL") else ""
            raise ConfigError(f"{var}=postgres needs DAGSTER_PG_HOST{url} (or give postgres:<conninfo>)")
        # the instance's user and database, never libpq's defaults (the OS user, a database
        # named after it): a catalog must not land somewhere nobody configured
        missing = [v for v in ("DAGSTER_PG_USER",) if not get(v)]
        if not (get("ARCHIVE_LAKE_PG_DB") or get("DAGSTER_PG_DB")):
            missing.append("ARCHIVE_LAKE_PG_DB (or DAGSTER_PG_DB)")
        if env.get("ARCHIVE_LAKE_PG_PASSWORD") is None and env.get("DAGSTER_PG_PASSWORD") is None:
            missing.append("DAGSTER_PG_PASSWORD (or ARCHIVE_LAKE_PG_PASSWORD; empty for trust authentication)")
        if missing:
            raise ConfigError(f"{var}=postgres uses the server of DAGSTER_PG_HOST but {_and(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not set")
        parts = {"host": get("DAGSTER_PG_HOST"), "port": _port("DAGSTER_PG_PORT", get("DAGSTER_PG_PORT") or "5432"),
                 "user": get("DAGSTER_PG_USER"),
                 "dbname": get("ARCHIVE_LAKE_PG_DB") or get("DAGSTER_PG_DB")}
    elif raw.startswith("postgres:"):
        from psycopg2.extensions import parse_dsn  # installed with dagster-postgres

        try:
            parts = parse_dsn(raw[len("postgres:"):])
        except Exception:  # the message may quote the conninfo, which may hold a password
            raise ConfigError(f"{var}: the text after 'postgres:' is not a libpq conninfo "
                              "(key=value pairs or a postgresql:// URL)") from None
        if "password" in parts:
            raise ConfigError(f"{var} contains a password; put it in ARCHIVE_LAKE_PG_PASSWORD instead")
        if "port" in parts and not _is_port(parts["port"]):
            raise ConfigError(f"{var}: port={parts['port']!r} is not a port number (1-65535)")
    else:
        raise ConfigError(f"{var} is not one of: sqlite, postgres, postgres:<conninfo> "
                          "(the value is not shown: it may hold a password)")
    return "postgres:" + " ".join(f"{k}={_conn_value(v)}" for k, v in sorted(parts.items()))


def _conn_value(v: str) -> str:
    return v if re.fullmatch(r"[^\s'\\]+", v) else "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
