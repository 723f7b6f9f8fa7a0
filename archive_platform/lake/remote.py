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

    def s3_url_var(self, kind: str | None = None) -> str:
        """The setting that names this lake's S3 URL, for messages (``kind``: live/sim; without
        it, taken from the catalog schema when there is one)."""
        kind = kind or {"archive_live": "live", "archive_sim": "sim"}.get(self.pg_schema)
        return {"live": "ARCHIVE_S3_URL", "sim": "ARCHIVE_SIM_S3_URL"}.get(
            kind or "", "ARCHIVE_S3_URL (ARCHIVE_SIM_S3_URL for the simulated archive)")

    def storage_problem(self, text: str, *, kind: str | None = None) -> str | None:
        """What to check, as a parenthesised hint naming the settings, when ``text`` (an error
        of DuckDB's httpfs or of pyarrow's S3 client) is the bucket refusing or failing this
        lake (None: not an S3 problem this config can explain)."""
        if self.s3 is None:
            return None
        var = self.s3_url_var(kind)
        endpoint = ("the S3 endpoint of ARCHIVE_S3_ENDPOINT" if self.s3.endpoint else
                    f"AWS S3 (s3.{self.s3.region}.amazonaws.com; ARCHIVE_S3_ENDPOINT is not set)")
        for pattern, hint in (
                (_S3_NO_BUCKET, f"the bucket {self.s3.bucket!r} does not exist on {endpoint}: check the "
                                f"bucket of {var}, and ARCHIVE_S3_ENDPOINT"),
                (_S3_AUTH, f"the server refused the credentials: check AWS_ACCESS_KEY_ID and "
                           f"AWS_SECRET_ACCESS_KEY, and that this key may read and write {self.s3.url}"),
                (_S3_MISSING, f"an object the lake catalog names is missing from {self.s3.url} (deleted, "
                              f"or the bucket emptied): restore it from a backup of the bucket "
                              f"(docs/deployment.md, Backup), and check {var} names this archive"),
                (_S3_NETWORK, f"is {endpoint} up and reachable?")):
            if pattern.search(text):
                return f" ({hint})"
        return None

    def storage_error(self, exc: BaseException, *, kind: str | None = None,
                      doing: str = "read") -> Exception | None:
        """``exc`` (DuckDB's or pyarrow's error while reading the data on S3) as one
        ``LakeStorageError`` naming the settings to check, never a secret; None when it is not
        such an error (re-raise it as it is)."""
        if self.s3 is None or not isinstance(exc, (OSError, _duckdb_error())):
            return None
        if isinstance(exc, (storage_error_type(), FileNotFoundError)) or type(exc).__name__ == "LakeCatalogError":
            return None  # already clear (ours), or a local "nothing written yet"
        text = str(exc)
        if "Postgres" in text:  # the catalog's server (LakeLocation.postgres_refusal), not the bucket
            return None
        hint = self.storage_problem(text, kind=kind)
        if hint is None:
            return None
        endpoint = f"endpoint {self.s3.endpoint}" if self.s3.endpoint else f"AWS region {self.s3.region}"
        return storage_error_type()(
            f"cannot {doing} the archive's data at {self.s3.data_path} ({self.s3_url_var(kind)}, "
            f"{endpoint}): {self.scrub(' '.join(text.split()))}{hint}")

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


#: how DuckDB's httpfs and pyarrow's S3 client say why a request failed (checked in this order)
_S3_NO_BUCKET = re.compile(r"NoSuchBucket|NO_SUCH_BUCKET")
_S3_AUTH = re.compile(r"HTTP 40[13]\b|InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|"
                      r"INVALID_ACCESS_KEY_ID|SIGNATURE_DOES_NOT_MATCH|ACCESS_DENIED|ExpiredToken|"
                      r"InvalidToken|EXPIRED_TOKEN|UNRECOGNIZED_CLIENT")
_S3_MISSING = re.compile(r"HTTP 404\b|NoSuchKey|NO_SUCH_KEY|RESOURCE_NOT_FOUND")
_S3_NETWORK = re.compile(r"Could not connect|Couldn't connect|Failure when receiving|NETWORK_CONNECTION|"
                         r"Connection refused|Connection reset|Could not resolve|timed out|"
                         r"Timeout was reached|curlCode", re.IGNORECASE)


def _duckdb_error() -> type:
    import duckdb

    return duckdb.Error


@functools.cache
def storage_error_type() -> type:
    """``LakeStorageError``, created on first use (``archive_platform.config`` imports every
    dataset): the lake's data on S3 cannot be read or written (credentials, bucket, endpoint, a
    missing object). A ``ConfigError`` (the CLI prints its one line, naming the settings), an
    ``OSError`` (a write re-raises it as ``ArchiveWriteError`` naming the partition) and, for
    callers that caught DuckDB's error before, a ``duckdb.HTTPException``."""
    import duckdb

    from archive_platform.config import ConfigError

    class LakeStorageError(ConfigError, OSError, duckdb.HTTPException):
        __doc__ = storage_error_type.__doc__

        def __str__(self) -> str:
            return str(self.args[0]) if self.args else ""

    LakeStorageError.__module__ = __name__
    return LakeStorageError


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
