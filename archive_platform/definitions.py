"""The code location Dagster loads (``dagster dev``, ``workspace.yaml``, ``dagster definitions validate``).

Built lazily by Dagster's loader, not at import: importing this module reads no environment and
touches no file.
"""

import warnings

import dagster as dg

from archive_platform.defs import build_definitions

# Backfill policies, pools and partitioned checks are flagged beta/preview by Dagster 1.13 on
# every load; the warnings are about Dagster's API stability, not the user's data, and would
# print a dozen tracebacks in each code server's and run worker's log.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
