"""Retrying transient failures: exponential backoff with full jitter, bounded by attempts and a deadline.

obstore retries inside each request already; this wraps whole operations (a search with its pages, a ranged
GET with its body), where a failure mid-body or a status the client does not retry would otherwise end a build.
Only errors marked ``transient`` (:attr:`stackcube.errors.StackcubeError.transient`) are retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from stackcube import settings
from stackcube.errors import StackcubeError

__all__ = ["backoff", "retry_async", "retry_sync"]


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): uniform in [0, min(5, 0.1 * 2**attempt))."""
    return random.uniform(0.0, min(5.0, 0.1 * 2**attempt))


def _again(exc: StackcubeError, attempt: int, started: float) -> bool:
    return exc.transient and attempt <= settings.retries and time.monotonic() - started < settings.retry_deadline


def retry_sync[T](call: Callable[[], T]) -> T:
    """Run ``call``; while it raises a transient stackcube error, wait and run it again (within the bounds)."""
    started, attempt = time.monotonic(), 0
    while True:
        try:
            return call()
        except StackcubeError as exc:
            attempt += 1
            if not _again(exc, attempt, started):
                raise
        time.sleep(backoff(attempt))


async def retry_async[T](call: Callable[[], Awaitable[T]]) -> T:
    """Async twin of :func:`retry_sync`."""
    started, attempt = time.monotonic(), 0
    while True:
        try:
            return await call()
        except StackcubeError as exc:
            attempt += 1
            if not _again(exc, attempt, started):
                raise
        await asyncio.sleep(backoff(attempt))
