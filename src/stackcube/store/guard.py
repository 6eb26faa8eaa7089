"""The store every read of a cube goes through: transient failures retried, and Icechunk's errors turned into
stackcube's, naming the source and what to do (a changed or deleted source, a host without byte ranges, access
refused)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

import icechunk
import zarr
import zarr.api.asynchronous
import zarr.errors
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import WrapperStore

from stackcube._remedies import drop_vanished, reindex
from stackcube._retry import again, looks_throttled, wait, without_timings
from stackcube._share import Shared
from stackcube.errors import HostError, RepositoryError, SourceChangedError, SourceError, StackcubeError
from stackcube.settings import Settings
from stackcube.store.coords import kept_values
from stackcube.store.layout import DATA, ArrayLayout
from stackcube.store.repo import transient
from stackcube.tiff import limit, no_ranges

__all__ = ["GuardedStore"]


class GuardedStore(WrapperStore[Any]):
    """Every read of a cube goes through here: transient failures (5xx, 429, resets, timeouts, truncated bodies) are
    retried with the header reads' policy (:mod:`stackcube._retry`, Icechunk's own retries being off, so the two
    never multiply), and Icechunk's errors become stackcube's, naming the source: a changed or deleted source is a
    :class:`SourceChangedError`, a failure that outlived its retries a :class:`SourceError` that says so. Each read
    holds one of the process's ``settings.max_concurrency`` request slots (:func:`stackcube.tiff.limit`), shared
    with every other event loop and every other request stackcube sends."""

    def __init__(self, store: Any, settings: Settings, prefixes: Sequence[str] = (), repo: str | None = None) -> None:
        super().__init__(store)
        self._settings = settings
        self.repo = repo
        """The cube's path or URL, for the commands errors advise (None: opened from a Storage or Repository)."""
        self._prefixes = tuple(sorted(prefixes, key=len, reverse=True))
        self._start()

    def _start(self) -> None:
        """What a process keeps while reading (made again where a copy is unpickled, on a dask worker)."""
        self._tiles: Shared[str] = Shared()

    def __getstate__(self) -> dict[str, Any]:
        return {"_store": self._store, "_settings": self._settings, "_prefixes": self._prefixes, "repo": self.repo}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start()

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if byte_range is None and _TILE.search(key):
            # a source tile: read once however many readers ask for it at once or soon after (a union block's read
            # and its neighbour's both need the member tiles on their border)
            data = await self._tiles.one(key, lambda: self._bytes(key))
            return None if data is None else prototype.buffer.from_bytes(data)
        return await self._get(key, prototype, byte_range)

    async def _bytes(self, key: str) -> bytes | None:
        buffer = await self._get(key, _BYTES, None)
        return None if buffer is None else buffer.to_bytes()

    async def _get(self, key: str, prototype: Any, byte_range: Any) -> Any:
        started, attempt = time.monotonic(), 0
        while True:
            try:
                # at most settings.max_concurrency requests of the process in flight, however many dask threads
                # (each with its event loop) read at once, header reads of a build beside them included
                async with limit(self._settings):
                    return await self._store.get(key, prototype, byte_range)
            except icechunk.IcechunkError as exc:
                error = await self._error(key, exc)
            attempt += 1
            if not error.transient or not again(error, attempt, started, self._settings):
                if error.transient:
                    error = SourceError(f"{error} (transient; still failing after {attempt} tries)")
                raise error from None
            await asyncio.sleep(wait(error, attempt, started, self._settings))

    async def _error(self, key: str, exc: icechunk.IcechunkError) -> StackcubeError:
        """The stackcube error for Icechunk's ``exc`` reading ``key`` (the kind decides; the message adds detail)."""
        if exc.kind == icechunk.ErrorKind.VIRTUAL_CHUNK_MODIFIED:
            source = await self._sources_of(key)
            msg = f"{source} changed since the cube was built (it is no longer the version indexed)"
            return SourceChangedError(msg, remedy=reindex(self.repo))
        reason = exc.message.split("\n", 1)[0].removeprefix("error fetching virtual reference: ")
        if exc.kind in {icechunk.ErrorKind.VIRTUAL_CHUNK_FETCH, icechunk.ErrorKind.INVALID_OBJECT_SIZE}:
            source = await self._sources_of(key)
            if _GONE.search(without_timings(reason)):
                msg = f"{source} no longer exists (deleted or moved since the cube was built)"
                return SourceChangedError(msg, remedy=drop_vanished(self.repo))
            if _DENIED.search(without_timings(reason)):
                prefix = next((p for p in self._prefixes if source.startswith(p)), "the source's container prefix")
                msg = (
                    f"could not read {source}: access denied ({reason[:200]}); reading it takes credentials: open "
                    f"with credentials={{'{prefix}': ...}} (an Icechunk credential such as icechunk.s3_credentials"
                    "(...), or request headers for an HTTP host); stackcube info REPO lists the prefixes"
                )
                return SourceError(msg)
            if "Range request not supported" in reason:  # object_store's words: no kind of Icechunk's says it
                return HostError(f"could not read {source}: {no_ranges(source)}")
            error: StackcubeError = SourceError(f"could not read {source}: {_explain(reason)}")
        else:
            error = RepositoryError(f"could not read {key} of the repository: {reason[:300]}")
        error.transient = transient(exc)
        error.throttled = exc.kind == icechunk.ErrorKind.THROTTLED or looks_throttled(reason)
        return error

    async def _sources_of(self, key: str) -> str:
        """The source(s) a chunk key reads, from the level's ``source_href`` coordinate (Icechunk's errors do not
        always name them: S3's does not)."""
        parts = key.split("/")
        if len(parts) < 4 or parts[-6:-4] != [DATA, "c"]:
            return key
        level, (t, b) = "/".join(parts[:-6]), (int(parts[-4]), int(parts[-3]))
        try:
            data = await zarr.api.asynchronous.open_array(store=self._store, path=f"{level}/{DATA}", mode="r")
            where = (t, b * data.chunks[1])
            try:
                hrefs = await zarr.api.asynchronous.open_array(store=self._store, path=f"{level}/source_href", mode="r")
            except zarr.errors.ArrayNotFoundError:  # a union member's level: kept in its array node
                node = await zarr.api.asynchronous.open_group(store=self._store, path=level.rsplit("/", 1)[0], mode="r")
                found = kept_values(ArrayLayout.from_attrs(node.attrs), "source_href")[where]
            else:
                found = await hrefs.getitem(where)
        except (KeyError, ValueError, IndexError, TypeError, icechunk.IcechunkError):
            return key
        return str(found).replace(" ", ", ") or key


_TILE = re.compile(rf"/{DATA}/c/\d+/\d+/\d+/\d+$")
"""A chunk key of a level's data: one source tile."""
_BYTES = default_buffer_prototype()

# how object_store (local files, HTTP), S3 and Azure say an object is not there
_DENIED = re.compile(r"\b40[13]\b|AccessDenied|Forbidden|Unauthori[sz]ed|PermissionDenied|AuthenticationFailed")
_GONE = re.compile(r"not found|NoSuchKey|BlobNotFound|No such file|\b404\b")


def _explain(reason: str) -> str:
    """Icechunk's reason, with what to do where the cause is known."""
    if any(words in reason for words in ("InvalidObjectSize", "not enough data", "available")):
        reason += (
            " (the host sent a different number of bytes than the range asked for: a body cut off, or a host that "
            "compresses or ignores ranges)"
        )
    return reason[:400]
