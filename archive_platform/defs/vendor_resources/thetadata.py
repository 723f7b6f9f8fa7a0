from typing import ClassVar

from archive_platform.defs.vendor_resources.base import VendorResource


class ThetaDataResource(VendorResource):
    """ThetaData's local terminal (historical option chains and bars; no key)."""

    vendor: ClassVar[str] = "thetadata"
    base_url: str = "http://127.0.0.1:25510"

    def client(self):
        return self.source_class()(self.base_url)
