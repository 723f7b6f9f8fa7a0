from typing import ClassVar

from archive_platform.defs.vendor_resources.base import VendorResource


class IBResource(VendorResource):
    """Interactive Brokers TWS / IB Gateway (no key: the gateway holds the login)."""

    vendor: ClassVar[str] = "ib"
    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 1

    def client(self):
        return self.source_class()(self.host, self.port, self.client_id)
