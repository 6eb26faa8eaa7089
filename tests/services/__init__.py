"""Real services for tests, started on free loopback ports and stopped with the session."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any


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
