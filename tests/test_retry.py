"""The retry policy (_retry): what is retried, how long it waits, and the timings taken out of error messages."""

from __future__ import annotations

import time

import pytest

from stackcube._retry import THROTTLED_WAIT, retry_sync, wait, without_timings
from stackcube.errors import SourceError
from stackcube.settings import Settings


def _error(*, transient: bool = True, throttled: bool = False) -> SourceError:
    error = SourceError("failed")
    error.transient, error.throttled = transient, throttled
    return error


def test_a_throttled_retry_waits_at_least_a_second_doubling_within_the_deadline() -> None:
    settings = Settings(retry_deadline=10.0)
    now = time.monotonic()
    assert all(
        wait(_error(throttled=True), n, now, settings) >= THROTTLED_WAIT * 2 ** (n - 1) - 0.01 for n in (1, 2, 3)
    )
    assert wait(_error(), 1, now, settings) < 0.2  # an ordinary transient failure: jittered backoff
    assert wait(_error(throttled=True), 8, now, settings) <= 10.0  # never past the deadline
    assert wait(_error(throttled=True), 1, now - 9.8, settings) <= 0.2 + 1e-6


def test_only_transient_errors_are_retried_and_at_most_retries_times() -> None:
    calls = []

    def failing(transient: bool) -> None:
        calls.append(1)
        raise _error(transient=transient)

    with pytest.raises(SourceError):
        retry_sync(lambda: failing(False), Settings(retries=3))
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(SourceError):
        retry_sync(lambda: failing(True), Settings(retries=3))
    assert len(calls) == 4


def test_timings_are_not_statuses() -> None:
    text = "GET http://h/s.tif in 404.2µs - Server returned non-2xx status code: 503; elapsed: 429ms, timeout 30s"
    cleaned = without_timings(text)
    assert "404" not in cleaned
    assert "429" not in cleaned
    assert "503" in cleaned
    assert "http://h/s.tif" in cleaned
