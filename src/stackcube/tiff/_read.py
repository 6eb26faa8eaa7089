"""read_tiff: the ranged reads that feed the pure header parser, fewest GETs first."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stackcube import _sync
from stackcube.errors import CorruptTiffError, SourceChangedError, SourceError, SourceNotFoundError
from stackcube.settings import Settings, current
from stackcube.tiff._model import TiffManifest, is_weak, same_version
from stackcube.tiff._parse import NeedBytes, SparseFile, parse_manifest
from stackcube.tiff._source import Location, ObjectInfo, get_range, head, limit, range_refused, resolve

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
    first = await _read_header(location, settings, by_etag=True)
    if isinstance(first, TiffManifest):
        return first
    # replaced between two GETs (or a host whose ETag changes with every response): once more from the start, the
    # new version whole; the follow-ups conditioned on Last-Modified this time, so a per-response ETag passes
    again = await _read_header(location, settings, by_etag=False, spent=first.requests)
    if isinstance(again, TiffManifest):
        return again
    msg = (
        f"{location.url} changed while its header was being read, twice in a row ({first.why}; then {again.why}): "
        "it is being rewritten (read it again later), or its host sends a new ETag with every response and no "
        "Last-Modified, so no two of its responses can be told to be one version (then have the header come in one "
        "GET: stackcube.settings.set(header_bytes=...) at least the header's size)"
    )
    raise SourceChangedError(msg)


@dataclass(frozen=True, slots=True)
class _Changed:
    """A header read that saw two versions of the file."""

    why: str
    """What differed between its first response and a follow-up."""
    requests: int
    """GETs it cost."""


async def _read_header(
    location: Location, settings: Settings, *, by_etag: bool, spent: int = 0
) -> TiffManifest | _Changed:
    """The manifest of the TIFF at ``location``: one ranged GET, then follow-ups while the parse needs bytes it does
    not have, each compared with the first response (size, ETag, Last-Modified) so two versions are never stitched
    together; :class:`_Changed` when they differ. ``by_etag``: the follow-ups carry If-Match with the first ETag
    (else If-Unmodified-Since its Last-Modified, and an ETag that changes while size and Last-Modified do not is
    taken for a per-response one and dropped). ``spent``: GETs an earlier try cost, counted in the manifest."""
    data, info = await _first_read(location, settings)
    if info.size == 0 or not data:
        msg = f"{location.url} is empty (0 bytes); it is not a TIFF"
        raise CorruptTiffError(msg)
    fh = SparseFile(info.size, name=location.url)
    fh.add(0, data)
    requests, etag = 1, info.etag
    strong = info.etag if info.etag and not is_weak(info.etag) else None
    # a weak ETag never matches under If-Match: those reads are conditioned on Last-Modified instead
    if_match = strong if by_etag or info.last_modified is None else None
    since = info.last_modified if if_match is None else None
    while True:
        try:
            return parse_manifest(
                location.url, fh, etag=etag, last_modified=info.last_modified, header_requests=spent + requests
            )
        except NeedBytes as exc:
            need = exc
        # (the rest outside the except block: nothing raised below carries the parse's exception along)
        if requests >= MAX_HEADER_REQUESTS:
            msg = f"{location.url}: the header is spread over more than {MAX_HEADER_REQUESTS} regions of the file"
            raise CorruptTiffError(msg)
        # read ahead, doubling: a header spread through the file costs O(log size) GETs, not one per IFD
        ahead = min(MAX_READ, settings.header_bytes << requests)
        stop = min(info.size, max(need.stop, need.start + ahead))
        requests += 1
        async with limit(settings):
            got = await _follow_up(location, need.start, stop, settings, if_match=if_match, since=since)
        if isinstance(got, str):
            return _Changed(got, spent + requests)
        more, again = got
        differs = _differs(info, again)
        if differs is not None and differs.startswith("ETag") and not by_etag and info.last_modified is not None:
            # the same size and Last-Modified, another ETag, on the second try: one per response (a file replaced
            # twice within a second by one of its own size is the other explanation), which protects nothing
            etag = None
        elif differs is not None:
            return _Changed(differs, spent + requests)
        if not more:
            msg = f"{location.url}: the header points at bytes {need.start}-{need.stop}, which were not sent"
            raise CorruptTiffError(msg)
        fh.add(need.start, more)


async def _first_read(location: Location, settings: Settings) -> tuple[bytes, ObjectInfo]:
    """The first ``settings.header_bytes`` of the object, and its identity (an empty object: no bytes)."""
    async with limit(settings):
        try:
            return await get_range(location, 0, settings.header_bytes, settings=settings)
        except SourceError as exc:
            failed = exc
        # a range request on an empty object is invalid; tell that apart from a real failure (not from an
        # unreachable host, which was retried already)
        if isinstance(failed, SourceNotFoundError) or failed.transient or not range_refused(failed.__cause__):
            raise failed
        try:
            size = (await head(location, settings)).size
        except SourceError as exc:
            exc.add_note(f"asked after a ranged GET failed: {failed}")
            raise
        if size != 0:
            raise failed
    return b"", ObjectInfo(size=0, etag=None, last_modified=None)


async def _follow_up(
    location: Location, start: int, stop: int, settings: Settings, *, if_match: str | None, since: datetime | None
) -> tuple[bytes, ObjectInfo] | str:
    """Bytes [start, stop) under the first response's validator, or why the host refused them (412)."""
    try:
        return await get_range(location, start, stop, settings=settings, if_match=if_match, if_unmodified_since=since)
    except SourceChangedError:
        was = f"If-Match {if_match}" if if_match is not None else f"If-Unmodified-Since {since}"
        return f"a follow-up GET was refused under {was}"


def _differs(first: ObjectInfo, again: ObjectInfo) -> str | None:
    """How a follow-up response's identity differs from the first response's (hosts that ignore If-Match still say
    which version they sent), or None: the size, then Last-Modified, then the ETag (so an ETag is named only when
    nothing else differs). The same strong ETag is the same version whatever Last-Modified says
    (:func:`same_version`)."""
    if again.size != first.size:
        return f"size {first.size}, then {again.size}"
    if same_version(first.etag, again.etag):
        return None
    if again.last_modified != first.last_modified:
        return f"Last-Modified {first.last_modified}, then {again.last_modified}"
    if again.etag != first.etag:
        return f"ETag {first.etag}, then {again.etag}"
    return None


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
        except SourceError as exc:
            failed = exc
        if isinstance(failed, SourceNotFoundError) or failed.transient:
            raise failed
        _, info = await get_range(location, 0, 1, settings=settings)
        return info


def read_tiff(href: str | os.PathLike[str], *, store: Any = None, settings: Settings | None = None) -> TiffManifest:
    """Read the header of a TIFF and return where every tile or strip of every IFD lives and how to decode it.

    A Cloud-Optimized GeoTIFF costs one ranged GET; a header spread through the file costs a few more, all of one
    version of the file.

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
    SourceChangedError
        The file was replaced between two GETs of its header, twice in a row (once, it is read again from the
        start: every follow-up GET carries If-Match, and its ETag, Last-Modified and size are compared with the
        first response's, so two versions are never stitched into one manifest).
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
