"""Settings read once: the only module that reads the process environment.

``Settings.from_env(env)`` validates every variable and returns a frozen object; the Dagster
definitions (``build_definitions``) and the CLI build it once and pass it down. Each refusal is
a ``ConfigError`` naming the variable, the value and what is allowed. Secrets are NOT held
here: only whether they are set (the Dagster layer hands them over as ``dg.EnvVar``).
Pure: no Dagster.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from archive_platform.config import (
    ALLOWED_SOURCES,
    ConfigError,
    SourceSelection,
    parse_symbols,
    parse_times,
    source_env_var,
)
from archive_platform.crypto.config import CaptureSettings, SettingsError, capture_settings_from_env
from archive_platform.settings_lake import LAKE_SECRETS, LAKE_VARS, check_instance_env, lake_config
from archive_platform.sources.registry import VENDORS, setting_vars

if TYPE_CHECKING:
    from archive_platform.lake.remote import LakeConfig

#: snapshot intervals whose 09:30-anchored grid falls on a */N cron (N divides 30)
ALLOWED_SNAPSHOT_MINUTES = (1, 2, 3, 5, 6, 10, 15, 30)
DEFAULT_START_DATE = date(2024, 1, 2)
#: the variables that only say where things live: (variable, default)
PATHS = {
    "ARCHIVE_ROOT": "data/archive",
    "ARCHIVE_SIM_ROOT": "data/sim/archive",
    "ARCHIVE_DUCKDB": "data/archive.duckdb",
    "ARCHIVE_SIM_DUCKDB": "data/sim/archive.duckdb",
}
#: the vendors' key variables (names written once, in sources/registry.py)
SECRETS = tuple(v.key_env for v in VENDORS.values() if v.key_env)
#: the port/int ranges of the vendors' numeric settings
RANGES = {"port": (1, 65535), "int": (0, 2**31 - 1)}
#: which Theta Terminal API the thetadata source speaks: v3 (Theta Terminal v3, the default) or
#: v2; THETADATA_BASE_URL's default follows it (25503 for v3, 25510 for v2)
THETADATA_API = "THETADATA_API"
THETADATA_APIS = ("v3", "v2")


def environment() -> Mapping[str, str]:
    """The process environment (the one place it is read)."""
    return os.environ


def parse_int(env: Mapping[str, str], var: str, default: int, lo: int, hi: int) -> int:
    raw = (env.get(var) or "").strip()
    if not raw:
        return default
    # int() alone would also take "1_000" and non-ASCII digits ("\u0663" is 3)
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise ConfigError(f"{var}={raw!r} is not an integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise ConfigError(f"{var}={value} is out of range; allowed: {lo}..{hi}")
    return value


def parse_start_date(value: str | date, *, source: str = "start date") -> date:
    """Validate a partitions start: a ``YYYY-MM-DD`` string or ``date`` that is an NYSE session
    (``ConfigError``, a ValueError, naming ``source`` otherwise)."""
    from archive_platform import calendar

    if isinstance(value, datetime):
        raise ConfigError(f"{source} must be a date, not a datetime: {value!r}")
    if isinstance(value, str):
        # fromisoformat alone would also take "20250102" and week dates like "2025-W01-4"
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError(value)
            day = date.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{source} {value!r} is not an ISO date (YYYY-MM-DD)") from None
    elif isinstance(value, date):
        day = value
    else:
        raise ConfigError(f"{source} must be a YYYY-MM-DD string or a date, got {value!r}")
    if not (calendar.CALENDAR_START <= day <= calendar.CALENDAR_END):
        raise ConfigError(
            f"{source} {day.isoformat()} is outside the NYSE calendar's range "
            f"{calendar.CALENDAR_START.isoformat()}..{calendar.CALENDAR_END.isoformat()}"
        )
    if not calendar.is_trading_day(day):
        raise ConfigError(
            f"{source} {day.isoformat()} is not an NYSE trading day "
            f"(the next one is {calendar.next_trading_day(day).isoformat()})"
        )
    return day


#: the archive roots: each must be a directory this process can create and write
ROOT_VARS = ("ARCHIVE_ROOT", "ARCHIVE_SIM_ROOT")


def check_root(var: str, value: str) -> None:
    """Refuse an archive root that cannot hold an archive, naming the variable: the file
    system's root (the archive would spread its folders over the whole disk), a path that is or
    runs through a file, or one whose nearest existing folder this process cannot write."""
    path = Path(value).expanduser()
    absolute = path.absolute()
    if absolute == Path(absolute.anchor):
        raise ConfigError(f"{var}={value!r} is the file system's root; choose a folder for the archive")
    probe = absolute
    while not probe.exists():
        if probe.is_symlink():
            raise ConfigError(f"{var}={value!r}: {probe} is a dangling symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(
            f"{var}={value!r}: {probe} is a file, not a folder; the archive root must be a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{var}={value!r}: {probe} is not writable by this process, so nothing could be archived there")


#: the variables naming one file each (a views file is rebuilt whole: two kinds never share one)
DUCKDB_VARS = ("ARCHIVE_DUCKDB", "ARCHIVE_SIM_DUCKDB")
SOURCE_PREFIX = "ARCHIVE_SOURCE_"


def check_roots_apart(paths: Mapping[str, str]) -> None:
    """Refuse a live and a simulated root that are one folder or one inside the other, and one
    views file for both kinds: simulated and live data never mix (README, "Where things are")."""
    def where(var: str) -> Path:
        return Path(paths[var]).expanduser().absolute().resolve()

    live, sim = (where(v) for v in ROOT_VARS)
    if live == sim or live.is_relative_to(sim) or sim.is_relative_to(live):
        how = "the same folder" if live == sim else "one inside the other"
        raise ConfigError(
            f"ARCHIVE_ROOT={paths['ARCHIVE_ROOT']!r} and ARCHIVE_SIM_ROOT={paths['ARCHIVE_SIM_ROOT']!r} "
            f"are {how}; the live and the simulated archive never share a folder: give each its own")
    a, b = (where(v) for v in DUCKDB_VARS)
    if a == b:
        raise ConfigError(
            f"ARCHIVE_DUCKDB and ARCHIVE_SIM_DUCKDB are both {paths['ARCHIVE_DUCKDB']!r}; "
            "each kind's views file is rebuilt whole: give each its own file")


def check_source_vars(env: Mapping[str, str]) -> None:
    """Refuse an ``ARCHIVE_SOURCE_*`` variable naming no dataset (``ARCHIVE_SOURCE_STOCKS1M``):
    ignored, it would quietly leave the dataset on its default source."""
    known = {source_env_var(t) for t in ALLOWED_SOURCES}
    stray = sorted(v for v in env if v.startswith(SOURCE_PREFIX) and v not in known
                   and (env.get(v) or "").strip())
    if stray:
        raise ConfigError(
            f"{stray[0]} names no dataset ({stray[0][len(SOURCE_PREFIX):].lower()!r} is unknown), so "
            f"it would be ignored; the source variables are: {', '.join(sorted(known))}")


def _key_var(var: str) -> str:
    """The key variable of the vendor whose setting ``var`` is (for messages)."""
    for info in VENDORS.values():
        if info.key_env and any(v == var for v, _ in info.settings.values()):
            return info.key_env
    return "the vendor's key variable"


def check_host(var: str, raw: str) -> str:
    """A host name or IP address alone (no scheme, port or path: the port is its own setting)."""
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*", value):
        raise ConfigError(f"{var}={value!r} is not a host name or IP address (like 127.0.0.1 or "
                          "gateway.local; no scheme, port or path)")
    return value


def check_http_url(var: str, raw: str) -> str:
    """A vendor's base URL: ``http(s)://host[:port][/path]``. Credentials (``user:pass@``) and
    query strings (``?apiKey=...``) are refused without repeating the value: the URL is plain
    configuration (shown in the Dagster UI, in run config and logs), never a place for a key."""
    from urllib.parse import urlsplit

    value = raw.strip()
    example = "http(s)://host[:port][/path]"
    netloc = value.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in netloc:
        raise ConfigError(f"{var} holds credentials (user:password@host): give the key as "
                          f"{_key_var(var)}; the value is not shown: it may hold a secret")
    if "?" in value or "#" in value:
        raise ConfigError(f"{var} has a query string or fragment: a base URL is {example}, and a key "
                          f"goes in {_key_var(var)}; the value is not shown: it may hold a secret")
    try:
        parts = urlsplit(value)
        host, _port = parts.hostname, parts.port  # .port raises on a bad or out-of-range port
    except ValueError:
        raise ConfigError(f"{var}={value!r} is not an http(s) URL: its port is not a number "
                          "from 1 to 65535") from None
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in value):
        raise ConfigError(f"{var}={value!r} is not an http(s) URL like {example}")
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting of the archive, validated (see README "Configuration")."""

    sources: SourceSelection
    symbols: tuple[str, ...]  # empty: the simulated market's default universe
    start_date: date | None
    snapshot_minutes: int
    iv_rank_times: tuple[time, ...]
    sim_seed: int
    recovery_lookback: int
    paths: Mapping[str, str]
    vendor: Mapping[str, str]  # non-secret vendor connection settings, by variable name
    secrets_set: frozenset[str]  # which secret variables are set (never their values)
    #: crypto (docs/crypto.md): ARCHIVE_CRYPTO_CAPTURE (the capture service is expected to run:
    #: the crypto days come from its spool and the heartbeat sensor watches it),
    #: ARCHIVE_CRYPTO_COVERAGE_MIN (percent in the environment, a fraction here), the capture's own
    crypto_capture: bool = False
    crypto_coverage_min: float = 0.99
    crypto: CaptureSettings = field(default_factory=CaptureSettings)
    #: where each kind's lake lives (catalog, S3 data path) when not the local default; secrets
    #: left out (``lake_config(kind)`` adds them where a lake is opened)
    lakes: Mapping[str, "LakeConfig"] = field(default_factory=dict)
    #: ARCHIVE_LAKE_RETENTION_DAYS: how long expired lake snapshots stay readable by time travel
    #: (and superseded files on disk) before the daily maintenance removes them
    lake_retention_days: int = 7

    def path(self, var: str) -> Path:
        return Path(self.paths[var])

    @property
    def crypto_kind(self) -> str:
        """The archive the crypto (UTC-day) datasets live in: the live one when the capture
        service feeds them (``ARCHIVE_CRYPTO_CAPTURE``), else the simulated one."""
        return "live" if self.crypto_capture else "sim"

    def dataset_kind(self, ds) -> str:
        """The archive a dataset lives in: UTC-day datasets follow the capture setting
        (``crypto_kind``), the NYSE ones their source selection."""
        return self.crypto_kind if ds.calendar_name == "utc" else self.sources.store_kind(ds)

    def root(self, kind: str) -> Path:
        return self.path("ARCHIVE_SIM_ROOT" if kind == "sim" else "ARCHIVE_ROOT")

    def duckdb(self, kind: str) -> Path:
        return self.path("ARCHIVE_SIM_DUCKDB" if kind == "sim" else "ARCHIVE_DUCKDB")

    @property
    def start(self) -> date:
        return self.start_date or DEFAULT_START_DATE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(environment() if env is None else env)
        check_source_vars(env)
        sources = SourceSelection.from_env(env)
        start = (env.get("ARCHIVE_START_DATE") or "").strip() or None
        start_date = None
        if start is not None:  # validated here so the message names the variable
            start_date = parse_start_date(start, source="environment variable ARCHIVE_START_DATE")
        minutes = parse_int(env, "ARCHIVE_SNAPSHOT_MINUTES", 15, 1, 30)
        if minutes not in ALLOWED_SNAPSHOT_MINUTES:
            raise ConfigError(
                f"ARCHIVE_SNAPSHOT_MINUTES={minutes}: snapshot_minutes={minutes} does not divide "
                f"30; choose one of {ALLOWED_SNAPSHOT_MINUTES}"
            )
        times = parse_times(env.get("ARCHIVE_IV_RANK_TIMES"), (time(7, 0), time(19, 0)),
                            "ARCHIVE_IV_RANK_TIMES")
        vendor = {}
        for var, kind in setting_vars().items():
            if not (env.get(var) or "").strip():
                continue
            if kind in RANGES:
                vendor[var] = str(parse_int(env, var, 0, *RANGES[kind]))
            elif kind == "str" and var.endswith("_URL"):
                vendor[var] = check_http_url(var, env[var])
            elif kind == "str" and var.endswith("_HOST"):
                vendor[var] = check_host(var, env[var])
            else:
                vendor[var] = env[var].strip()
        api = (env.get(THETADATA_API) or "").strip()
        if api:
            if api.lower() not in THETADATA_APIS:
                raise ConfigError(f"{THETADATA_API}={api!r} is not supported; choose one of: "
                                  f"{', '.join(THETADATA_APIS)} (the Theta Terminal's API version)")
            vendor[THETADATA_API] = api.lower()
        paths = {var: (env.get(var) or "").strip() or default for var, default in PATHS.items()}
        for var in ROOT_VARS:
            check_root(var, paths[var])
        check_roots_apart(paths)
        # the instance's PostgreSQL settings: the code server and every run load the instance
        # too, and a half-set DAGSTER_PG_* would otherwise fail there with Dagster's tracebacks
        check_instance_env(env)
        return cls(
            sources=sources,
            symbols=tuple(parse_symbols(env.get("ARCHIVE_SYMBOLS"), [])),
            start_date=start_date,
            snapshot_minutes=minutes,
            iv_rank_times=times,
            sim_seed=parse_int(env, "ARCHIVE_SIM_SEED", 0, 0, 2**32 - 1),
            recovery_lookback=parse_int(env, "ARCHIVE_RECOVERY_LOOKBACK", 10, 1, 365),
            paths=paths,
            vendor=vendor,
            secrets_set=frozenset(v for v in SECRETS + LAKE_SECRETS + ("DAGSTER_PG_PASSWORD",) if env.get(v)),
            crypto_capture=parse_bool(env, "ARCHIVE_CRYPTO_CAPTURE", False),
            crypto_coverage_min=parse_percent(env, "ARCHIVE_CRYPTO_COVERAGE_MIN", 99.0),
            crypto=_crypto(env),
            lakes={k: c for k in LAKE_VARS if (c := lake_config(k, env, secrets=False)) is not None},
            # at least a day: a retention shorter than a write's time from its file to its
            # commit (up to the 120 s catalog retry) would delete a writer's file as an orphan
            lake_retention_days=parse_int(env, "ARCHIVE_LAKE_RETENTION_DAYS", 7, 1, 3650),
        )


def parse_bool(env: Mapping[str, str], var: str, default: bool) -> bool:
    raw = (env.get(var) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{var}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")


def parse_percent(env: Mapping[str, str], var: str, default: float) -> float:
    """A percentage ``0 < p <= 100`` (``99``, ``99.5`` or ``99.5%``), returned as a fraction."""
    raw = (env.get(var) or "").strip()
    if not raw:
        return default / 100.0
    try:
        value = float(raw.removesuffix("%"))
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a percentage (e.g. 99 or 99.5)") from None
    if not 0 < value <= 100:
        raise ConfigError(f"{var}={raw!r} is out of range; allowed: more than 0 up to 100 (percent)")
    return value / 100.0


def _crypto(env: Mapping[str, str]) -> CaptureSettings:
    try:
        return capture_settings_from_env(env)
    except SettingsError as exc:  # the message names the variable
        raise ConfigError(str(exc)) from None
