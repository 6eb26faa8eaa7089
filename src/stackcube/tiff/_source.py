"""Where bytes come from: hrefs resolved to obstore stores, and ranged GETs that report the object's identity.

Local paths, ``file://``, ``http(s)://`` and ``s3://`` hrefs become one obstore store per scheme and host
(reused, so connections stay warm). Each GET returns the ETag, Last-Modified and size of the same response, and
follow-up reads of one file carry ``If-Match`` so a file replaced mid-read fails instead of mixing versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import weakref
from collections import OrderedDict
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
from stackcube.errors import HostError, SourceChangedError, SourceError, SourceNotFoundError
from stackcube.settings import Settings, current

__all__ = [
    "Location",
    "ObjectInfo",
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
    """Drop every cached store and request limit (their connections close); the next request makes new ones."""
    with _stores_lock:
        _stores.clear()
    _limits.clear()


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


# one semaphore per event loop (a loop that is gone takes its semaphore with it) and cap
_limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def limit(settings: Settings) -> AsyncIterator[None]:
    """Hold one of ``settings.max_concurrency`` request slots of the running event loop."""
    loop = asyncio.get_running_loop()
    cap, semaphore = _limits.get(loop, (0, None))
    if semaphore is None or cap != settings.max_concurrency:
        cap, semaphore = _limits[loop] = (settings.max_concurrency, asyncio.Semaphore(settings.max_concurrency))
    async with semaphore:
        yield


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
    except FileNotFoundError as exc:
        msg = f"{location.url} does not exist ({_first_line(exc)}); check the href"
        raise SourceNotFoundError(msg) from None
    except obstore.exceptions.PreconditionError:
        since = options.get("if_unmodified_since")
        was = f"ETag is no longer {options['if_match']}" if "if_match" in options else f"modified after {since}"
        msg = f"{location.url} changed while it was being read ({was}); read it again"
        raise SourceChangedError(msg) from None
    except Exception as exc:
        if isinstance(exc, obstore.exceptions.NotSupportedError) and urlparse(location.url).scheme in {"http", "https"}:
            # object_store's HTTP client says "not supported" of a ranged GET answered with the whole file (200)
            raise HostError(no_ranges(location.url)) from None
        msg = f"{location.url}: reading bytes {start}-{stop} failed{_denied_hint(location, exc)}: {_first_line(exc)}"
        raise _source_error(msg, exc) from exc
    encoding = str(result.attributes.get("Content-Encoding") or "identity")
    if encoding.lower() != "identity":
        msg = (
            f"{location.url}: the host sent bytes {start}-{stop} compressed (Content-Encoding: {encoding}) although "
            "stackcube asked for them as they are (Accept-Encoding: identity); offsets into a compressed rendering "
            "mean nothing: have the host serve TIFFs uncompressed (nginx: no gzip for image/tiff)"
        )
        raise SourceError(msg)
    return bytes(data), _info(result.meta)


async def head(location: Location, settings: Settings) -> ObjectInfo:
    """HEAD the object: its size, ETag and Last-Modified (transient failures retried)."""
    return await retry_async(lambda: _head_once(location), settings)


async def _head_once(location: Location) -> ObjectInfo:
    try:
        meta = await obstore.head_async(location.store, location.path)
    except FileNotFoundError as exc:
        msg = f"{location.url} does not exist ({_first_line(exc)}); check the href"
        raise SourceNotFoundError(msg) from None
    except Exception as exc:
        msg = f"{location.url}: HEAD failed{_denied_hint(location, exc)}: {_first_line(exc)}"
        raise _source_error(msg, exc) from exc
    return _info(meta)


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
    """A SourceError, transient unless the store refused us (permissions, credentials, unsupported requests, a
    range the object does not have: asking again gives the same answer)."""
    error = SourceError(msg)
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
