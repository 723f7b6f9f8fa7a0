"""An S3-compatible server on loopback for tests: moto in server mode (``moto[server]``, pinned
in the dev group), on a free port, in this process's threads; no AWS account, no internet."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from archive_platform_tests.pg_helpers import free_port

REGION = "us-east-1"
# moto accepts any credentials; these are test placeholders, not secrets
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def env(self) -> dict[str, str]:
        """The standard AWS variables a client of this server reads."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_REGION": self.region,
                "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """A fresh moto S3 server on 127.0.0.1 (empty state), stopped afterwards."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
