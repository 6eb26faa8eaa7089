"""Bytes fetched once among readers (_share): at once, soon after, and a failure reaching every waiter."""

from __future__ import annotations

import asyncio

import pytest

from stackcube._share import Shared


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
        shared.settle("b", b"b" * 20)  # 30 bytes kept > 25: the oldest goes
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
