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

    @contextlib.contextmanager
    def checked_credentials(self, user: str) -> Iterator[dict]:
        """moto checks credentials inside the block (it accepts any by default): yields the
        access key (``AccessKeyId``, ``SecretAccessKey``) of an IAM ``user`` allowed everything,
        so any other key is refused. Checks are off again afterwards."""
        import json

        import boto3
        import httpx

        iam = boto3.client("iam", endpoint_url=self.endpoint_url, region_name=self.region,
                           aws_access_key_id="x", aws_secret_access_key="y")
        iam.create_user(UserName=user)
        arn = iam.create_policy(PolicyName=f"{user}-all", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
        iam.attach_user_policy(UserName=user, PolicyArn=arn)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        httpx.post(f"{self.endpoint_url}/moto-api/reset-auth", content=b"0").raise_for_status()
        try:
            yield key
        finally:
            httpx.post(f"{self.endpoint_url}/moto-api/reset-auth", content=b"inf")

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
        # moto's backends are global to the process: without a reset, a server started after
        # another one (an earlier test module) would already hold that one's buckets
        import httpx

        httpx.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=30).raise_for_status()
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


class S3Proxy:
    """A TCP proxy on loopback in front of an S3 server, to make the endpoint fail on purpose:
    ``down()`` drops every open connection and refuses new ones (the endpoint is gone),
    ``cut_uploads()`` lets requests through but breaks each PUT in the middle of its body (the
    endpoint dies mid-upload), ``up()`` restores it. Point ``ARCHIVE_S3_ENDPOINT`` at ``url``."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.mode = "up"
        self.cut = 0  # PUT requests broken so far
        self._lock = threading.Lock()
        self._conns: set = set()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        self.mode = "up"

    def down(self) -> None:
        self.mode = "down"
        self._close_all()

    def cut_uploads(self) -> None:
        self.mode = "cut"

    def close(self) -> None:
        self.mode = "closed"
        self._listener.close()
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.close()

    def _accept(self) -> None:
        import socket
        import threading

        while self.mode != "closed":
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "down":  # refused: closed before a byte is read
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, server))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src, dst, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.mode == "down":
                    break
                if upstream and self.mode == "cut" and data.startswith(b"PUT "):
                    dst.sendall(data[: max(1, len(data) // 2)])  # half a request, then gone
                    self.cut += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()
