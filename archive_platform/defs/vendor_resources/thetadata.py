from typing import ClassVar

from archive_platform.defs.vendor_resources.base import VendorResource
from archive_platform.settings import THETADATA_API, Settings


class ThetaDataResource(VendorResource):
    """ThetaData's local terminal (historical option chains and bars; no key).

    ``api``: ``v3`` (Theta Terminal v3, the default) or ``v2`` (``THETADATA_API``);
    ``base_url`` unset: the terminal's default for that API (v3 port 25503, v2 port 25510).
    """

    vendor: ClassVar[str] = "thetadata"
    base_url: str | None = None
    api: str = "v3"

    @classmethod
    def from_settings(cls, settings: Settings) -> "ThetaDataResource":
        resource = super().from_settings(settings)
        return cls(base_url=resource.base_url, api=settings.vendor.get(THETADATA_API, resource.api))

    def client(self):
        return self.source_class()(self.base_url, api=self.api)
