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


#: where each vendor source class lives (imported only when asked: no vendor code at load)
SOURCE_CLASSES: dict[str, tuple[str, str]] = {
    SIM: ("archive_platform.sim", "SimulatedMarket"),
    "unusual_whales": ("archive_platform.vendors.uw", "UnusualWhalesSource"),
    "polygon": ("archive_platform.vendors.polygon", "PolygonSource"),
    "thetadata": ("archive_platform.vendors.thetadata", "ThetaDataSource"),
    "barchart": ("archive_platform.vendors.barchart", "BarchartSource"),
    "ib": ("archive_platform.vendors.ib", "IBSource"),
}


def source_class(name: str) -> type[MarketSource]:
    """The ``MarketSource`` subclass behind a source name (``sim``, ``polygon``, ...)."""
    import importlib

    module, cls = SOURCE_CLASSES[name]
    return getattr(importlib.import_module(module), cls)


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
    """The archive roots (live and simulated are kept apart) and their DuckDB view files."""

    live_root: str = "data/archive"
    sim_root: str = "data/sim/archive"
    live_duckdb: str = "data/archive.duckdb"
    sim_duckdb: str = "data/sim/archive.duckdb"

    def root(self, kind: str) -> Path:
        return Path(self.sim_root if kind == "sim" else self.live_root).absolute()

    def store(self, kind: str):
        """The store (``archive_platform.storage.Storage``) of ``kind`` (``sim`` or ``live``)."""
        from archive_platform.store import ArchiveStore

        return ArchiveStore(self.root(kind), kind=kind)

    def duckdb_path(self, kind: str) -> Path:
        return Path(self.sim_duckdb if kind == "sim" else self.live_duckdb).absolute()


class SourcesResource(dg.ConfigurableResource):
    """Which source serves each archive type, the symbol universe, and vendor connection settings.

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

    uw_api_key: str | None = None
    uw_base_url: str = "https://api.unusualwhales.com"
    thetadata_base_url: str = "http://127.0.0.1:25510"
    polygon_api_key: str | None = None
    polygon_base_url: str = "https://api.polygon.io"
    barchart_api_key: str | None = None
    barchart_base_url: str = "https://ondemand.websol.barchart.com"
    barchart_csv_dir: str | None = None
    ib_host: str = "127.0.0.1"
    ib_port: int = 7497
    ib_client_id: int = 1

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
        """The source object serving ``archive_type`` (None for types derived from options)."""
        name = self.source_name(archive_type)
        if name == "derived":
            return None
        if name not in self._sources:
            self._sources[name] = self._build(name)
        return self._sources[name]

    def _build(self, name: str) -> MarketSource:
        # Vendor modules import lazily: a simulated-only setup never loads httpx clients or ib_async.
        if name not in SOURCE_CLASSES:
            raise ValueError(f"unknown source {name!r}")
        cls = source_class(name)
        if name == SIM:
            return cls(seed=self.sim_seed)
        if name == "unusual_whales":
            return cls(_required(self.uw_api_key, "UW_API_KEY"), self.uw_base_url)
        if name == "polygon":
            return cls(_required(self.polygon_api_key, "POLYGON_API_KEY"), self.polygon_base_url)
        if name == "thetadata":
            return cls(self.thetadata_base_url)
        if name == "barchart":
            csv_dir = Path(self.barchart_csv_dir) if self.barchart_csv_dir else None
            return cls(self.barchart_api_key, self.barchart_base_url, csv_dir)
        return cls(self.ib_host, self.ib_port, self.ib_client_id)  # ib

    def teardown_after_execution(self, context: Any) -> None:
        for src in self._sources.values():
            src.close()
        self._sources.clear()


def _required(value: str | None, var: str) -> str:
    if not value:
        raise ValueError(f"{var} is not set; export it (see .env.example) or choose another source")
    return value


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
    )
    opt: dict[str, Any] = {}
    if "unusual_whales" in vendors:
        opt["uw_api_key"] = dg.EnvVar("UW_API_KEY")
    if "polygon" in vendors:
        opt["polygon_api_key"] = dg.EnvVar("POLYGON_API_KEY")
    if "barchart" in vendors and "BARCHART_API_KEY" in settings.secrets_set:
        opt["barchart_api_key"] = dg.EnvVar("BARCHART_API_KEY")
    fields = {"UW_BASE_URL": "uw_base_url", "THETADATA_BASE_URL": "thetadata_base_url",
              "POLYGON_BASE_URL": "polygon_base_url", "BARCHART_BASE_URL": "barchart_base_url",
              "BARCHART_CSV_DIR": "barchart_csv_dir", "IB_HOST": "ib_host",
              "IB_PORT": "ib_port", "IB_CLIENT_ID": "ib_client_id"}
    for var, value in settings.vendor.items():
        opt[fields[var]] = int(value) if var in ("IB_PORT", "IB_CLIENT_ID") else value
    sources = SourcesResource(
        choice={t.value: sel[t] for t in ArchiveType}, symbols=list(settings.symbols),
        sim_seed=settings.sim_seed, snapshot_minutes=settings.snapshot_minutes,
        iv_rank_times=",".join(t.strftime("%H:%M") for t in settings.iv_rank_times), **opt,
    )
    sources.settings()  # validate snapshot minutes and times now, at load
    return {"archive": archive, "sources": sources}


def resources_from_env(env: dict[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """``resources_from_settings`` over ``Settings.from_env(env)``."""
    return resources_from_settings(ArchiveSettings.from_env(env))
