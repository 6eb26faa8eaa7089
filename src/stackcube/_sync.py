"""A sync API over an async core: one event loop on one daemon thread, shared by every sync call.

zarr-python and icechunk do the same; running our own loop (rather than ``asyncio.run`` per call) keeps
obstore's connection pools warm across calls and works inside Jupyter, where a loop is already running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="stackcube-io", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def run[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on stackcube's I/O loop and return its result (re-raising its exception)."""
    loop = _get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        msg = "a sync stackcube function was called from stackcube's own event loop; use the *_async twin"
        raise RuntimeError(msg)
    future = None
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result()
    except BaseException:
        # interrupted (Ctrl-C, a notebook's "interrupt kernel"): stop the work instead of leaving it to go on, and
        # perhaps commit, behind the caller's back (a no-op when the coroutine itself raised)
        if future is not None:
            future.cancel()
        raise
