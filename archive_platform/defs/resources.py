"""Dagster resources: where the archive lives, and which source feeds each archive type.

Configuration lives here, not in module globals: ``build_definitions`` fills these from the
``Settings`` it built once (``archive_platform.settings``), and secrets arrive as ``dg.EnvVar``
so their values never show in the UI, in run config or in logs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from archive_platform.archiving import Settings
from archive_platform.config import SIM, parse_times
from archive_platform.schemas import ArchiveType, spec_for
from archive_platform.settings import ALLOWED_SNAPSHOT_MINUTES, Settings as ArchiveSettings
from archive_platform.sources.base import MarketSource


def source_class(name: str) -> type[MarketSource]:
    """The ``MarketSource`` subclass behind a source name (``sim``, ``polygon``, ...)."""
    from archive_platform.sources.registry import source_class as cls

    return cls(name)


def can_backfill(selection, archive_type: ArchiveType) -> bool:
    """Whether the past of ``archive_type`` can be fetched again with the configured sources.

    Asks the dataset's declaration (``backfill_sources``; a test keeps it equal to the source
    classes' own ``backfillable``); a derived dataset can be recovered exactly when the
    dataset it is derived from can.
    """
    ds = spec_for(archive_type)
    name = selection[ds.name]
    if name == "derived":
        return can_backfill(selection, ds.derived_from[0])
    return name in ds.backfill_sources


class ArchiveResource(dg.ConfigurableResource):
    """The archive roots (live and simulated are kept apart) and their DuckDB view files, and
    where each kind's lake lives when not under its root (docs/deployment.md): a catalog on
    PostgreSQL, data on S3. Credentials arrive as ``dg.EnvVar`` (resolved in the run, never shown)."""

    live_root: str = "data/archive"
    sim_root: str = "data/sim/archive"
    live_duckdb: str = "data/archive.duckdb"
    sim_duckdb: str = "data/sim/archive.duckdb"
    #: kind -> the lake's non-secret location: {"catalog", "pg_schema", "s3_bucket", "s3_prefix",
    #: "s3_endpoint", "s3_region", "s3_url_style", "s3_use_ssl"}; missing kind: the local default
    lakes: dict[str, dict[str, str]] = {}
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    lake_pg_password: str = ""

    def __repr_args__(self):  # the resolved credentials never show in repr() / str()
        from archive_platform.defs.vendor_resources.base import hide_secrets

        return hide_secrets(super().__repr_args__(),
                            ("aws_access_key_id", "aws_secret_access_key", "lake_pg_password"))

    def root(self, kind: str) -> Path:
        return Path(self.sim_root if kind == "sim" else self.live_root).absolute()

    def lake_config(self, kind: str):
        """The ``LakeConfig`` of ``kind`` with the credentials filled in (None: local default)."""
        spec = self.lakes.get(kind)
        if not spec:
            return None
        from archive_platform.lake.remote import LakeConfig, S3Location

        s3 = None
        if spec.get("s3_bucket"):
            s3 = S3Location(spec["s3_bucket"], spec.get("s3_prefix", ""), spec.get("s3_endpoint", ""),
                            spec.get("s3_region", "us-east-1"), spec.get("s3_url_style", "vhost"),
                            spec.get("s3_use_ssl", "true") == "true",
                            self.aws_access_key_id, self.aws_secret_access_key)
        catalog = spec.get("catalog") or None
        return LakeConfig(catalog, s3, spec.get("pg_schema", ""), self.lake_pg_password if catalog else "")

    def store(self, kind: str):
        """The store (``archive_platform.storage.Storage``) of ``kind`` (``sim`` or ``live``)."""
        from archive_platform.lake.remote import LakeConfig
        from archive_platform.store import ArchiveStore

        return ArchiveStore(self.root(kind), kind=kind, lake=self.lake_config(kind) or LakeConfig())

    def duckdb_path(self, kind: str) -> Path:
        return Path(self.sim_duckdb if kind == "sim" else self.live_duckdb).absolute()


class SourcesResource(dg.ConfigurableResource):
    """Which source serves each dataset, the symbol universe, the clock and the simulated market.

    Source values: ``sim`` (default), ``unusual_whales``, ``thetadata``, ``polygon``,
    ``barchart``, ``ib``, ``derived`` (as ``archive_platform.config.ALLOWED_SOURCES`` allows).
    """

    #: dataset name -> source name (missing: sim)
    choice: dict[str, str] = {}
    symbols: list[str] = []
    sim_seed: int = 0
    snapshot_minutes: int = 15
    iv_rank_times: str = "07:00,19:00"
    #: pretend "now" is this ISO instant (tests and replays); empty = the real clock
    as_of: str = ""

    _sources: dict = PrivateAttr(default_factory=dict)

    def now(self) -> datetime:
        if self.as_of:
            ts = datetime.fromisoformat(self.as_of)
            if ts.tzinfo is None:
                raise ValueError(f"as_of {self.as_of!r} needs a UTC offset")
            return ts
        return datetime.now().astimezone()

    def source_name(self, archive_type: ArchiveType | str) -> str:
        return self.choice.get(spec_for(archive_type).name, SIM)

    def symbol_list(self) -> list[str]:
        if self.symbols:
            return list(self.symbols)
        from archive_platform.sim import default_symbols

        return default_symbols()

    def settings(self) -> Settings:
        if self.snapshot_minutes not in ALLOWED_SNAPSHOT_MINUTES:
            raise ValueError(
                f"snapshot_minutes={self.snapshot_minutes} does not divide 30; "
                f"choose one of {ALLOWED_SNAPSHOT_MINUTES}"
            )
        return Settings(
            symbols=tuple(self.symbol_list()),
            snapshot_every=timedelta(minutes=self.snapshot_minutes),
            iv_rank_times=parse_times(self.iv_rank_times, (), "ARCHIVE_IV_RANK_TIMES"),
        )

    def source(self, archive_type: ArchiveType | str) -> MarketSource | None:
        """The simulated market when ``archive_type`` comes from it; None when it is derived.

        Vendor sources are the vendor resources' (``defs/vendor_resources``), not this one's.
        """
        name = self.source_name(archive_type)
        if name == "derived":
            return None
        if name != SIM:
            raise ValueError(f"{archive_type} comes from {name}: its client is the vendor_{name} resource's")
        return self.simulated()

    def simulated(self) -> MarketSource:
        """The simulated market (one per run, seeded with ``sim_seed``)."""
        if SIM not in self._sources:
            self._sources[SIM] = source_class(SIM)(seed=self.sim_seed)
        return self._sources[SIM]

    def teardown_after_execution(self, context: Any) -> None:
        for src in self._sources.values():
            src.close()
        self._sources.clear()


def resources_from_settings(settings: ArchiveSettings) -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the settings (called by ``build_definitions``, not at import).

    Secrets are passed as ``dg.EnvVar`` so Dagster resolves them at run time and never displays
    them; everything else is plain configuration.
    """
    sel = settings.sources
    vendors = sel.vendors()
    archive = ArchiveResource(
        live_root=str(settings.root("live")), sim_root=str(settings.root("sim")),
        live_duckdb=str(settings.duckdb("live")), sim_duckdb=str(settings.duckdb("sim")),
        **lake_fields(settings),
    )
    sources = SourcesResource(
        choice={t.value: sel[t] for t in ArchiveType}, symbols=list(settings.symbols),
        sim_seed=settings.sim_seed, snapshot_minutes=settings.snapshot_minutes,
        iv_rank_times=",".join(t.strftime("%H:%M") for t in settings.iv_rank_times),
    )
    sources.settings()  # validate snapshot minutes and times now, at load
    from archive_platform.defs.vendor_resources import vendor_resources

    return {"archive": archive, "sources": sources, **vendor_resources(settings)}


