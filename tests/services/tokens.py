"""A Planetary-Computer-style SAS token endpoint on loopback (stdlib): ``GET /ACCOUNT/CONTAINER`` answers
``{"msft:expiry": ..., "token": ...}`` as https://planetarycomputer.microsoft.com/api/sas/v1/token does, with
tokens Azurite checks for real. Every token handed out is kept in ``issued``, so tests can look for them."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.services import serving


@dataclass
class TokenEndpoint:
    url: str
    issued: list[str] = field(default_factory=list)


@contextlib.contextmanager
def run_token_endpoint(azurite: Any, *, lifetime: float = 3600.0) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            account, _, container = self.path.strip("/").partition("/")
            if account != azurite.account or not container:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            token = azurite.sas(container, expires_in=lifetime)
            endpoint.issued.append(token)
            expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lifetime)
            body = json.dumps({"msft:expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), "token": token}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "token-endpoint") as url:
        endpoint.url = url
        yield endpoint
