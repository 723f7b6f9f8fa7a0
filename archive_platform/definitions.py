"""The code location Dagster loads (``dagster dev``, ``workspace.yaml``, ``dagster definitions validate``).

Built lazily by Dagster's loader, not at import: importing this module reads no environment and
touches no file.
"""

import dagster as dg

from archive_platform.defs import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
