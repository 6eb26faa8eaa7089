"""read_tiff: the ranged reads that feed the pure header parser, fewest GETs first."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Any

from stackcube import _sync
from stackcube.errors import CorruptTiffError, SourceChangedError, SourceError, SourceNotFoundError
from stackcube.settings import Settings, current
from stackcube.tiff._model import TiffManifest, is_weak
from stackcube.tiff._parse import NeedBytes, SparseFile, parse_manifest
from stackcube.tiff._source import ObjectInfo, get_range, head, limit, range_refused, resolve

__all__ = ["MERGE_GAP", "head_async", "read_segments", "read_tiff", "read_tiff_async"]

MAX_HEADER_REQUESTS = 64
"""Ranged GETs one header may cost before stackcube gives up (with doubling reads, about 2**64 bytes)."""
MAX_READ = 16 * 1024 * 1024
"""Largest single follow-up read; reads double from ``settings.header_bytes`` up to this."""
MERGE_GAP = 16 * 1024
"""Segments of one file at most this many bytes apart are fetched with one ranged GET (the bytes between are read
and dropped: a round trip costs more than 16 KiB at any bandwidth where latency matters)."""


async def read_tiff_async(
    href: str | os.PathLike[str], *, store: Any = None, settings: Settings | None = None
) -> TiffManifest:
    """Async twin of :func:`read_tiff`."""
    settings = settings or current()
    location = resolve(href, store, settings)
    async with limit(settings):
        try:
            data, info = await get_range(location, 0, settings.header_bytes, settings=settings)
        except SourceNotFoundError:
            raise
        except SourceError as exc:
            # a range request on an empty object is invalid; tell that apart from a real failure (not from an
            # unreachable host, which was retried already)
            if exc.transient or not range_refused(exc.__cause__) or (await head(location, settings)).size != 0:
                raise
            data, info = b"", ObjectInfo(size=0, etag=None, last_modified=None)
    if info.size == 0 or not data:
        msg = f"{location.url} is empty (0 bytes); it is not a TIFF"
        raise CorruptTiffError(msg)
    fh = SparseFile(info.size, name=location.url)
    fh.add(0, data)
    requests = 1
    while True:
        try:
            return parse_manifest(
                location.url, fh, etag=info.etag, last_modified=info.last_modified, header_requests=requests
            )
        except NeedBytes as need:
            if requests >= MAX_HEADER_REQUESTS:
                msg = f"{location.url}: the header is spread over more than {MAX_HEADER_REQUESTS} regions of the file"
                raise CorruptTiffError(msg) from None
            # read ahead, doubling: a header spread through the file costs O(log size) GETs, not one per IFD
            ahead = min(MAX_READ, settings.header_bytes << requests)
            stop = min(info.size, max(need.stop, need.start + ahead))
            # a weak ETag never matches under If-Match: those reads are conditioned on Last-Modified instead
            strong = info.etag if info.etag and not is_weak(info.etag) else None
            since = info.last_modified if strong is None else None
            async with limit(settings):
                more, again = await get_range(
                    location, need.start, stop, settings=settings, if_match=strong, if_unmodified_since=since
                )
            if again.size != info.size or (info.etag is None and again.last_modified != info.last_modified):
                msg = f"{location.url} changed while its header was being read (size or Last-Modified differs)"
                raise SourceChangedError(msg) from None
            if not more:
                msg = f"{location.url}: the header points at bytes {need.start}-{need.stop}, which were not sent"
                raise CorruptTiffError(msg) from None
            fh.add(need.start, more)
            requests += 1


async def read_segments(
    href: str,
    segments: list[tuple[int, int]],
    *,
    validator: str | None,
    etag: str | None = None,
    last_modified: datetime | None = None,
    account: str | None = None,
    settings: Settings | None = None,
) -> list[bytes]:
    """The bytes of ``segments`` ((offset, length) of tiles or strips of one file, in any order), those at most
    :data:`MERGE_GAP` apart fetched with one ranged GET (at most :data:`MAX_READ` each), concurrently.

    Every GET is checked against the version indexed, as GDAL's merged reads are not: with ``validator``
    ``"etag"`` If-Match ``etag``, with ``"last-modified"`` If-Unmodified-Since ``last_modified``; a host that
    answers 412 raises :class:`SourceChangedError`. None: the source is unprotected (as its chunk references are).
    """
    settings = settings or current()
    location = resolve(href, settings=settings, account=account)
    if_match = etag if validator == "etag" else None
    since = last_modified if validator == "last-modified" else None
    order = sorted(range(len(segments)), key=lambda i: segments[i][0])
    spans: list[tuple[int, int, list[int]]] = []  # (start, stop, segments in it)
    for i in order:
        offset, length = segments[i]
        if spans and offset - spans[-1][1] <= MERGE_GAP and offset + length - spans[-1][0] <= MAX_READ:
            start, stop, members = spans[-1]
            spans[-1] = (start, max(stop, offset + length), [*members, i])
        else:
            spans.append((offset, offset + length, [i]))

    async def one(start: int, stop: int) -> bytes:
        async with limit(settings):
            data, _ = await get_range(
                location, start, stop, settings=settings, if_match=if_match, if_unmodified_since=since
            )
        if len(data) != stop - start:
            msg = f"{href}: asked for bytes {start}-{stop}, got {len(data)} (the file is shorter than it was indexed)"
            raise SourceChangedError(msg)
        return data

    fetched = await asyncio.gather(*(one(start, stop) for start, stop, _ in spans))
    out: list[bytes] = [b""] * len(segments)
    for (start, _, members), data in zip(spans, fetched, strict=True):
        for i in members:
            offset, length = segments[i]
            out[i] = data[offset - start : offset - start + length]
    return out


async def head_async(
    href: str | os.PathLike[str], *, settings: Settings | None = None, account: str | None = None
) -> ObjectInfo:
    """HEAD the object at ``href``: its size, ETag and Last-Modified now (one request in the concurrency cap,
    transient failures retried). Where the host refuses HEAD (an URL presigned for GET only answers 403), a
    one-byte GET asks the same. A refresh asks this to learn whether a source is still the one indexed.
    ``account``: the Azure storage account of an ``az://`` href."""
    settings = settings or current()
    location = resolve(href, settings=settings, account=account)
    async with limit(settings):
        try:
            return await head(location, settings)
        except SourceNotFoundError:
            raise
        except SourceError as exc:
            if exc.transient:
                raise
            _, info = await get_range(location, 0, 1, settings=settings)
            return info


