"""Real services for tests, started on free loopback ports and stopped with the session."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

STARTUP = 180.0
"""Seconds a service may take to start on a loaded machine. Only bounds a hang: each start waits for its event (a
port open, an answer), never for this long."""


def stop(proc: subprocess.Popen) -> None:
    """Terminate a service process, killing it if it does not exit within 5 seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def switched[T](service: T, **changes: Any) -> Iterator[T]:
    """Set attributes of a running service's settings inside a block and restore them after."""
    old = {k: getattr(service, k) for k in changes}
    for k, v in changes.items():
        setattr(service, k, v)
    try:
        yield service
    finally:
        for k, v in old.items():
            setattr(service, k, v)


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float, why: Callable[[], str]) -> None:
    """Wait until ``proc`` accepts connections on loopback ``port``; RuntimeError with ``why()`` if it exits or
    the time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(why())
        time.sleep(0.05)


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer, name: str) -> Iterator[str]:
    """Run a stdlib HTTP server on its own thread for the block; yield its URL."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
