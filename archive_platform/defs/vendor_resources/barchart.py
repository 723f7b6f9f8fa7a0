from pathlib import Path
from typing import ClassVar

from archive_platform.defs.vendor_resources.base import VendorResource
from archive_platform.settings import Settings
from archive_platform.sources.registry import VENDORS

#: the variable naming the folder of downloaded IV-rank CSV files (written once, in the registry)
CSV_DIR_VAR = VENDORS["barchart"].settings["csv_dir"][0]


def check_csv_dir(value: str, *, exists: bool) -> Path:
    """``BARCHART_CSV_DIR`` as a folder: an absolute path (a run worker's working directory is
    not the code server's, so a relative one would name different folders), and with
    ``exists`` an existing folder. ``ValueError`` naming the variable and the path otherwise."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{CSV_DIR_VAR}={value!r} is a relative path; give the absolute path of the "
                         "folder of downloaded IV-rank CSV files (runs may start in another directory)")
    if exists and not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise ValueError(f"{CSV_DIR_VAR}={value!r}: {path} {what}; it must be the folder the "
                         "website's 'IV Rank and IV Percentile' CSV downloads are saved in")
    return path


class BarchartResource(VendorResource):
    """Barchart OnDemand (IV rank), or a folder of downloaded CSV files without a key.

    The key (``BARCHART_API_KEY``) is wired as ``dg.EnvVar`` when it is set where the
    definitions load, or when no ``BARCHART_CSV_DIR`` is configured (then it is the only
    input). With both, OnDemand is used and the folder is not read.
    """

    vendor: ClassVar[str] = "barchart"
    api_key: str | None = None
    base_url: str = "https://ondemand.websol.barchart.com"
    csv_dir: str | None = None

    @classmethod
    def key_needed(cls, settings: Settings) -> bool:
        return not settings.vendor.get(CSV_DIR_VAR)

    @classmethod
    def from_settings(cls, settings: Settings) -> "BarchartResource":
        if settings.vendor.get(CSV_DIR_VAR):  # a relative path is refused when the definitions load
            check_csv_dir(settings.vendor[CSV_DIR_VAR], exists=False)
        return super().from_settings(settings)

    def client(self):
        csv = None
        if self.csv_dir:
            # the folder must exist where the run reads it (only when it is the input used)
            csv = check_csv_dir(self.csv_dir, exists=not self.api_key)
        return self.source_class()(self.api_key, self.base_url, csv)
