"""A sync API over an async core: one event loop on one daemon thread, shared by every sync call.

zarr-python and icechunk do the same; running our own loop (rather than ``asyncio.run`` per call) keeps
obstore's connection pools warm across calls and works inside Jupyter, where a loop is already running.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from stackcube.errors import StackcubeError

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


_obstore_started = False
"""This process made an obstore store (and so may have started obstore's runtime): see :func:`obstore_used`."""
_forked_after_io = False
"""This process was forked from one that had used obstore: obstore's runtime (Rust's tokio, one per process, no
fork handler) has no threads here, and every request, even through a new store, would wait forever (measured with
obstore 0.12). Icechunk's own runtime survives a fork, so a pool forked before the first obstore store works."""


def obstore_used() -> None:
    """Called before every obstore store is made: a process forked after this cannot read through obstore (nor can
    this one, if it was forked so: the ``*_async`` functions, which :func:`run` does not see, are refused here)."""
    global _obstore_started
    if _forked_after_io:
        raise _forked_error()
    _obstore_started = True


def _forked_error() -> StackcubeError:
    return StackcubeError(
        "this process was forked from one that had already read through stackcube, and the I/O runtime "
        "stackcube reads with (obstore's) does not survive a fork: start the pool with "
        "multiprocessing.get_context('forkserver') (or 'spawn'), e.g. ProcessPoolExecutor(n, mp_context=...)"
    )


def _forget_after_fork() -> None:
    """In a child a fork started (a ``fork`` process pool): the parent's loop thread does not exist there, and a
    lock may have been held across the fork; the child's first call starts a loop of its own (zarr does the same),
    unless the parent had used obstore, whose runtime cannot go on here (:data:`_forked_after_io`)."""
    global _forked_after_io, _lock, _loop, _writing, _writes
    _forked_after_io = _forked_after_io or _obstore_started
    _lock = threading.Lock()
    _loop = None
    _writing = threading.Condition()
    _writes = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def run[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on stackcube's I/O loop and return its result (re-raising its exception)."""
    if _forked_after_io:
        coro.close()
        raise _forked_error()
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
        # interrupted (Ctrl-C, a notebook's "interrupt kernel"): stop the work at its next await instead of
        # leaving it to go on behind the caller's back (a no-op when the coroutine raised), and let work that
        # cannot stop half way (a write and its commit: finish_in_thread) end first, so that what it left (a
        # commit, or none) is settled when the caller looks. A second interrupt stops the wait.
        if future is not None and future.cancel():
            with _writing:
                _writing.wait_for(lambda: not _writes)
        raise


_writing = threading.Condition()
_writes: list[Callable[..., Any]] = []  # the finish_in_thread work running now


async def finish_in_thread[T](function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a thread, as ``asyncio.to_thread``, for work that must not be left half
    done by a cancellation (a write and its commit): a cancelled caller waits for it to end, then is cancelled,
    and an interrupted :func:`run` returns once it has ended."""

    def work() -> T:
        try:
            return function(*args, **kwargs)
        finally:
            with _writing:
                _writes.remove(function)
                _writing.notify_all()

    with _writing:
        _writes.append(function)  # counted from now: the thread may not have started when run is interrupted
    task = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
