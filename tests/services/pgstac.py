"""A real STAC API: stac-fastapi-pgstac under uvicorn on PostgreSQL 15 + PostGIS + pgstac, on loopback.

PostgreSQL is initdb'd into a temporary directory and started with pg_ctl (no system service). initdb refuses to
run as root, so as root the server runs as the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.services import STARTUP, stop
from tests.services.nginx import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PACKAGES = "postgresql-15 postgresql-15-postgis-3"


def missing() -> str | None:
    """Why the service cannot start here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 is not installed (Debian packages: {PACKAGES})"
    if not Path("/usr/share/postgresql/15/extension/postgis.control").exists():
        return "PostGIS is not installed (Debian package: postgresql-15-postgis-3)"
    try:
        import pypgstac  # noqa: F401
        import stac_fastapi.pgstac  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (`make test` installs it, from uv.lock)"
    return None


@dataclass
class StacApi:
    """A running STAC API and the database behind it."""

    url: str
    dsn: str

    def load(self, collections: Iterable[dict[str, Any]] = (), items: Iterable[dict[str, Any]] = ()) -> None:
        """Upsert collections and items through pypgstac's loader."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            loader = Loader(db=db)
            collections = list(collections)
            if collections:
                loader.load_collections(iter(collections), insert_mode=Methods.upsert)
            items = list(items)
            if items:
                loader.load_items(iter(items), insert_mode=Methods.upsert)


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def run_postgres(base: Path) -> Iterator[str]:
    data, sock, log = base / "data", base / "sock", base / "postgres.log"
    sock.mkdir()
    if os.geteuid() == 0:
        base.chmod(0o755)
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"]
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    port = free_port()
    options = (
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    wait = str(int(STARTUP))  # pg_ctl waits for the server to accept connections, at most this long
    try:
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", wait, "start"]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        msg = f"PostgreSQL did not start: {exc.stderr}{log.read_text() if log.exists() else ''}"
        raise RuntimeError(msg) from None
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )


@contextlib.contextmanager
def run_stac_api(workdir: Path) -> Iterator[StacApi]:
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    base = Path(tempfile.mkdtemp(prefix="stackcube-pg-"))
    try:
        with run_postgres(base) as dsn:
            subprocess.run(
                [sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", dsn],
                check=True,
                capture_output=True,
                text=True,
            )
            port = free_port()
            env = {
                **os.environ,
                "PGUSER": "postgres",
                "PGPASSWORD": "unused",
                "PGHOST": "127.0.0.1",
                "PGPORT": dsn.rsplit(":", 1)[1].split("/")[0],
                "PGDATABASE": "postgres",
                "DB_MIN_CONN_SIZE": "1",
                "DB_MAX_CONN_SIZE": "10",
            }
            log = (workdir / "uvicorn.log").open("wb")
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "stac_fastapi.pgstac.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                env=env,
                stdout=log,
                stderr=log,
                cwd=workdir,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + STARTUP
                while True:
                    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_mgmt/ping"):
                        break
                    if proc.poll() is not None or time.monotonic() > deadline:
                        msg = f"stac-fastapi-pgstac did not start: {(workdir / 'uvicorn.log').read_text()[-3000:]}"
                        raise RuntimeError(msg)
                    time.sleep(0.2)
                yield StacApi(url=url, dsn=dsn)
            finally:
                stop(proc)
                log.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