def read_tiff(href: str | os.PathLike[str], *, store: Any = None, settings: Settings | None = None) -> TiffManifest:
    """Read the header of a TIFF and return where every tile or strip of every IFD lives and how to decode it.

    A Cloud-Optimized GeoTIFF costs one ranged GET; a header spread through the file costs a few more.

    Parameters
    ----------
    href
        Local path, ``file://``, ``http(s)://`` or ``s3://`` URL.
    store
        An obstore store to read ``href``'s path from, instead of the one stackcube makes for its scheme and host.
    settings
        Concurrency, first read size, timeouts and retries (default: :func:`stackcube.settings.current`).

    Returns
    -------
    TiffManifest
        Every IFD (images, overviews, masks, SubIFDs) with segment offsets and byte counts as NumPy arrays, the
        decoding recipe, georeferencing, and the ETag and Last-Modified of the response the header came in.

    Raises
    ------
    SourceNotFoundError
        The object does not exist.
    CorruptTiffError
        The file is not a valid TIFF, or is truncated.
    UnsupportedTiffError
        The file uses a feature stackcube cannot decode (the message names the tag and value).

    Examples
    --------
    >>> from stackcube.tiff import read_tiff
    >>> manifest = read_tiff("../shared/corpus/tiff/rio-tiler/cog.tif")  # doctest: +SKIP
    >>> [(ifd.role, ifd.shape) for ifd in manifest.ifds]  # doctest: +SKIP
    [('image', (1, 2667, 2658)), ('overview', (1, 1334, 1329)), ...]
    """
    return _sync.run(read_tiff_async(href, store=store, settings=settings or current()))
