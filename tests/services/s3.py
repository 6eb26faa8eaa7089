"""moto's S3 server on a free loopback port: a real S3 protocol endpoint (ranges, ETags, If-Match, atomic
conditional writes)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.services import STARTUP, stop
from tests.services.nginx import free_port


@dataclass
class S3Server:
    endpoint: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"
    sources_bucket: str = "sources"
    repos_bucket: str = "repos"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


@contextlib.contextmanager
def run_moto(workdir: Path) -> Iterator[S3Server]:
    server = Path(sys.executable).with_name("moto_server")
    if not server.exists():
        msg = "moto[server] is not installed (pip install 'moto[server]'; `make test` installs it)"
        raise RuntimeError(msg)
    port = free_port()
    log = (workdir / "moto.log").open("wb")
    proc = subprocess.Popen(
        # moto_server, with writes made one at a time: a conditional write is atomic, as S3's is (moto_atomic.py)
        [sys.executable, str(Path(__file__).with_name("moto_atomic.py")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(endpoint + "/moto-api/"):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                msg = f"moto_server did not start: {(workdir / 'moto.log').read_text()[-2000:]}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        yield S3Server(endpoint=endpoint)
    finally:
        stop(proc)
        log.close()
