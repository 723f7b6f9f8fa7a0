"""Vendor clients (Unusual Whales, Polygon, Barchart, ThetaData, IB) behind ``MarketSource``.

Every HTTP client owns its policy through ``vendors.http.VendorHttpClient`` (timeouts, retries
with backoff honouring Retry-After, a per-vendor circuit breaker and rate limiter, redaction of
keys). Importing this package does no I/O; sources are built by the resources at run time.
"""
