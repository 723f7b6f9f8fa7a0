"""The vendors a dataset can be switched to: where each client class lives, the environment
variable of its key, and its non-secret settings. Each variable name is written here once;
the settings (validation) and the Dagster vendor resources (``dg.EnvVar``) read it from here.
Pure: no Dagster, and no vendor module is imported until a source is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from archive_platform.sources.base import MarketSource


@dataclass(frozen=True)
class VendorInfo:
    name: str  # the source name in ARCHIVE_SOURCE_* and in the ``source`` column
    module: str
    cls: str
    key_env: str | None = None  # environment variable of the secret key, if any
    key_required: bool = False  # False: the client also works key-less (Barchart CSV drops)
    #: resource field -> (environment variable, kind: "str" | "path" | "port" | "int")
    settings: Mapping[str, tuple[str, str]] = field(default_factory=dict)


VENDORS: dict[str, VendorInfo] = {v.name: v for v in (
    VendorInfo("sim", "archive_platform.sim", "SimulatedMarket"),
    VendorInfo("unusual_whales", "archive_platform.vendors.uw", "UnusualWhalesSource",
               key_env="UW_API_KEY", key_required=True,
               settings={"base_url": ("UW_BASE_URL", "str")}),
    VendorInfo("polygon", "archive_platform.vendors.polygon", "PolygonSource",
               key_env="POLYGON_API_KEY", key_required=True,
               settings={"base_url": ("POLYGON_BASE_URL", "str")}),
    VendorInfo("thetadata", "archive_platform.vendors.thetadata", "ThetaDataSource",
               settings={"base_url": ("THETADATA_BASE_URL", "str")}),
    VendorInfo("barchart", "archive_platform.vendors.barchart", "BarchartSource",
               key_env="BARCHART_API_KEY",
               settings={"base_url": ("BARCHART_BASE_URL", "str"),
                         "csv_dir": ("BARCHART_CSV_DIR", "path")}),
    VendorInfo("ib", "archive_platform.vendors.ib", "IBSource",
               settings={"host": ("IB_HOST", "str"), "port": ("IB_PORT", "port"),
                         "client_id": ("IB_CLIENT_ID", "int")}),
)}


def source_class(name: str) -> type[MarketSource]:
    """The ``MarketSource`` subclass behind a source name (``sim``, ``polygon``, ...)."""
    info = VENDORS[name]
    return getattr(importlib.import_module(info.module), info.cls)


def setting_vars() -> dict[str, str]:
    """Every vendor setting's environment variable -> its kind."""
    return {var: kind for v in VENDORS.values() for var, kind in v.settings.values()}
