"""Retrying transient failures: exponential backoff with full jitter, bounded by attempts and a deadline.

obstore and requests do not retry underneath (stackcube turns their retries off): this wraps whole operations
(a search with its pages, a ranged GET with its body) in one place, so attempts and time stay within
:class:`~stackcube.settings.Settings`. Only errors marked ``transient``
(:attr:`stackcube.errors.StackcubeError.transient`) are retried.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable

from stackcube.errors import StackcubeError
from stackcube.settings import Settings

__all__ = ["again", "backoff", "looks_throttled", "retry_async", "retry_sync", "wait", "without_timings"]


def without_timings(text: str) -> str:
    """An error message without durations (``in 404.2µs``, ``elapsed: 503ms``), whose digits look like statuses:
    what is left can be searched for status codes."""
    return re.sub(r"\b[0-9]+(?:\.[0-9]+)?\s*(?:ns|µs|us|ms|s)\b", "", text)


def looks_throttled(text: str) -> bool:
    """Whether an error message says the host asked to slow down (429, S3's SlowDown, TooManyRequests)."""
    return re.search(r"\b429\b|SlowDown|TooManyRequests|THROTTLED", without_timings(text)) is not None


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): uniform in [0, min(5, 0.1 * 2**attempt))."""
    return random.uniform(0.0, min(5.0, 0.1 * 2**attempt))


THROTTLED_WAIT = 1.0
"""Seconds a throttled request (429) waits before its first retry at least; doubled at each further one."""


def again(exc: StackcubeError, attempt: int, started: float, settings: Settings) -> bool:
    return exc.transient and attempt <= settings.retries and time.monotonic() - started < settings.retry_deadline


def wait(exc: StackcubeError, attempt: int, started: float, settings: Settings) -> float:
    """Seconds before retry ``attempt``: the jittered backoff, at least the throttled wait after a 429, and never
    past the deadline."""
    wait = backoff(attempt)
    if exc.throttled:
        wait = max(wait, THROTTLED_WAIT * 2 ** (attempt - 1))
    return max(0.0, min(wait, settings.retry_deadline - (time.monotonic() - started)))


def retry_sync[T](call: Callable[[], T], settings: Settings) -> T:
    """Run ``call``; while it raises a transient stackcube error, wait and run it again (within the bounds)."""
    started, attempt = time.monotonic(), 0
    while True:
        try:
            return call()
        except StackcubeError as exc:
            attempt += 1
            if not again(exc, attempt, started, settings):
                raise
            pause = wait(exc, attempt, started, settings)
        time.sleep(pause)


async def retry_async[T](call: Callable[[], Awaitable[T]], settings: Settings) -> T:
    """Async twin of :func:`retry_sync`."""
    started, attempt = time.monotonic(), 0
    while True:
        try:
            return await call()
        except StackcubeError as exc:
            attempt += 1
            if not again(exc, attempt, started, settings):
                raise
            pause = wait(exc, attempt, started, settings)
        await asyncio.sleep(pause)
