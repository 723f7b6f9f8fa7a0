"""Dagster resources: where the archive lives, and which source feeds each archive type.

Configuration lives here, not in module globals: ``build_definitions`` fills these from the
environment once, when the code location loads, and secrets arrive as ``dg.EnvVar`` so their
values never show in the UI, in run config or in logs.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from archive_platform.archiving import Settings
from archive_platform.config import SIM, parse_times
from archive_platform.schemas import ArchiveType
from archive_platform.sources.base import MarketSource

#: snapshot intervals whose 09:30-anchored grid falls on a */N cron (N divides 30)
ALLOWED_SNAPSHOT_MINUTES = (1, 2, 3, 5, 6, 10, 15, 30)


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

    Asks the source class's own ``backfillable`` declaration; a derived type can be recovered
    exactly when the options it is derived from can.
    """
    name = selection[archive_type]
    if name == "derived":
        archive_type, name = ArchiveType.OPTIONS, selection[ArchiveType.OPTIONS]
    return archive_type in source_class(name).backfillable


class ArchiveResource(dg.ConfigurableResource):
    """The archive roots (live and simulated are kept apart) and their DuckDB view files."""

    live_root: str = "data/archive"
    sim_root: str = "data/sim/archive"
    live_duckdb: str = "data/archive.duckdb"
    sim_duckdb: str = "data/sim/archive.duckdb"

    def root(self, kind: str) -> Path:
        return Path(self.sim_root if kind == "sim" else self.live_root).absolute()

    def store(self, kind: str):
        """The ``ArchiveStore`` of ``kind`` (``sim`` or ``live``)."""
        from archive_platform.store import ArchiveStore

        return ArchiveStore(self.root(kind), kind=kind)

    def duckdb_path(self, kind: str) -> Path:
        return Path(self.sim_duckdb if kind == "sim" else self.live_duckdb).absolute()


class SourcesResource(dg.ConfigurableResource):
    """Which source serves each archive type, the symbol universe, and vendor connection settings.

    Source values: ``sim`` (default), ``unusual_whales``, ``thetadata``, ``polygon``,
    ``barchart``, ``ib``, ``derived`` (as ``archive_platform.config.ALLOWED_SOURCES`` allows).
    """

    uw_flow: str = SIM
    options: str = SIM
    gex: str = SIM
    stocks_1m: str = SIM
    iv_rank: str = SIM
    trades: str = SIM
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
        return getattr(self, ArchiveType(archive_type).value)

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


def resources_from_env(env: dict[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the environment (called by ``build_definitions``, not at import).

    Secrets are passed as ``dg.EnvVar`` so Dagster resolves them at run time and never displays
    them; everything else is plain configuration.
    """
    from archive_platform.config import SourceSelection, parse_symbols

    env = dict(os.environ if env is None else env)
    sel = SourceSelection.from_env(env)
    vendors = sel.vendors()
    from archive_platform.store import default_root
    from archive_platform.views import default_duckdb_path

    archive = ArchiveResource(
        live_root=str(default_root("live", env)),
        sim_root=str(default_root("sim", env)),
        live_duckdb=str(default_duckdb_path("live", env)),
        sim_duckdb=str(default_duckdb_path("sim", env)),
    )
    opt: dict[str, Any] = {}
    if "unusual_whales" in vendors:
        opt["uw_api_key"] = dg.EnvVar("UW_API_KEY")
    if "polygon" in vendors:
        opt["polygon_api_key"] = dg.EnvVar("POLYGON_API_KEY")
    if "barchart" in vendors and env.get("BARCHART_API_KEY"):
        opt["barchart_api_key"] = dg.EnvVar("BARCHART_API_KEY")
    for field, var in [
        ("uw_base_url", "UW_BASE_URL"),
        ("thetadata_base_url", "THETADATA_BASE_URL"),
        ("polygon_base_url", "POLYGON_BASE_URL"),
        ("barchart_base_url", "BARCHART_BASE_URL"),
        ("barchart_csv_dir", "BARCHART_CSV_DIR"),
        ("ib_host", "IB_HOST"),
        ("iv_rank_times", "ARCHIVE_IV_RANK_TIMES"),
    ]:
        if env.get(var):
            opt[field] = env[var]
    for field, var in [("ib_port", "IB_PORT"), ("ib_client_id", "IB_CLIENT_ID"),
                       ("snapshot_minutes", "ARCHIVE_SNAPSHOT_MINUTES"), ("sim_seed", "ARCHIVE_SIM_SEED")]:
        if env.get(var):
            try:
                opt[field] = int(env[var])
            except ValueError:
                raise ValueError(f"{var}={env[var]!r} is not an integer") from None
    symbols = parse_symbols(env.get("ARCHIVE_SYMBOLS"), [])
    sources = SourcesResource(
        **{t.value: sel[t] for t in ArchiveType}, symbols=symbols, **opt
    )
    sources.settings()  # validate snapshot minutes and times now, at load
    return {"archive": archive, "sources": sources}
