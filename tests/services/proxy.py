"""A latency and fault proxy in front of any HTTP service (nginx, moto, the STAC API), on its own thread.

Every request waits ``latency`` seconds, is counted (method, bytes to the client), and with probability
``fault_rate`` gets one of ``faults`` instead of the upstream's answer:

- ``"500"`` / ``"503"``: that status, never forwarded;
- ``"429"``: Too Many Requests with ``Retry-After: retry_after`` (seconds), never forwarded;
- ``"reset"``: the connection is aborted (TCP RST) before any response;
- ``"stall"``: nothing is sent for ``stall_seconds``, then the connection closes;
- ``"truncate"``: the upstream's headers, then half the body, then the connection closes.

While ``held`` is set, requests wait at the proxy (counted, in flight) until it is cleared: a test holds a client's
requests in flight for as long as it needs, whatever the machine's speed.

Faults are drawn from a seeded generator, so a run is repeatable. Benchmarks and reliability tests read their GET
counts from ``stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.services import switched
from tests.services.nginx import free_port

FAULTS = ("500", "503", "429", "reset", "stall", "truncate")


@dataclass
class Proxy:
    """Settings (change them at any time) and counters of a running proxy."""

    url: str
    upstream: tuple[str, int]
    latency: float = 0.0
    held: bool = False
    """Requests wait, once counted, until this is False again."""
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    stall_seconds: float = 30.0
    retry_after: int = 1
    record: bool = False
    """Keep the head (request line and headers) of every request in ``heads``."""
    heads: list[bytes] = field(default_factory=list)
    dialect: str = "http"
    """How injected errors look: ``"http"`` (a plain-text body) or ``"s3"`` (S3's XML error documents: 500
    InternalError, 503 SlowDown, 429 TooManyRequests), so each client sees the errors its service really sends."""
    seed: int = 0
    stats: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(default_factory=random.Random)
    _open: set[int] = field(default_factory=set)
    _next: int = 0
    _clients: weakref.WeakSet[asyncio.StreamWriter] = field(default_factory=weakref.WeakSet)

    def begin(self) -> int:
        """A request arrived: count it in flight (``stats["max_inflight"]`` keeps the peak); return its token."""
        self._next += 1
        self._open.add(self._next)
        self.stats["max_inflight"] = max(self.stats["max_inflight"], len(self._open))
        return self._next

    def end(self, token: int) -> None:
        """The request ``token`` is answered (idempotent)."""
        self._open.discard(token)

    def reset(self) -> None:
        """Zero the counters and restart the fault sequence."""
        self.stats.clear()
        self._rng.seed(self.seed)

    def settings(self, **changes: Any) -> contextlib.AbstractContextManager[Proxy]:
        """Apply settings inside a block and restore them after."""
        return switched(self, **changes)

    def _draw_fault(self) -> str | None:
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.faults)
        return None


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return None


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


async def _read_body(reader: asyncio.StreamReader, head: bytes, *, response: bool, method: bytes) -> bytes:
    status = head.split(b" ", 2)[1] if response else b""
    if response and (method == b"HEAD" or status in {b"204", b"304"} or status.startswith(b"1")):
        return b""
    length = _header(head, b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        body = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            body += line
            size = int(line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += chunk
            if size == 0:
                return bytes(body)
    return await reader.read() if response else b""


async def _handle(proxy: Proxy, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    opened: list[asyncio.StreamWriter] = []  # every upstream connection this client's requests opened
    try:
        while True:
            head = await _read_head(client_r)
            if head is None:
                return
            method = head.split(b" ", 1)[0]
            body = await _read_body(client_r, head, response=False, method=method)
            proxy.stats["requests"] += 1
            proxy.stats[method.decode()] += 1
            if proxy.record:
                proxy.heads.append(head)
            token = proxy.begin()
            try:
                upstream, keep_going = await _answer(proxy, client_w, upstream, head, body, method, token, opened)
            finally:
                proxy.end(token)
            if not keep_going:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    except asyncio.CancelledError:  # the proxy is shutting down: end quietly (asyncio logs a cancelled handler)
        return
    finally:
        # (also one opened for an answer the client did not wait for: a client gone mid-answer)
        for writer in opened:
            writer.close()
        with contextlib.suppress(Exception):
            client_w.close()


async def _answer(
    proxy: Proxy,
    client_w: asyncio.StreamWriter,
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    head: bytes,
    body: bytes,
    method: bytes,
    token: int,
    opened: list[asyncio.StreamWriter],
) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, bool]:
    """Answer one request; return the upstream connection and whether to keep the client connection open.

    The in-flight slot is released just before the client can see the answer, so a client that sends its next
    request at once is never counted twice.
    """
    while proxy.held:
        await asyncio.sleep(0.01)
    if proxy.latency:
        await asyncio.sleep(proxy.latency)
    fault = proxy._draw_fault()
    if fault:
        proxy.stats[f"fault:{fault}"] += 1
    if fault in {"500", "503", "429"}:
        text, kind = b"injected fault", b"text/plain"
        if proxy.dialect == "s3":
            code = {"500": b"InternalError", "503": b"SlowDown", "429": b"TooManyRequests"}[fault]
            text = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>injected</Message></Error>'
                % code
            )
            kind = b"application/xml"
        proxy.end(token)
        wait = b"Retry-After: %d\r\n" % proxy.retry_after if fault == "429" else b""
        client_w.write(
            b"HTTP/1.1 %s Injected\r\nContent-Length: %d\r\nContent-Type: %s\r\n%s\r\n%s"
            % (fault.encode(), len(text), kind, wait, text)
        )
        await client_w.drain()
        return upstream, True
    if fault == "reset":
        proxy.end(token)
        client_w.transport.abort()
        return upstream, False
    if fault == "stall":
        await asyncio.sleep(proxy.stall_seconds)
        return upstream, False
    reused = upstream is not None
    if upstream is None:
        upstream = await asyncio.open_connection(*proxy.upstream)
        opened.append(upstream[1])
    up_r, up_w = upstream
    up_w.write(head + body)
    await up_w.drain()
    resp_head = await _read_head(up_r)
    if resp_head is None and reused:
        # the upstream closed its idle keep-alive connection: a new one, as any HTTP client would
        up_w.close()
        upstream = await asyncio.open_connection(*proxy.upstream)
        opened.append(upstream[1])
        up_r, up_w = upstream
        up_w.write(head + body)
        await up_w.drain()
        resp_head = await _read_head(up_r)
    if resp_head is None:
        return upstream, False
    resp_body = await _read_body(up_r, resp_head, response=True, method=method)
    if fault == "truncate" and resp_body:
        proxy.stats["bytes"] += len(resp_body) // 2
        proxy.end(token)
        client_w.write(resp_head + resp_body[: len(resp_body) // 2])
        await client_w.drain()
        client_w.transport.abort()
        return upstream, False
    proxy.stats["bytes"] += len(resp_body)  # counted before the client can see the response
    proxy.end(token)
    client_w.write(resp_head + resp_body)
    await client_w.drain()
    return upstream, (_header(resp_head, b"connection") or b"").lower() != b"close"


@contextlib.contextmanager
def run_proxy(upstream_url: str, **settings: object) -> Iterator[Proxy]:
    """Start a proxy for ``upstream_url`` (``http://host:port``) on its own thread and event loop."""
    host, _, port = upstream_url.removeprefix("http://").partition(":")
    listen = free_port()
    proxy = Proxy(url=f"http://127.0.0.1:{listen}", upstream=(host, int(port.rstrip("/"))))
    for k, v in settings.items():
        setattr(proxy, k, v)
    proxy.reset()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server_box: list[asyncio.base_events.Server] = []

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        proxy._clients.add(writer)  # before its handler runs: one cancelled before it started never closes it
        return _handle(proxy, reader, writer)

    async def serve() -> None:
        server = await asyncio.start_server(connected, "127.0.0.1", listen, limit=2**20, backlog=1024)
        server_box.append(server)
        started.set()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        loop.run_forever()

    thread = threading.Thread(target=main, name="fault-proxy", daemon=True)
    thread.start()
    if not started.wait(10):
        msg = "the fault proxy did not start"
        raise RuntimeError(msg)
    try:
        yield proxy
    finally:

        async def shutdown() -> None:
            def others() -> list[asyncio.Task[Any]]:
                return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

            def handling(task: asyncio.Task[Any]) -> bool:
                return getattr(task.get_coro(), "__name__", None) == "_handle"

            # accept no more connections, and close the server once every one it accepted has its transport (one
            # made after the close is left open: asyncio asserts the server is open as it makes it)
            server = server_box[0]
            for sock in server.sockets:
                loop.remove_reader(sock.fileno())
            while any(not handling(t) for t in others()):
                await asyncio.sleep(0)
            server.close()
            # every client connection is closed (a pending read ends), every handler cancelled (a held, stalled or
            # latent one), until none is left
            while tasks := others():
                for writer in list(proxy._clients):
                    writer.transport.abort()
                for task in tasks:
                    if handling(task):
                        task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for writer in list(proxy._clients):
                writer.transport.abort()
            await server.wait_closed()  # every connection it accepted is closed

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(60)  # a generous bound on a hang
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
