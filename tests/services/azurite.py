"""Azurite, Microsoft's Azure Storage emulator (npm package ``azurite``), on a free loopback port: private
containers refuse anonymous reads, and SAS tokens are checked for real, expiry included.

The account and its key are made up for each session (``AZURITE_ACCOUNTS``), so no key lives in the repository.
``make test`` installs Azurite into ``.azurite/`` with npm.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.services import STARTUP, stop, wait_for_port
from tests.services.nginx import free_port

ROOT = Path(__file__).resolve().parents[2]


def find_azurite() -> str | None:
    local = ROOT / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


@dataclass
class Azurite:
    """A running emulator: blobs at ``url/ACCOUNT/CONTAINER/BLOB``."""

    url: str
    account: str
    key: str

    def env(self) -> dict[str, str]:
        """object_store's emulator convention: path-style URLs on this endpoint are Azure Blob URLs."""
        return {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": self.url}

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            account_url=f"{self.url}/{self.account}",
            credential={"account_name": self.account, "account_key": self.key},
        )

    def upload_dir(self, local_dir: Path, container: str) -> None:
        """Upload every file of ``local_dir`` into a new private container."""
        client = self.service().create_container(container)
        for path in sorted(p for p in local_dir.iterdir() if p.is_file()):
            client.upload_blob(path.name, path.read_bytes())

    def sas(self, container: str, *, expires_in: float = 3600.0) -> str:
        """A read-only SAS token for ``container`` (what Planetary Computer's token endpoint hands out)."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        return generate_container_sas(
            self.account,
            container,
            account_key=self.key,
            permission=ContainerSasPermissions(read=True, list=True),
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in),
            start=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
        )

    def href(self, container: str, blob: str, sas: str | None = None) -> str:
        return f"{self.url}/{self.account}/{container}/{blob}" + (f"?{sas}" if sas else "")


@contextlib.contextmanager
def run_azurite(workdir: Path) -> Iterator[Azurite]:
    binary = find_azurite()
    if binary is None:
        msg = "azurite is not installed (make test installs it: npm install --prefix .azurite azurite@3)"
        raise RuntimeError(msg)
    port = free_port()
    account = "stackcube" + secrets.token_hex(4)
    key = base64.b64encode(secrets.token_bytes(64)).decode()
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{account}:{key}"}
    proc = subprocess.Popen(
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(workdir),
            "--skipApiVersionCheck",
            "--silent",
            "--loose",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, STARTUP, lambda: f"azurite did not start (exit code {proc.poll()})")
        yield Azurite(url=f"http://127.0.0.1:{port}", account=account, key=key)
    finally:
        stop(proc)
