"""Loopback fakes of vendor HTTP APIs for tests (no internet).

``server.FakeVendorServer`` is the generic harness; ``uw``, ``polygon`` and ``barchart`` build
routes that answer in each vendor's documented response format (see /work/shared/(vendor's API documentation)
from small explicit fixtures given by the test.
"""

from archive_platform_tests.fakes.server import FakeRequest, FakeVendorServer

__all__ = ["FakeRequest", "FakeVendorServer"]
