"""A switchable object host: a threaded stdlib HTTP server on loopback serving a directory the way real hosts
misbehave, one switch per behaviour seen in the wild.

- ``etag``: ``"strong"`` (nginx's ``"mtime-size"``), ``"weak"`` (``W/"..."``, nginx with gzip, many CDNs),
  ``"per-response"`` (a new tag on every response: some CDNs and dynamic proxies) or ``"none"``;
- ``last_modified``: send Last-Modified;
- ``replicas``: how many copies answer in turn, each with the file's content-hash ETag (as S3's MD5 ETags are) but
  a modification time of its own, a second apart (CDN edges, multi-site object stores, servers fed by copies);
- ``conditionals``: honour If-Match (strong comparison, RFC 9110) and If-Unmodified-Since with 412; off, both are
  ignored, as hosts that rewrite responses do;
- ``gzip``: compress range responses whatever Accept-Encoding said;
- ``head``: answer HEAD; off, 403, as an S3 URL presigned for GET only does;
- ``ranges``: honour Range; off, the whole file with 200;
- ``token``: requests must carry ``Authorization: Bearer <token>`` (else 401), as Earthdata's front door wants;
- ``redirect``: a base URL (another host): every request is answered 302 to the same path and query there, as
  NASA Earthdata and other token-checking front doors send readers on to a presigned URL;
- ``hold``: a path suffix (``".tif"``): requests for such paths wait until ``release`` is set, after setting
  ``held``, so a test acts while a client is in the middle of reading (a host that stalls).

Every request is recorded (method, path, status, request headers), so tests assert what a client sent.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import hashlib
import itertools
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.services import serving, switched


@dataclass
class Seen:
    method: str
    path: str
    status: int
    headers: dict[str, str]


@dataclass
class Host:
    """Switches (change them at any time) and the requests seen."""

    url: str
    root: Path
    etag: str = "strong"
    last_modified: bool = True
    conditionals: bool = True
    replicas: int = 1
    gzip: bool = False
    head: bool = True
    ranges: bool = True
    redirect: str | None = None
    token: str | None = None
    hold: str | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    seen: list[Seen] = field(default_factory=list)

    def settings(self, **changes: Any) -> contextlib.AbstractContextManager[Host]:
        """Apply settings inside a block and restore them after."""
        return switched(self, **changes)


def _tag(path: Path) -> str:
    stat = path.stat()
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


class _Handler(BaseHTTPRequestHandler):
    host: Host
    turns: Iterator[int]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _send(self, status: int, headers: dict[str, str], payload: bytes, *, body: bool) -> None:
        self.host.seen.append(Seen(self.command, self.path, status, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _answer(self, *, body: bool) -> None:
        host = self.host
        if host.hold and self.path.split("?", 1)[0].endswith(host.hold):
            host.held.set()
            host.release.wait()
        if host.token and self.headers.get("Authorization") != f"Bearer {host.token}":
            self._send(401, {"WWW-Authenticate": "Bearer"}, b"", body=body)
            return
        if host.redirect:
            self._send(302, {"Location": host.redirect + self.path}, b"", body=body)
            return
        path = host.root / self.path.split("?", 1)[0].lstrip("/")
        if not path.is_file():
            self._send(404, {}, b"not found", body=body)
            return
        if self.command == "HEAD" and not host.head:
            self._send(403, {}, b"", body=False)
            return
        data = path.read_bytes()
        strong = _tag(path)
        headers: dict[str, str] = {"Accept-Ranges": "bytes" if host.ranges else "none"}
        modified = int(path.stat().st_mtime)
        if host.replicas > 1:  # the next copy answers: the content's tag, the copy's own time
            strong = f'"{hashlib.md5(data).hexdigest()}"'
            modified += next(self.turns) % host.replicas
        etag = {
            "strong": strong,
            "weak": f"W/{strong}",
            "per-response": f'"{uuid.uuid4().hex}"',
            "none": None,
        }[host.etag]
        if etag:
            headers["ETag"] = etag
        if host.last_modified:
            headers["Last-Modified"] = email.utils.formatdate(modified, usegmt=True)
        if host.conditionals and not self._preconditions_hold(etag, modified):
            self._send(412, {}, b"", body=body)
            return
        status, payload = 200, data
        wanted = self.headers.get("Range")
        if wanted and host.ranges:
            start_text, _, stop_text = wanted.removeprefix("bytes=").partition("-")
            start = int(start_text)
            stop = min(int(stop_text), len(data) - 1) if stop_text else len(data) - 1
            if start >= len(data):
                self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"", body=body)
                return
            status, payload = 206, data[start : stop + 1]
            headers["Content-Range"] = f"bytes {start}-{stop}/{len(data)}"
        if host.gzip and status == 206:
            payload = gzip.compress(payload)
            headers["Content-Encoding"] = "gzip"
        self._send(status, headers, payload, body=body)

    def _preconditions_hold(self, etag: str | None, modified: int) -> bool:
        if_match = self.headers.get("If-Match")
        if if_match is not None:
            if if_match.strip() == "*":
                return etag is not None
            wanted = [t.strip() for t in if_match.split(",")]
            # strong comparison: a weak tag matches nothing
            return etag is not None and not etag.startswith("W/") and etag in wanted
        since = self.headers.get("If-Unmodified-Since")
        if since is not None:
            parsed = email.utils.parsedate_to_datetime(since)
            return modified <= parsed.timestamp()
        return True


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a held request's reader killed, say) is no error of the host's."""
        if not isinstance(sys.exception(), ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def run_host(root: Path, **switches: Any) -> Iterator[Host]:
    """Serve ``root`` on a free loopback port until the block ends."""
    handler = type("Handler", (_Handler,), {"turns": itertools.count()})
    server = _Server(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    with serving(server, "test-host") as url:
        host = Host(url=url, root=root)
        for k, v in switches.items():
            setattr(host, k, v)
        handler.host = host
        try:
            yield host
        finally:
            host.release.set()  # no request stays held past the block
