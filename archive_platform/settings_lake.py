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
    catalog = _lake_catalog(cat_var, get)
    password = get("ARCHIVE_LAKE_PG_PASSWORD") or get("DAGSTER_PG_PASSWORD")
    return LakeConfig(catalog, s3, f"archive_{kind}" if catalog else "",
                      password if (catalog and secrets) else "")


def _s3_endpoint(raw: str) -> tuple[str, bool | None]:
    """``host[:port]`` and whether the scheme asked for TLS (None: no scheme given)."""
    if not raw:
        return "", None
    m = re.fullmatch(r"(?:(https?)://)?([A-Za-z0-9.-]+(?::\d{1,5})?)/?", raw)
    if not m:
        raise ConfigError(f"ARCHIVE_S3_ENDPOINT={raw!r} is not host[:port] or http(s)://host[:port]")
    return m.group(2), (m.group(1) == "https") if m.group(1) else None


def _lake_catalog(var: str, get) -> str | None:
    """``None`` (SQLite under the root) or ``postgres:<conninfo without password>``."""
    raw = get(var)
    if raw in ("", "sqlite"):
        return None
    if raw == "postgres":  # the Dagster instance's server; database ARCHIVE_LAKE_PG_DB
        if not get("DAGSTER_PG_HOST"):
            raise ConfigError(f"{var}=postgres needs DAGSTER_PG_HOST (or give postgres:<conninfo>)")
        parts = {"host": get("DAGSTER_PG_HOST"), "port": get("DAGSTER_PG_PORT") or "5432",
                 "user": get("DAGSTER_PG_USER") or "postgres",
                 "dbname": get("ARCHIVE_LAKE_PG_DB") or get("DAGSTER_PG_DB") or "postgres"}
    elif raw.startswith("postgres:"):
        from psycopg2.extensions import parse_dsn  # installed with dagster-postgres

        try:
            parts = parse_dsn(raw[len("postgres:"):])
        except Exception:  # the message may quote the conninfo, which may hold a password
            raise ConfigError(f"{var}: the text after 'postgres:' is not a libpq conninfo "
                              "(key=value pairs or a postgresql:// URL)") from None
        if "password" in parts:
            raise ConfigError(f"{var} contains a password; put it in ARCHIVE_LAKE_PG_PASSWORD instead")
    else:
        raise ConfigError(f"{var} is not one of: sqlite, postgres, postgres:<conninfo> "
                          "(the value is not shown: it may hold a password)")
    return "postgres:" + " ".join(f"{k}={_conn_value(v)}" for k, v in sorted(parts.items()))


def _conn_value(v: str) -> str:
    return v if re.fullmatch(r"[^\s'\\]+", v) else "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
