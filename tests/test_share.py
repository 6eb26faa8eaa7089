"""Bytes fetched once among readers (_share): at once, soon after, and a failure reaching every waiter."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest

from stackcube import _share
from stackcube._share import ENTRY_BYTES, Recent, Shared


def test_readers_asking_at_once_or_soon_after_share_one_fetch() -> None:
    fetches: list[str] = []

    async def fetch(key: str) -> bytes:
        fetches.append(key)
        await asyncio.sleep(0.01)
        return key.encode() * 10

    async def main() -> list[bytes | None]:
        shared: Shared[str] = Shared(budget=25)
        at_once = await asyncio.gather(*(shared.one("a", lambda: fetch("a")) for _ in range(5)))
        soon = await shared.one("a", lambda: fetch("a"))
        found, waiting, mine = shared.claim(["a", "b"])
        assert (set(found), waiting, mine) == ({"a"}, {}, ["b"])
        shared.settle("b", b"b" * 20)  # two reads cost more than 25 bytes: the oldest goes
        later = await shared.one("a", lambda: fetch("a"))
        return [*at_once, soon, later]

    assert asyncio.run(main()) == [b"a" * 10] * 7
    assert fetches == ["a", "a"]  # once for six readers; again once it was dropped for room


def test_a_failed_fetch_reaches_every_reader_waiting_for_it() -> None:
    async def fetch() -> bytes:
        await asyncio.sleep(0.01)
        raise OSError("gone")

    async def main() -> None:
        shared: Shared[str] = Shared()
        results = await asyncio.gather(*(shared.one("a", fetch) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, OSError) for r in results)
        with pytest.raises(OSError, match="gone"):  # nothing kept: asked again, fetched again
            await shared.one("a", fetch)

    asyncio.run(main())


def test_misses_count_against_the_budget_and_the_oldest_go_once_over_it() -> None:
    """A miss (a tile the source does not have) costs its key and an entry's overhead: a long session's misses stay
    within the budget instead of growing without bound."""
    miss = Recent.cost(12345, None)
    assert miss == ENTRY_BYTES + sys.getsizeof(12345) > 0

    async def main() -> None:
        shared: Shared[int] = Shared(budget=10 * miss)
        for key in range(12345, 12345 + 1000):
            _, _, mine = shared.claim([key])
            assert mine == [key]
            shared.settle(key, None)
        assert len(shared.recent) == 10
        assert shared.recent.size == 10 * miss <= shared.recent.budget
        found, _, mine = shared.claim([12345, 12345 + 999])  # the first long gone, the last kept as a miss
        assert (found, mine) == ({12345 + 999: None}, [12345])
        shared.fail(mine, OSError("not fetched"))

    asyncio.run(main())


def test_every_reader_keeps_within_one_budget_for_the_process_each_under_its_own_keys(monkeypatch) -> None:
    """Two readers (two opens) keep what they read in the one place of the process: the same key names different
    bytes for each, and what one keeps pushes the other's oldest out once both are over the budget."""
    recent = Recent(_share.RECENT_BYTES)
    monkeypatch.setattr(_share, "RECENT", recent)

    async def main() -> None:
        first: Shared[str] = Shared()
        second: Shared[str] = Shared()
        assert first.recent is second.recent is recent
        for shared, data in ((first, b"1" * 100), (second, b"2" * 100)):
            _, _, mine = shared.claim(["c/0/0/0/0"])
            assert mine == ["c/0/0/0/0"]  # not the other reader's bytes
            shared.settle("c/0/0/0/0", data)
        assert (await first.one("c/0/0/0/0", _unused), await second.one("c/0/0/0/0", _unused)) == (
            b"1" * 100,
            b"2" * 100,
        )
        recent.budget = recent.size  # full: the next read of either pushes out the least recently used
        _, _, mine = second.claim(["c/0/0/0/1"])
        second.settle("c/0/0/0/1", b"3" * 100)
        assert first.claim(["c/0/0/0/0"])[2] == ["c/0/0/0/0"]  # the first reader's, used longest ago: gone
        assert second.claim(["c/0/0/0/0", "c/0/0/0/1"])[0] == {"c/0/0/0/0": b"2" * 100, "c/0/0/0/1": b"3" * 100}

    asyncio.run(main())


async def _unused() -> bytes:
    raise AssertionError("fetched, though kept")


def test_readers_on_many_event_loops_share_one_place_and_keep_one_count() -> None:
    """One reader used from several threads at once, each with its event loop (dask's threads, stackcube's loop,
    Zarr's): every key gives its own bytes, and the count of what is kept is what it holds."""
    shared: Shared[int] = Shared(budget=50 * Recent.cost(0, bytes(64)))
    start = threading.Barrier(4)

    def value(key: int) -> bytes | None:
        return None if key % 3 else bytes([key]) * 64

    def reader(seen: list[bytes | None]) -> None:
        async def main() -> None:
            start.wait(timeout=60)
            for n in range(500):
                key = (n * 7) % 70
                found, waiting, mine = shared.claim([key])
                for k in mine:
                    await asyncio.sleep(0)
                    shared.settle(k, value(k))
                got = {**found, **{k: value(k) for k in mine}}
                for k, future in waiting.items():
                    got[k] = await future
                assert got == {key: value(key)}
                seen.append(got[key])

        asyncio.run(main())

    seen: list[list[bytes | None]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=reader, args=(s,)) for s in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [len(s) for s in seen] == [500] * 4  # every reader got every key's bytes
    kept = list(shared.recent._kept.items())
    assert shared.recent.size == sum(Recent.cost(key, data) for (_, key), data in kept) <= shared.recent.budget
