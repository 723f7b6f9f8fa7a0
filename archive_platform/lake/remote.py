"""Where a lake lives when it is not one local folder: the data path on S3-compatible storage
and the catalog on PostgreSQL, with the secrets each needs.

``LakeConfig`` is what ``archive_platform.settings.lake_config`` builds from the environment (and
the Dagster resource from ``EnvVar``s). Secrets (``key_id``, ``secret``, ``pg_password``) are
fields hidden from ``repr`` and reach DuckDB only as ``CREATE SECRET`` statements run in each
connection (``setup_sql``); they are never part of a path, URL, file or log line. Pure (no Dagster).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class S3Location:
    """An S3 prefix (``s3://bucket/prefix``) holding one archive: ``<prefix>/_lake/data/`` is the
    lake's data path, ``<prefix>/<dir>/date=D/<stem>_YYYYMMDD.parquet`` the plain layout."""

    bucket: str
    prefix: str  # no leading or trailing slash; may be empty
    endpoint: str = ""  # host[:port]; empty: AWS (s3.<region>.amazonaws.com)
    region: str = "us-east-1"
    url_style: str = "vhost"  # "path" or "vhost"
    use_ssl: bool = True
    key_id: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)

    @classmethod
    def parse_url(cls, url: str) -> tuple[str, str]:
        """``s3://bucket/prefix`` -> (bucket, prefix); ValueError saying what is wrong."""
        if "@" in url.split("://", 1)[-1].split("/", 1)[0]:  # s3://KEY:SECRET@bucket/...
            raise ValueError("credentials do not belong in the URL: give them as AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY (the value is not shown: it may hold a secret)")
        m = re.fullmatch(r"s3://([^/]+)/?(.*)", url.strip())
        if not m:
            raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
        bucket, prefix = m.group(1), m.group(2).strip("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"{bucket!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        if "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
            raise ValueError(f"{url!r}: the prefix has an empty, '.' or '..' segment")
        return bucket, prefix

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def data_path(self) -> str:
        return f"{self.url}/_lake/data/"

    def key(self, url: str) -> str:
        """``bucket/key`` of an ``s3://`` URL in this bucket (the pyarrow file system's path)."""
        if not url.startswith(f"s3://{self.bucket}/"):
            raise ValueError(f"{url} is not in bucket {self.bucket}")
        return url[len("s3://"):]

    def secret_sql(self, *, ref: Callable[[str], str] | None = None) -> str:
        """The DuckDB secret for this bucket (scoped to it), run in every connection. ``ref``
        maps a variable name to an SQL expression reading it (the DuckDB CLI's init script uses
        its getenv function, so the values stay in the environment, never in a file)."""
        key = ref("AWS_ACCESS_KEY_ID") if ref else _lit(self.key_id)
        secret = ref("AWS_SECRET_ACCESS_KEY") if ref else _lit(self.secret)
        opts = [("TYPE", "s3"), ("KEY_ID", key), ("SECRET", secret),
                ("REGION", _lit(self.region)), ("URL_STYLE", _lit(self.url_style)),
                ("USE_SSL", "true" if self.use_ssl else "false"), ("SCOPE", _lit(f"s3://{self.bucket}"))]
        if self.endpoint:
            opts.append(("ENDPOINT", _lit(self.endpoint)))
        return "CREATE OR REPLACE SECRET archive_s3 (" + ", ".join(f"{k} {v}" for k, v in opts) + ")"

    def filesystem(self):
        """A pyarrow S3 file system for our own uploads, copies and deletes."""
        from pyarrow import fs

        kw = {}
        if self.endpoint:
            kw["endpoint_override"] = self.endpoint
        return fs.S3FileSystem(access_key=self.key_id or None, secret_key=self.secret or None,
                               region=self.region, scheme="https" if self.use_ssl else "http",
                               force_virtual_addressing=self.url_style == "vhost" and bool(self.endpoint),
                               connect_timeout=10, request_timeout=60, **kw)


@dataclass(frozen=True)
class LakeConfig:
    """Catalog and data path of one archive root; the default is the local layout.

    ``catalog``: ``None`` (SQLite under the root) or ``"postgres:<libpq conninfo without
    password>"``; ``pg_schema``: the PostgreSQL schema holding this lake's catalog tables (live
    and simulated archives may share a database, never a schema). ``s3``: the data path on S3.
    """

    catalog: str | None = None
    s3: S3Location | None = None
    pg_schema: str = ""
    pg_password: str = field(default="", repr=False)

    @property
    def postgres(self) -> bool:
        return bool(self.catalog and self.catalog.startswith("postgres:"))

    @property
    def catalog_var(self) -> str:
        """The setting that names this catalog, for messages (the schema says which kind)."""
        return {"archive_live": "ARCHIVE_LAKE_CATALOG",
                "archive_sim": "ARCHIVE_SIM_LAKE_CATALOG"}.get(self.pg_schema, "the lake catalog")

    def scrub(self, text: str) -> str:
        """``text`` (a driver's error message) without any secret of this config, nor any
        ``password=...`` a connection string in it might carry."""
        text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text, flags=re.IGNORECASE)
        text = re.sub(r"(://[^:/@\s]*:)[^@\s]+@", r"\1***@", text)  # scheme://user:password@
        secrets = [self.pg_password] + ([self.s3.key_id, self.s3.secret] if self.s3 else [])
        # (a secret of 1-3 characters is not worth garbling every message for)
        for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def setup_sql(self, *, ref: Callable[[str], str] | None = None) -> list[str]:
        """Statements every DuckDB connection to this lake runs before attaching it. ``ref``:
        secrets as expressions reading their variables (see ``S3Location.secret_sql``)."""
        out = []
        if self.s3 is not None:
            out.append(self.s3.secret_sql(ref=ref))
        password = (f"coalesce(nullif({ref('ARCHIVE_LAKE_PG_PASSWORD')}, ''), {ref('DAGSTER_PG_PASSWORD')})"
                    if ref else _lit(self.pg_password))
        if self.postgres and self.pg_password:
            # the unnamed postgres secret is merged into the catalog's conninfo by postgres_scanner
            out.append(f"CREATE OR REPLACE SECRET (TYPE postgres, PASSWORD {password})")
        return out

    def pg_connect_kwargs(self) -> dict[str, str]:
        """psycopg2 ``connect`` arguments for the catalog database (advisory locks)."""
        assert self.catalog is not None
        kw = {"dsn": self.catalog[len("postgres:"):]}
        if self.pg_password:
            kw["password"] = self.pg_password
        return kw


def _lit(text: str) -> str:
    if "\x00" in text:
        raise ValueError("NUL byte in SQL literal")
    return "'" + text.replace("'", "''") + "'"


@functools.lru_cache(maxsize=8)
def filesystem(s3: S3Location):
    """One pyarrow S3 file system per location and process (it pools its HTTP connections)."""
    return s3.filesystem()


class RemoteFile(str):
    """An object in the bucket where the store hands out a ``Path``: ``str()`` is its
    ``s3://`` URL; ``name``, ``exists()`` and ``stat()`` (size and mtime) ask the bucket."""

    _s3: S3Location

    def __new__(cls, url: str, s3: S3Location) -> "RemoteFile":
        obj = super().__new__(cls, url)
        obj._s3 = s3
        return obj

    @property
    def name(self) -> str:
        return self.rsplit("/", 1)[-1]

    def _info(self):
        return filesystem(self._s3).get_file_info(self._s3.key(self))

    def exists(self) -> bool:
        from pyarrow import fs

        return self._info().type == fs.FileType.File

    def stat(self) -> os.stat_result:
        from pyarrow import fs

        info = self._info()
        if info.type != fs.FileType.File:
            raise FileNotFoundError(errno.ENOENT, "no such object", str(self))
        mtime = info.mtime.timestamp() if info.mtime else 0.0
        return os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, info.size, mtime, mtime, mtime))
