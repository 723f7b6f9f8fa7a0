"""Errors raised by vendor clients: always name the vendor, the (redacted) endpoint, the status."""

from __future__ import annotations

from archive_platform.sources.base import SourceError


class VendorError(SourceError):
    """A vendor request failed (after retries where retrying made sense).

    ``endpoint`` is the redacted URL (secret query params replaced); ``status`` is the HTTP
    status, or None for timeouts, connection errors and refusals by the circuit breaker.
    ``refused`` is True when the vendor answered and refused this request (a 4xx that is not
    retried): that says nothing about the vendor's health, so circuit breakers ignore it.
    """

    def __init__(
        self,
        message: str,
        *,
        vendor: str,
        endpoint: str = "",
        status: int | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.vendor = vendor
        self.endpoint = endpoint
        self.status = status
        self.refused = refused


class CircuitOpenError(VendorError):
    """The vendor's circuit breaker is open: the call was refused without a request."""


class PayloadError(VendorError):
    """The vendor answered 200 but the payload does not have the documented shape."""
