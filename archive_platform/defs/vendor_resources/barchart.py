from pathlib import Path
from typing import ClassVar

from archive_platform.defs.vendor_resources.base import VendorResource


class BarchartResource(VendorResource):
    """Barchart OnDemand (IV rank), or a folder of downloaded CSV files without a key."""

    vendor: ClassVar[str] = "barchart"
    api_key: str | None = None
    base_url: str = "https://ondemand.websol.barchart.com"
    csv_dir: str | None = None

    def client(self):
        csv = Path(self.csv_dir) if self.csv_dir else None
        return self.source_class()(self.api_key, self.base_url, csv)
