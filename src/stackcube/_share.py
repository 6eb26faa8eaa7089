"""Bytes fetched once however many readers ask for them at once or soon after.

A union block's read and its neighbour's both need the member tiles on their border, and a tile may be asked for by
two dask tasks in a row. Every fetch here is a checked read of the version a cube indexed, so serving its bytes
again is exact. Written by hand: neither Zarr, Icechunk nor obstore shares reads in flight between callers.

What is kept after its read is kept in one place for the whole process (:data:`RECENT`), within one budget however
many cubes and levels are open, each reader's keys apart from every other's.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import cast

__all__ = ["ENTRY_BYTES", "RECENT", "RECENT_BYTES", "Recent", "Shared"]

RECENT_BYTES = 64 << 20
"""Bytes kept after their read, for readers that ask for them soon after: one budget for the whole process (every
open, every level of it), not one per reader."""

ENTRY_BYTES = 256
"""What keeping one read costs besides its bytes and its key: 160 bytes measured per entry of the ordered dict that
keeps them (its hash slot, its link and the (reader, key) tuple; Python 3.12, tracemalloc over 100,000 entries),
rounded up for the dict's growth by doubling. A miss (a tile the source does not have, kept as None) costs this and
its key, so that misses are evicted by size too: counted as nothing, a long session's misses grew without bound."""


class Recent:
    """Reads kept after they came, by reader and key, the least recently used dropped first once they cost more than
    ``budget`` bytes (:meth:`cost`); safe to use from any thread and event loop."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        """Bytes kept at most (the one most recently kept stays, whatever its size)."""
        self._kept: OrderedDict[tuple[object, Hashable], bytes | None] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @staticmethod
    def cost(key: Hashable, data: bytes | None) -> int:
        """The bytes ``data`` kept under ``key`` count for: its length, the key's size and :data:`ENTRY_BYTES`."""
        return ENTRY_BYTES + sys.getsizeof(key) + (0 if data is None else len(data))

    @property
    def size(self) -> int:
        """The bytes counted for what is kept now."""
        return self._size

    def __len__(self) -> int:
        return len(self._kept)

    def find(self, reader: object, key: Hashable) -> tuple[bool, bytes | None]:
        """Whether ``reader`` kept ``key``, and its bytes (None: a miss was kept), now the most recently used."""
        with self._lock:
            found = self._kept.get((reader, key), _ABSENT)
            if found is _ABSENT:
                return False, None
            self._kept.move_to_end((reader, key))
            return True, cast("bytes | None", found)

    def keep(self, reader: object, key: Hashable, data: bytes | None) -> None:
        """Keep ``data`` under ``reader``'s ``key``, dropping the least recently used over the budget (never the
        one just kept)."""
        with self._lock:
            old = self._kept.pop((reader, key), _ABSENT)
            if old is not _ABSENT:
                self._size -= self.cost(key, cast("bytes | None", old))
            self._kept[(reader, key)] = data
            self._size += self.cost(key, data)
            while self._size > self.budget and len(self._kept) > 1:
                (_, dropped), value = self._kept.popitem(last=False)
                self._size -= self.cost(dropped, value)

    def _after_fork(self) -> None:
        # a lock another thread held at a fork stays held in the child, where that thread does not exist
        self._lock = threading.Lock()


_ABSENT = object()

RECENT = Recent(RECENT_BYTES)
"""What every reader of the process keeps (the default of :class:`Shared`); its ``budget`` may be changed."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RECENT._after_fork)


class Shared[K: Hashable]:
    """Reads in flight (per event loop: a reader awaits another's fetch on its own loop) and the most recent ones, by
    key.

    Recent reads are kept in :data:`RECENT` (one budget for the process), or with ``budget`` in a place of this
    reader's own. Either way under a namespace of this instance's: one reader's keys never meet another's, so a key
    need only name its bytes among one reader's (a row of one union level's tile table, a chunk key of one
    snapshot), and two opens of different cubes or snapshots cannot be served each other's bytes.
    """

    def __init__(self, budget: int | None = None) -> None:
        self.recent = RECENT if budget is None else Recent(budget)
        """Where this reader's recent reads are kept."""
        self._space = object()  # kept alive by the keys that hold it, so never reused while they are kept
        # per event loop: a loop that is gone takes its (by then empty) table with it
        self._pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[K, asyncio.Future[bytes | None]]] = (
            weakref.WeakKeyDictionary()
        )
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
                kept, data = self.recent.find(self._space, key)
                if kept:
                    found[key] = data
                elif key in pending:
                    waiting[key] = pending[key]
                else:
                    future: asyncio.Future[bytes | None] = loop.create_future()
                    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved by its waiters
                    pending[key] = future
                    mine.append(key)
        return found, waiting, mine

    def settle(self, key: K, data: bytes | None) -> None:
        """``key``'s bytes came (None: the source has none there): to those waiting for them, and kept."""
        with self._lock:  # kept before another claim can look: it finds them in flight or kept, never neither
            self._pending[asyncio.get_running_loop()].pop(key).set_result(data)
            self.recent.keep(self._space, key, data)

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
