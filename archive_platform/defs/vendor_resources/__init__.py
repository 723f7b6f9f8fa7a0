"""One Dagster resource per vendor, registered here; ``ARCHIVE_SOURCE_*`` picks among them.

Each resource declares its settings (fields) and builds its client; its key variable's name
comes from ``archive_platform.sources.registry`` (written once) and reaches it as ``dg.EnvVar``.
Only the vendors the configuration uses are added to the definitions, under ``vendor_<name>``.
"""

from __future__ import annotations

from archive_platform.defs.vendor_resources.barchart import BarchartResource
from archive_platform.defs.vendor_resources.base import VendorResource
from archive_platform.defs.vendor_resources.ib import IBResource
from archive_platform.defs.vendor_resources.polygon import PolygonResource
from archive_platform.defs.vendor_resources.thetadata import ThetaDataResource
from archive_platform.defs.vendor_resources.uw import UnusualWhalesResource
from archive_platform.settings import Settings

RESOURCES: dict[str, type[VendorResource]] = {
    r.vendor: r for r in (UnusualWhalesResource, PolygonResource, ThetaDataResource,
                          BarchartResource, IBResource)
}


def resource_key(vendor: str) -> str:
    return f"vendor_{vendor}"


def vendor_resources(settings: Settings) -> dict[str, VendorResource]:
    """The resources of the vendors the settings select, keyed ``vendor_<name>``."""
    return {resource_key(v): RESOURCES[v].from_settings(settings)
            for v in sorted(settings.sources.vendors())}


__all__ = ["RESOURCES", "VendorResource", "resource_key", "vendor_resources"]
