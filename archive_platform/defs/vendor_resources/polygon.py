from typing import ClassVar

from archive_platform.defs.vendor_resources.base import VendorResource


class PolygonResource(VendorResource):
    """Polygon REST API (minute bars, live option-chain snapshots)."""

    vendor: ClassVar[str] = "polygon"
    api_key: str | None = None
    base_url: str = "https://api.polygon.io"

    def client(self):
        return self.source_class()(self.required_key(self.api_key), self.base_url)
