from typing import ClassVar

from archive_platform.defs.vendor_resources.base import VendorResource


class UnusualWhalesResource(VendorResource):
    """Unusual Whales REST API (flow alerts, IV rank)."""

    vendor: ClassVar[str] = "unusual_whales"
    api_key: str | None = None
    base_url: str = "https://api.unusualwhales.com"

    def client(self):
        return self.source_class()(self.required_key(self.api_key), self.base_url)
