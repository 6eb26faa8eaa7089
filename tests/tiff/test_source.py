"""Where bytes come from (tiff._source): stores are shared per host and settings, bounded, and can be dropped; one
cap on requests in flight holds for the whole process, whichever event loop sends them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from stackcube.settings import S3Settings, Settings
from stackcube.tiff import _source, clear_stores


def test_stores_are_shared_per_host_and_settings_and_bounded() -> None:
    clear_stores()
    settings = Settings()
    a = _source.store_for("http://host-a.invalid/x.tif", settings)
    assert _source.store_for("http://host-a.invalid/y/z.tif", settings) is a  # one per scheme and host
    assert _source.store_for("http://host-a.invalid/x.tif", Settings(request_timeout=5)) is not a  # and settings
    s3 = _source.store_for("s3://bucket/k.tif", settings)
    assert _source.store_for("s3://bucket/k.tif", Settings(s3=S3Settings(endpoint="http://127.0.0.1:1"))) is not s3
    for i in range(_source.MAX_STORES + 10):
        _source.store_for(f"http://host-{i}.invalid/x.tif", settings)
    assert len(_source._stores) == _source.MAX_STORES  # the least recently used went first
    clear_stores()
    assert not _source._stores


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds (the bound only stops a hang)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.005)


def test_a_cancelled_wait_takes_no_slot_and_hands_on_one_it_was_given() -> None:
    async def main() -> None:
        cap = _source.RequestCap()
        await cap.acquire(1)
        waiting = asyncio.create_task(cap.acquire(1))
        while cap.waiting == 0:
            await asyncio.sleep(0)
        waiting.cancel()  # cancelled while it waits: no slot taken
        await asyncio.gather(waiting, return_exceptions=True)
        assert (cap.in_flight, cap.waiting) == (1, 0)
        given = asyncio.create_task(cap.acquire(1))
        while cap.waiting == 0:
            await asyncio.sleep(0)
        cap.release()  # the slot goes to the waiter...
        assert (cap.in_flight, cap.waiting) == (1, 0)
        given.cancel()  # ...which is cancelled before it runs: it hands the slot on
        await asyncio.gather(given, return_exceptions=True)
        assert (cap.in_flight, cap.waiting) == (0, 0)

    asyncio.run(main())


def _read_in_threads(url: str, caps: list[int], each: int) -> list[threading.Thread]:
    """One thread per cap, each with an event loop of its own sending ``each`` ranged GETs at once under its cap."""

    def run(cap: int) -> None:
        settings = Settings(max_concurrency=cap)

        async def one() -> None:
            async with _source.limit(settings):
                await _source.get_range(_source.resolve(url, settings=settings), 0, 16, settings=settings)

        async def many() -> None:
            await asyncio.gather(*(one() for _ in range(each)))

        asyncio.run(many())

    threads = [threading.Thread(target=run, args=(cap,)) for cap in caps]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.network
def test_one_cap_holds_for_every_event_loop_of_the_process(tmp_path) -> None:
    """Two event loops in two threads, 20 requests each, under max_concurrency=3: the host never sees more than 3
    at once (counted at a proxy holding every request until all 40 are either in flight or waiting their turn)."""
    from tests.services.host import run_host
    from tests.services.proxy import run_proxy

    (tmp_path / "a.bin").write_bytes(bytes(1024))
    cap = _source.REQUESTS
    with run_host(tmp_path) as host, run_proxy(host.url, held=True) as proxy:
        threads = _read_in_threads(f"{proxy.url}/a.bin", [3, 3], 20)
        _wait_for(lambda: cap.waiting == 40 - 3 and proxy.stats["requests"] == 3, "3 requests in flight, 37 waiting")
        assert cap.in_flight == 3
        proxy.held = False
        for thread in threads:
            thread.join()
        assert proxy.stats["requests"] == 40
        assert proxy.stats["max_inflight"] == 3
    assert (cap.in_flight, cap.waiting) == (0, 0)


@pytest.mark.network
def test_a_changed_max_concurrency_applies_to_the_next_request_and_leaves_nothing_behind(tmp_path) -> None:
    from tests.services.host import run_host
    from tests.services.proxy import run_proxy

    (tmp_path / "a.bin").write_bytes(bytes(1024))
    cap = _source.REQUESTS
    with run_host(tmp_path) as host, run_proxy(host.url, held=True) as proxy:
        url = f"{proxy.url}/a.bin"
        threads = _read_in_threads(url, [2], 6)
        _wait_for(lambda: cap.waiting == 4 and proxy.stats["requests"] == 2, "2 in flight under a cap of 2")
        # raised to 4 while those wait: the next requests may go while fewer than 4 are in flight, counting the
        # ones that came in under the old cap; the old cap's waiters still wait for fewer than 2
        threads += _read_in_threads(url, [4], 6)
        _wait_for(lambda: cap.waiting == 4 + 4 and proxy.stats["requests"] == 4, "4 in flight under a cap of 4")
        assert cap.in_flight == 4
        proxy.held = False
        for thread in threads:
            thread.join()
        assert (proxy.stats["requests"], proxy.stats["max_inflight"]) == (12, 4)
        assert (cap.in_flight, cap.waiting) == (0, 0)  # nothing kept per cap, nothing left in flight

        proxy.reset()  # lowered to 1, from two loops: one at a time
        for thread in _read_in_threads(url, [1, 1], 5):
            thread.join()
        assert (proxy.stats["requests"], proxy.stats["max_inflight"]) == (10, 1)
    assert (cap.in_flight, cap.waiting) == (0, 0)
