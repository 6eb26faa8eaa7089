"""Where bytes come from: hrefs resolved to obstore stores, and ranged GETs that report the object's identity.

Local paths, ``file://``, ``http(s)://`` and ``s3://`` hrefs become one obstore store per scheme and host
(reused, so connections stay warm). Each GET returns the ETag, Last-Modified and size of the same response, and
follow-up reads of one file carry ``If-Match`` so a file replaced mid-read fails instead of mixing versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import obstore
from obstore.store import HTTPStore, LocalStore, S3Store

from stackcube import settings
from stackcube._retry import retry_async
from stackcube.errors import SourceChangedError, SourceError, SourceNotFoundError

__all__ = ["Location", "ObjectInfo", "get_range", "head", "limit", "resolve", "store_for"]


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


_stores: dict[str, Any] = {}
_stores_lock = threading.Lock()


def normalize_href(href: str | os.PathLike[str]) -> str:
    """Return ``href`` as a URL: local paths become absolute ``file://`` URLs."""
    text = os.fspath(href)
    parsed = urlparse(text)
    if parsed.scheme in {"http", "https", "s3", "file"}:
        return text
    if parsed.scheme and len(parsed.scheme) > 1:
        msg = f"{text}: unsupported URL scheme {parsed.scheme!r}; use a local path, file://, http(s):// or s3://"
        raise SourceError(msg)
    return Path(text).expanduser().resolve().as_uri()


def store_for(url: str) -> Any:
    """Return the shared obstore store serving ``url``'s scheme and host (created on first use)."""
    parsed = urlparse(url)
    key = f"{parsed.scheme}://{parsed.netloc} {settings.request_timeout}"
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _make_store(parsed.scheme, parsed.netloc)
            _stores[key] = store
        return store


def _network_options() -> tuple[dict[str, Any], dict[str, Any]]:
    """obstore's per-request timeouts, and no retries of its own: ``get_range`` and ``head`` retry whole requests
    (a body cut off mid-way included) in one place, so attempts and time stay within ``settings``."""
    client = {"timeout": f"{settings.request_timeout}s", "connect_timeout": f"{min(10.0, settings.request_timeout)}s"}
    return client, {"max_retries": 0}


def _make_store(scheme: str, netloc: str) -> Any:
    if scheme == "file":
        return LocalStore()
    client, retry = _network_options()
    if scheme in {"http", "https"}:
        return HTTPStore.from_url(
            f"{scheme}://{netloc}",
            client_options={**client, "allow_http": scheme == "http"},  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
        )
    if scheme == "s3":
        # credentials, region and endpoint come from the usual AWS_* environment variables
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        config: dict[str, Any] = {}
        if endpoint:
            config["endpoint"] = endpoint
            client["allow_http"] = endpoint.startswith("http://")
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            config["skip_signature"] = True
        return S3Store(netloc, client_options=client, retry_config=retry, **config)  # type: ignore[arg-type]
    msg = f"unsupported URL scheme {scheme!r}"
    raise SourceError(msg)


def resolve(href: str | os.PathLike[str], store: Any = None) -> Location:
    """Resolve ``href`` to its store and path; ``store`` overrides the store for its scheme and host."""
    url = normalize_href(href)
    parsed = urlparse(url)
    path = unquote(parsed.path).lstrip("/")
    return Location(url=url, store=store if store is not None else store_for(url), path=path)


_limits: dict[tuple[int, int], asyncio.Semaphore] = {}


@contextlib.asynccontextmanager
async def limit() -> AsyncIterator[None]:
    """Hold one of ``settings.max_concurrency`` request slots of the running event loop."""
    key = (id(asyncio.get_running_loop()), settings.max_concurrency)
    semaphore = _limits.get(key)
    if semaphore is None:
        semaphore = _limits[key] = asyncio.Semaphore(settings.max_concurrency)
    async with semaphore:
        yield


async def get_range(
    location: Location, start: int, stop: int, *, if_match: str | None = None
) -> tuple[bytes, ObjectInfo]:
    """GET bytes [start, stop) of the object (fewer at its end) with the identity the same response reported.

    Transient failures (also mid-body, which obstore does not retry) are retried within ``settings``' bounds.
    """
    return await retry_async(lambda: _get_range_once(location, start, stop, if_match))


async def _get_range_once(location: Location, start: int, stop: int, if_match: str | None) -> tuple[bytes, ObjectInfo]:
    options: dict[str, Any] = {"range": (start, stop)}
    if if_match is not None:
        options["if_match"] = if_match
    try:
        result = await obstore.get_async(location.store, location.path, options=options)  # type: ignore[arg-type]
        data = await result.bytes_async()
    except FileNotFoundError as exc:
        msg = f"{location.url} does not exist ({_first_line(exc)}); check the href"
        raise SourceNotFoundError(msg) from None
    except obstore.exceptions.PreconditionError:
        msg = f"{location.url} changed while it was being read (ETag is no longer {if_match}); read it again"
        raise SourceChangedError(msg) from None
    except Exception as exc:
        msg = f"{location.url}: reading bytes {start}-{stop} failed: {_first_line(exc)}"
        raise _source_error(msg, exc) from exc
    meta = result.meta
    info = ObjectInfo(size=int(meta["size"]), etag=meta.get("e_tag"), last_modified=meta.get("last_modified"))
    return bytes(data), info


async def head(location: Location) -> ObjectInfo:
    """HEAD the object: its size, ETag and Last-Modified (transient failures retried)."""
    return await retry_async(lambda: _head_once(location))


async def _head_once(location: Location) -> ObjectInfo:
    try:
        meta = await obstore.head_async(location.store, location.path)
    except FileNotFoundError as exc:
        msg = f"{location.url} does not exist ({_first_line(exc)}); check the href"
        raise SourceNotFoundError(msg) from None
    except Exception as exc:
        msg = f"{location.url}: HEAD failed: {_first_line(exc)}"
        raise _source_error(msg, exc) from exc
    return ObjectInfo(size=int(meta["size"]), etag=meta.get("e_tag"), last_modified=meta.get("last_modified"))


def _source_error(msg: str, exc: BaseException) -> SourceError:
    """A SourceError, transient unless the store refused us (permissions, credentials, unsupported requests)."""
    error = SourceError(msg)
    refused = (
        obstore.exceptions.PermissionDeniedError,
        obstore.exceptions.UnauthenticatedError,
        obstore.exceptions.NotSupportedError,
        obstore.exceptions.InvalidPathError,
    )
    error.transient = not isinstance(exc, refused)
    return error


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
