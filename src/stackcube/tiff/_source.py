"""Where bytes come from: hrefs resolved to obstore stores, and ranged GETs that report the object's identity.

Local paths, ``file://``, ``http(s)://`` and ``s3://`` hrefs become one obstore store per scheme and host
(reused, so connections stay warm). Each GET returns the ETag, Last-Modified and size of the same response, and
follow-up reads of one file carry ``If-Match`` so a file replaced mid-read fails instead of mixing versions. Every
request holds a slot of one process-wide cap (:class:`RequestCap`, :func:`limit`), whichever event loop sends it.
Failures become stackcube's errors without obstore's own chained (its text quotes the URL as requested, a signature
included): a redacted stand-in takes its place (:func:`stackcube.errors.caused_by`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import obstore
from obstore.store import AzureStore, HTTPStore, LocalStore, S3Store

from stackcube import _sync
from stackcube._hrefs import credential_for, headers_for
from stackcube._retry import looks_throttled, retry_async, without_timings
from stackcube.errors import (
    HostError,
    SourceChangedError,
    SourceError,
    SourceNotFoundError,
    StackcubeError,
    caused_by,
)
from stackcube.settings import Settings, current

__all__ = [
    "REQUESTS",
    "Location",
    "ObjectInfo",
    "RequestCap",
    "clear_stores",
    "get_range",
    "head",
    "limit",
    "normalize_href",
    "range_refused",
    "resolve",
    "store_for",
]


@dataclass(frozen=True, slots=True)
class Location:
    """An href resolved to the store that serves it."""

    url: str
    """Normalised URL (``file:///abs/path`` for local files)."""
    store: Any
    """The obstore store for the URL's scheme and host."""
    path: str
    """Path of the object inside ``store``."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Identity of an object as one response reported it."""

    size: int
    """Object size in bytes."""
    etag: str | None
    """ETag, None if the server sends none."""
    last_modified: datetime | None
    """Last-Modified, None if unknown."""


MAX_STORES = 64
"""Stores kept for reuse (one per scheme, host and settings); the least recently used goes first."""

_stores: OrderedDict[Hashable, Any] = OrderedDict()
_stores_lock = threading.Lock()


def _forget_stores() -> None:
    """In a forked child: the parent's stores belong to its obstore runtime (and the lock may have been held across
    the fork), so the child makes its own, which :func:`stackcube._sync.obstore_used` refuses if that runtime had
    started."""
    global _stores, _stores_lock
    _stores, _stores_lock = OrderedDict(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_stores)


def normalize_href(href: str | os.PathLike[str]) -> str:
    """Return ``href`` as a URL: local paths become absolute ``file://`` URLs."""
    text = os.fspath(href)
    parsed = urlparse(text)
    if parsed.scheme in {"http", "https", "s3", "file", "az"}:
        return text
    if parsed.scheme and len(parsed.scheme) > 1:
        msg = f"{text}: unsupported URL scheme {parsed.scheme!r}; use a local path, file://, http(s)://, s3:// or az://"
        raise SourceError(msg)
    return Path(text).expanduser().resolve().as_uri()


def store_for(url: str, settings: Settings) -> Any:
    """Return the shared obstore store serving ``url``'s scheme and host (created on first use, for these settings)."""
    parsed = urlparse(url)
    headers = headers_for(url, settings.credentials)
    key = (
        parsed.scheme,
        parsed.netloc,
        settings.request_timeout,
        settings.s3 if parsed.scheme == "s3" else None,
        frozenset(headers.items()),
    )
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = _make_store(parsed.scheme, parsed.netloc, settings, headers)
            while len(_stores) > MAX_STORES:
                _stores.popitem(last=False)
        _stores.move_to_end(key)
        return store


def clear_stores() -> None:
    """Drop every cached store (their connections close); the next request makes new ones."""
    with _stores_lock:
        _stores.clear()


IDENTITY = {"accept-encoding": "identity"}
"""Sent with every HTTP request: byte ranges count bytes of the file, not of a compressed rendering of it."""


def _network_options(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """obstore's per-request timeouts, and no retries of its own: ``get_range`` and ``head`` retry whole requests
    (a body cut off mid-way included) in one place, so attempts and time stay within ``settings``."""
    client = {"timeout": f"{settings.request_timeout}s", "connect_timeout": f"{min(10.0, settings.request_timeout)}s"}
    return client, {"max_retries": 0}


def _make_store(scheme: str, netloc: str, settings: Settings, headers: dict[str, str] | None = None) -> Any:
    _sync.obstore_used()
    if scheme == "file":
        return LocalStore()
    client, retry = _network_options(settings)
    if scheme in {"http", "https"}:
        return HTTPStore.from_url(
            f"{scheme}://{netloc}",
            client_options={
                **client,
                "allow_http": scheme == "http",
                "default_headers": {**IDENTITY, **(headers or {})},
            },  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
        )
    if scheme == "s3":
        config, more = settings.s3.obstore_options()
        return S3Store(netloc, client_options={**client, **more}, retry_config=retry, **config)  # type: ignore[arg-type]
    msg = f"unsupported URL scheme {scheme!r}"
    raise SourceError(msg)


def resolve(
    href: str | os.PathLike[str], store: Any = None, settings: Settings | None = None, account: str | None = None
) -> Location:
    """Resolve ``href`` to its store and path; ``store`` overrides the store for its scheme and host.

    An http(s) href with a query string (a signed URL, a version) is requested exactly as given: it gets a store of
    its own, not shared (its query may be a credential, valid for this object only). An ``az://CONTAINER/BLOB``
    href needs its storage ``account``, and is read with the SAS token ``settings.credentials`` give its container
    (``{"sas_token": ...}``).
    """
    url = normalize_href(href)
    parsed = urlparse(url)
    if store is None and parsed.query and parsed.scheme in {"http", "https"}:
        return Location(url=url, store=_signed_store(url, settings or current()), path="")
    if store is None and parsed.scheme == "az":
        path = unquote(parsed.path).lstrip("/")
        return Location(url=url, store=_azure_store(parsed.netloc, account, settings or current()), path=path)
    path = unquote(parsed.path).lstrip("/")
    return Location(url=url, store=store if store is not None else store_for(url, settings or current()), path=path)


def _azure_store(container: str, account: str | None, settings: Settings) -> Any:
    """A store for an Azure container (not shared: its token may be the caller's)."""
    if not account:
        msg = f"az://{container}/: the Azure storage account is not known (the cube names it; pass account=)"
        raise SourceError(msg)
    given = credential_for(f"az://{container}/", settings.credentials, account)
    config: dict[str, Any] = {"account_name": account}
    token = None
    if isinstance(given, dict):  # {"sas_token": ...}, or {"get_sas_token": () -> (token, expiry)}
        token = given.get("sas_token") or (given["get_sas_token"]()[0] if "get_sas_token" in given else None)
    if token:
        config["sas_key"] = str(token).lstrip("?")
    else:
        config["skip_signature"] = True  # anonymous: a public container (Icechunk credentials are for tile reads)
    client, retry = _network_options(settings)
    _sync.obstore_used()
    if settings.azure.emulator:  # as the cube's containers declare it (store.repo)
        config["endpoint"] = f"{settings.azure.emulator.rstrip('/')}/{account}"
        client["allow_http"] = True
    return AzureStore(container, client_options=client, retry_config=retry, **config)  # type: ignore[arg-type]


def _signed_store(url: str, settings: Settings) -> Any:
    """A store for exactly ``url``, query included (obstore would escape a ``?`` in a path)."""
    _sync.obstore_used()
    client, retry = _network_options(settings)
    headers = {**IDENTITY, **headers_for(url, settings.credentials)}
    options = {**client, "allow_http": url.startswith("http:"), "default_headers": headers}
    return HTTPStore.from_url(url, client_options=options, retry_config=retry)  # type: ignore[arg-type]


class RequestCap:
    """At most so many requests of the process in flight at once, whichever event loop (and thread) sends them.

    An ``asyncio.Semaphore`` serves one event loop, so a cap kept per loop is doubled by a second loop: the sync
    API's loop thread beside a caller's ``asyncio.run``, or several dask threads each reading a cube. This is one
    count under a ``threading.Lock``; a request over the cap waits on a future of its own loop, which a release in
    any thread resolves with ``call_soon_threadsafe``, first come first served. Each acquisition names its cap (the
    ``settings.max_concurrency`` of its call), so there is nothing to replace when the setting changes: the next
    request waits while that many are in flight, counting those that came in under another cap (each releases the
    one slot it took), and a cap nobody waits under any more leaves nothing behind. An acquisition that is
    cancelled while it waits takes no slot, or hands back the one it was just given.

    Waiters queue per cap (a build gathers every header read at once: tens of thousands), so a release costs one
    look at the head of each cap's queue, not a walk through every waiter.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiting = 0
        self._queues: dict[int, deque[_Waiter]] = {}
        self._arrivals = itertools.count()

    @property
    def in_flight(self) -> int:
        """Requests holding a slot now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    async def acquire(self, cap: int) -> None:
        """Wait until fewer than ``cap`` requests are in flight, and count this one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            # a waiter that could go now would have been given its slot by the release that made room, so taking one
            # here never overtakes a request waiting under the same cap
            if self._in_flight < cap:
                self._in_flight += 1
                return
            waiter = _Waiter(loop, loop.create_future(), cap, next(self._arrivals))
            self._queues.setdefault(cap, deque()).append(waiter)
            self._waiting += 1
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if waiter.granted:  # given a slot as it was cancelled: hand it on
                    self._release()
                elif not waiter.gone:  # left in its queue, skipped when it comes to the head
                    waiter.gone = True
                    self._waiting -= 1
            raise

    def release(self) -> None:
        """Give back one slot (from any thread); the longest waiting request that fits under its cap takes it."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        self._in_flight -= 1
        while (waiter := self._next()) is not None:
            waiter.gone = True
            self._waiting -= 1
            try:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
            except RuntimeError:  # its event loop is closed: nobody waits there any more
                continue
            waiter.granted = True
            self._in_flight += 1

    def _next(self) -> _Waiter | None:
        """Take the longest waiting request whose cap is above the count in flight, if any, off its queue."""
        first: deque[_Waiter] | None = None
        for cap, queue in list(self._queues.items()):
            while queue and queue[0].gone:
                queue.popleft()
            if not queue:
                del self._queues[cap]
            elif cap > self._in_flight and (first is None or queue[0].arrival < first[0].arrival):
                first = queue
        return None if first is None else first.popleft()

    def _forget(self) -> None:
        """In a child a fork started: the parent's requests are not in flight here, and the lock may have been held
        across the fork."""
        self._lock = threading.Lock()
        self._in_flight = self._waiting = 0
        self._queues = {}


@dataclass(slots=True, eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    cap: int
    arrival: int
    """Its place in line, across caps."""
    granted: bool = False
    """Given a slot."""
    gone: bool = False
    """Off the count of waiters (given a slot, or cancelled while it waited)."""


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # not cancelled meanwhile (acquire then hands the slot on)
        future.set_result(None)


REQUESTS = RequestCap()
"""The one cap on requests in flight: header reads, HEADs, probes, tile reads (:mod:`stackcube.store.guard`)."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=REQUESTS._forget)


@contextlib.asynccontextmanager
async def limit(settings: Settings) -> AsyncIterator[None]:
    """Hold one of the process's ``settings.max_concurrency`` request slots (:class:`RequestCap`) for the block."""
    await REQUESTS.acquire(settings.max_concurrency)
    try:
        yield
    finally:
        REQUESTS.release()


async def get_range(
    location: Location,
    start: int,
    stop: int,
    *,
    settings: Settings,
    if_match: str | None = None,
    if_unmodified_since: datetime | None = None,
) -> tuple[bytes, ObjectInfo]:
    """GET bytes [start, stop) of the object (fewer at its end) with the identity the same response reported.

    With ``if_match`` or ``if_unmodified_since``, a host that honours them answers 412 for an object that is not
    that version: :class:`SourceChangedError`. Transient failures (also mid-body, which obstore does not retry)
    are retried within ``settings``' bounds.
    """
    options: dict[str, Any] = {"range": (start, stop)}
    if if_match is not None:
        options["if_match"] = if_match
    if if_unmodified_since is not None:
        options["if_unmodified_since"] = if_unmodified_since
    return await retry_async(lambda: _get_range_once(location, start, stop, options), settings)


async def _get_range_once(
    location: Location, start: int, stop: int, options: dict[str, Any]
) -> tuple[bytes, ObjectInfo]:
    try:
        result = await obstore.get_async(location.store, location.path, options=options)  # type: ignore[arg-type]
        data = await result.bytes_async()
    except Exception as exc:  # every failure becomes one of ours, below
        failure = _get_failure(location, start, stop, options, exc)
    else:
        encoding = str(result.attributes.get("Content-Encoding") or "identity")
        if encoding.lower() == "identity":
            return bytes(data), _info(result.meta)
        msg = (
            f"{location.url}: the host sent bytes {start}-{stop} compressed (Content-Encoding: {encoding}) although "
            "stackcube asked for them as they are (Accept-Encoding: identity); offsets into a compressed rendering "
            "mean nothing: have the host serve TIFFs uncompressed (nginx: no gzip for image/tiff)"
        )
        failure = SourceError(msg)
    # raised here, not in the except block: obstore's error, whose text quotes the URL as requested (a signed URL's
    # signature included), must not ride along as __context__ (errors.caused_by)
    raise failure


def _get_failure(location: Location, start: int, stop: int, options: dict[str, Any], exc: Exception) -> StackcubeError:
    """Our error for obstore's ``exc`` on a ranged GET (a redacted stand-in of ``exc`` as its cause)."""
    if isinstance(exc, FileNotFoundError):
        msg = f"{location.url} does not exist ({_first_line(exc)}); check the href"
        return caused_by(SourceNotFoundError(msg), None)
    if isinstance(exc, obstore.exceptions.PreconditionError):
        since = options.get("if_unmodified_since")
        was = f"ETag is no longer {options['if_match']}" if "if_match" in options else f"modified after {since}"
        msg = f"{location.url} changed while it was being read ({was}); read it again"
        return caused_by(SourceChangedError(msg), None)
    if isinstance(exc, obstore.exceptions.NotSupportedError) and urlparse(location.url).scheme in {"http", "https"}:
        # object_store's HTTP client says "not supported" of a ranged GET answered with the whole file (200)
        return caused_by(HostError(no_ranges(location.url)), None)
    msg = f"{location.url}: reading bytes {start}-{stop} failed{_denied_hint(location, exc)}: {_first_line(exc)}"
    return _source_error(msg, exc)


async def head(location: Location, settings: Settings) -> ObjectInfo:
    """HEAD the object: its size, ETag and Last-Modified (transient failures retried)."""
    return await retry_async(lambda: _head_once(location), settings)


async def _head_once(location: Location) -> ObjectInfo:
    try:
        meta = await obstore.head_async(location.store, location.path)
    except FileNotFoundError as exc:
        msg = f"{location.url} does not exist ({_first_line(exc)}); check the href"
        failure: StackcubeError = caused_by(SourceNotFoundError(msg), None)
    except Exception as exc:  # every other failure becomes one of ours too
        failure = _source_error(f"{location.url}: HEAD failed{_denied_hint(location, exc)}: {_first_line(exc)}", exc)
    else:
        return _info(meta)
    raise failure  # outside the except block: no raw obstore error as __context__


def _info(meta: Any) -> ObjectInfo:
    """The identity obstore reports; object_store fills a missing Last-Modified with the epoch, which is none."""
    modified = meta.get("last_modified")
    if modified is not None and modified.timestamp() == 0:
        modified = None
    return ObjectInfo(size=int(meta["size"]), etag=meta.get("e_tag") or None, last_modified=modified)


def no_ranges(href: str) -> str:
    """The message for a host that answers ranged GETs with the whole file: it names the host, not the file, as
    every file there fails alike."""
    host = urlparse(href).netloc
    return (
        f"the host {host} does not serve byte ranges (it answers a Range request with the whole file), and "
        "stackcube reads a TIFF's header and tiles by ranged GETs; serve the files from a host that honours Range "
        "requests (nginx, Apache, S3, Azure Blob; python -m http.server does not)"
    )


def _denied_hint(location: Location, exc: BaseException) -> str:
    """What to do when a host refuses access (401, 403): pass it what it wants."""
    denied = (obstore.exceptions.PermissionDeniedError, obstore.exceptions.UnauthenticatedError)
    if not isinstance(exc, denied) and re.search(r"status code: 40[13]\b", str(exc)) is None:
        return ""
    parsed = urlparse(location.url)
    if parsed.scheme in {"http", "https"}:
        return (
            f" (the host refused access: if it wants a token, pass credentials={{'{parsed.scheme}://{parsed.netloc}/':"
            " {'Authorization': 'Bearer ...'}}, or sign the hrefs with the search's modifier)"
        )
    return " (access refused: check the credentials in the environment, AWS_*, or set AWS_REQUEST_PAYER=requester)"


def range_refused(exc: BaseException | None) -> bool:
    """Whether a failed ranged GET was refused for its range (416): an empty object, or a range past its end."""
    text = without_timings(str(exc)) if exc is not None else ""
    return any(s in text for s in ("Requested range", "416", "InvalidRange", "Range Not Satisfiable"))


def _source_error(msg: str, exc: BaseException) -> SourceError:
    """A SourceError caused by (a redacted stand-in of) obstore's ``exc``, transient unless the store refused us
    (permissions, credentials, unsupported requests, a range the object does not have: asking again gives the same
    answer)."""
    error = caused_by(SourceError(msg), exc)
    refused = (
        obstore.exceptions.PermissionDeniedError,
        obstore.exceptions.UnauthenticatedError,
        obstore.exceptions.NotSupportedError,
        obstore.exceptions.InvalidPathError,
    )
    text = without_timings(str(exc))
    bad_range = range_refused(exc)
    status = re.search(r"status code: (\d{3})", text)
    client_error = status is not None and 400 <= int(status[1]) < 500 and int(status[1]) not in {408, 429}
    error.transient = not isinstance(exc, refused) and not bad_range and not client_error
    error.throttled = looks_throttled(text)
    return error


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
