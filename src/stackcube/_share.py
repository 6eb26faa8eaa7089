"""Bytes fetched once however many readers ask for them at once or soon after.

A union block's read and its neighbour's both need the member tiles on their border, and a tile may be asked for by
two dask tasks in a row. Every fetch here is a checked read of the version a cube indexed, so serving its bytes
again is exact. Written by hand: neither Zarr, Icechunk nor obstore shares reads in flight between callers.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable

__all__ = ["RECENT_BYTES", "Shared"]

RECENT_BYTES = 64 << 20
"""Bytes kept after their read, for readers that ask for them soon after."""


class Shared[K: Hashable]:
    """Reads in flight (per event loop: a reader awaits another's fetch on its own loop) and the most recent ones,
    up to ``budget`` bytes, by key."""

    def __init__(self, budget: int = RECENT_BYTES) -> None:
        self.budget = budget
        self._pending: dict[asyncio.AbstractEventLoop, dict[K, asyncio.Future[bytes | None]]] = {}
        self._recent: OrderedDict[K, bytes | None] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def claim(self, keys: Iterable[K]) -> tuple[dict[K, bytes | None], dict[K, asyncio.Future[bytes | None]], list[K]]:
        """Of ``keys`` (on a running loop): the bytes at hand, the fetches of other readers to await, and the keys
        the caller must fetch, now in flight on it (each to :meth:`settle` or :meth:`fail`)."""
        loop = asyncio.get_running_loop()
        found: dict[K, bytes | None] = {}
        waiting: dict[K, asyncio.Future[bytes | None]] = {}
        mine: list[K] = []
        with self._lock:
            pending = self._pending.setdefault(loop, {})
            for key in keys:
                if key in self._recent:
                    self._recent.move_to_end(key)
                    found[key] = self._recent[key]
                elif key in pending:
                    waiting[key] = pending[key]
                else:
                    future: asyncio.Future[bytes | None] = loop.create_future()
                    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved by its waiters
                    pending[key] = future
                    mine.append(key)
        return found, waiting, mine

    def settle(self, key: K, data: bytes | None) -> None:
        """``key``'s bytes came: to those waiting for them, and kept."""
        with self._lock:
            self._pending[asyncio.get_running_loop()].pop(key).set_result(data)
            self._recent[key] = data
            self._size += len(data or b"")
            while self._size > self.budget and len(self._recent) > 1:
                _, dropped = self._recent.popitem(last=False)
                self._size -= len(dropped or b"")

    def fail(self, keys: Iterable[K], error: BaseException, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """The fetch of ``keys`` (claimed on ``loop``, by default the running one) failed: those waiting for them
        get ``error``."""
        with self._lock:
            pending = self._pending[loop or asyncio.get_running_loop()]
            for key in keys:
                future = pending.pop(key)
                if not future.get_loop().is_closed():  # a fetch closed at exit, its loop with it: no one waits
                    future.set_exception(error)

    async def one(self, key: K, fetch: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        """``key``'s bytes: at hand, awaited from another reader's fetch, or fetched with ``fetch()``."""
        loop = asyncio.get_running_loop()
        found, waiting, mine = self.claim([key])
        if key in found:
            return found[key]
        if key in waiting:
            return await asyncio.shield(waiting[key])
        try:
            data = await fetch()
        except BaseException as exc:
            self.fail(mine, exc, loop)  # (a fetch closed unfinished at exit runs this with no loop running)
            raise
        self.settle(key, data)
        return data
