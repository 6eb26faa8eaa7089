"""A sync API over an async core: one event loop on one daemon thread, shared by every sync call.

zarr-python and icechunk do the same; running our own loop (rather than ``asyncio.run`` per call) keeps
obstore's connection pools warm across calls and works inside Jupyter, where a loop is already running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
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
    ended = threading.Event()

    async def watched() -> T:
        try:
            return await coro
        finally:
            ended.set()

    future = None
    try:
        future = asyncio.run_coroutine_threadsafe(watched(), loop)
        return future.result()
    except BaseException:
        # interrupted (Ctrl-C, a notebook's "interrupt kernel"): stop the work at its next await instead of
        # leaving it to go on behind the caller's back, and wait until it has stopped, so that what it left (a
        # commit, or none) is settled when the caller looks; work that cannot stop half way (a commit, see
        # finish_in_thread) ends first. A second interrupt stops the wait. (A no-op when the coroutine raised.)
        if future is not None and future.cancel():
            ended.wait()
        raise


async def finish_in_thread[T](function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a thread, as ``asyncio.to_thread``, for work that must not be left half
    done by a cancellation (a write and its commit): a cancelled caller waits for it to end, then is cancelled."""
    task = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