def lake_fields(settings: ArchiveSettings) -> dict[str, Any]:
    """``ArchiveResource`` fields for lakes on PostgreSQL / S3: locations as plain config,
    credentials as ``dg.EnvVar`` of the variables ``settings.lake_config`` reads."""
    lakes: dict[str, dict[str, str]] = {}
    for kind, cfg in settings.lakes.items():
        spec = {"catalog": cfg.catalog or "", "pg_schema": cfg.pg_schema}
        if cfg.s3 is not None:
            s3 = cfg.s3
            spec.update(s3_bucket=s3.bucket, s3_prefix=s3.prefix, s3_endpoint=s3.endpoint,
                        s3_region=s3.region, s3_url_style=s3.url_style,
                        s3_use_ssl="true" if s3.use_ssl else "false")
        lakes[kind] = spec
    if not lakes:
        return {}
    out: dict[str, Any] = {"lakes": lakes}
    if any(cfg.s3 is not None for cfg in settings.lakes.values()):
        out.update(aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
                   aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"))
    for var in ("ARCHIVE_LAKE_PG_PASSWORD", "DAGSTER_PG_PASSWORD"):  # lake_config's order
        if var in settings.secrets_set and any(cfg.postgres for cfg in settings.lakes.values()):
            out["lake_pg_password"] = dg.EnvVar(var)
            break
    return out


def resources_from_env(env: dict[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """``resources_from_settings`` over ``Settings.from_env(env)``."""
    return resources_from_settings(ArchiveSettings.from_env(env))
