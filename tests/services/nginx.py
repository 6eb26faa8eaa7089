"""nginx on a free loopback port serving a directory (and the corpus), with an access log we can count from.

nginx gives real Range, ETag and If-Match behaviour; its access log is the request counter.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.services import STARTUP, stop, wait_for_port

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
LOG_FORMAT = "$request_method $uri $status $body_bytes_sent [$http_range] [$http_if_match]"
MARK = "/__mark__/"
"""Requests under this path are answered 204 and marked in the log, not counted (:meth:`Nginx.counting`)."""


def find_nginx() -> str | None:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Request:
    method: str
    path: str
    status: int
    bytes_sent: int
    range: str
    if_match: str


@dataclass
class Nginx:
    """A running nginx: ``url`` serves ``root``; ``/corpus/`` serves the shared corpus read-only."""

    url: str
    root: Path
    log: Path

    def requests(self) -> list[Request]:
        """The requests nginx logged (but its :data:`MARK` requests), in the order it answered them."""
        return [r for r in self._logged() if not r.path.startswith(MARK)]

    def _logged(self) -> list[Request]:
        out = []
        for line in self.log.read_text().split("\n")[:-1]:  # whole lines: nginx may be writing the last one
            head, rng, match = line.rsplit(" [", 2)
            method, path, status, sent = head.split(" ")
            match = match.rstrip("]").replace("\\x22", '"')  # nginx escapes quotes in its log
            out.append(Request(method, path, int(status), int(sent), rng.rstrip("]"), match))
        return out

    def reset(self) -> None:
        self.log.write_text("")

    @contextlib.contextmanager
    def counting(self) -> Iterator[list[Request]]:
        """Collect the requests made inside the block (the list fills when the block ends)."""
        start = self._mark()  # lines of requests made before the block come before this one
        seen: list[Request] = []
        try:
            yield seen
        finally:
            end = self._mark()  # and the block's before this one
            seen.extend(r for r in self._logged()[start + 1 : end] if not r.path.startswith(MARK))

    def _mark(self) -> int:
        """Where in the log a request to :data:`MARK` made now is: nginx (one worker) logs a request as it finishes
        answering it, so every request answered before this one was asked is logged above it. Waits for its line
        (a generous deadline only bounds a hang)."""
        path = f"{MARK}{uuid.uuid4().hex}"
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            connection.request("GET", path)
            assert connection.getresponse().status == 204
        finally:
            connection.close()
        deadline = time.monotonic() + 60
        while True:
            found = [n for n, r in enumerate(self._logged()) if r.path == path]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"nginx did not log {path}"
            time.sleep(0.01)


@contextlib.contextmanager
def _serving(workdir: Path, port: int, http: str) -> Iterator[None]:
    """nginx on loopback ``port``, run from ``workdir``, with ``http`` as its http block (its server among it),
    until the block exits; a failed start raises with nginx's own error."""
    binary = find_nginx()
    if binary is None:
        msg = "nginx is not installed (Debian package nginx-light; `make test` installs it when run as root)"
        raise RuntimeError(msg)
    temp = " ".join(f"{kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi"))
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    {temp} scgi_temp_path {workdir}/scgi;
    {http}
}}
""")
    (workdir / "error.log").write_text("")  # read if nginx fails to start, before it could make it
    stderr = workdir / "stderr.log"
    with stderr.open("wb") as err_file:
        proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(workdir)], stderr=err_file)
    try:
        wait_for_port(
            port,
            proc,
            STARTUP,
            lambda: f"nginx did not start on port {port}: {stderr.read_text() or (workdir / 'error.log').read_text()}",
        )
        yield
    finally:
        stop(proc)


@contextlib.contextmanager
def run_nginx(workdir: Path, corpus: Path | None) -> Iterator[Nginx]:
    root = workdir / "www"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "access.log"
    log.write_text("")
    corpus_location = f"location /corpus/ {{ alias {corpus}/; }}" if corpus else ""
    http = f"""
    log_format counting '{LOG_FORMAT}';
    access_log {log} counting;
    default_type application/octet-stream;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location ^~ {MARK} {{ return 204; }}
        {corpus_location}
    }}"""
    with _serving(workdir, port, http):
        yield Nginx(url=f"http://127.0.0.1:{port}", root=root, log=log)


@contextlib.contextmanager
def run_gate(upstream: str, workdir: Path, *, http: str = "", location: str = "") -> Iterator[str]:
    """A real nginx in front of ``upstream`` that checks what a front door checks (``location``: directives before
    the request is passed on, such as ``auth_basic`` or a key test; ``http``: what they need at the http level,
    such as a ``map``), as API gateways do in front of STAC APIs; yields its URL."""
    port = free_port()
    block = f"""
    {http}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            {location}
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
        }}
    }}"""
    with _serving(workdir, port, block):
        yield f"http://127.0.0.1:{port}"
