"""STAC documents and STAC API searches over the network, each retried whole in one place."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import pystac

from stackcube._retry import retry_sync
from stackcube.errors import SearchError
from stackcube.search._query import Query
from stackcube.settings import Settings

__all__ = ["is_api", "read_json", "search_api"]


def is_api(catalog: str, doc: dict[str, Any]) -> bool:
    """Whether the document at ``catalog`` is the landing page of a STAC API that can search items."""
    if urlparse(catalog).scheme not in {"http", "https"}:
        return False
    conforms = " ".join(doc.get("conformsTo", []))
    return doc.get("type") == "Catalog" and (
        "item-search" in conforms or any(link.get("rel") == "search" for link in doc.get("links", []))
    )


def read_json(href: str, settings: Settings, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON document at a local path or HTTP(S) URL; transient failures retried."""
    return retry_sync(lambda: _read_json_once(href, settings, headers), settings)


def _read_json_once(href: str, settings: Settings, headers: Mapping[str, str] | None) -> dict[str, Any]:
    try:
        if urlparse(href).scheme in {"http", "https"}:
            import urllib.request

            request = urllib.request.Request(href, headers=dict(headers or {}))
            with urllib.request.urlopen(request, timeout=settings.request_timeout) as response:
                return cast("dict[str, Any]", json.loads(response.read()))
        return cast("dict[str, Any]", json.loads(Path(href).read_text()))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        msg = f"{href}: could not read a STAC document ({exc}); check the catalog URL or path"
        error = SearchError(msg)
        error.transient = _transient(exc)
        raise error from None


def _transient(exc: BaseException) -> bool:
    """Whether a failed HTTP exchange may succeed when tried again: 429, 5xx, timeouts, dropped connections.

    pystac wraps what went wrong (a landing page that would not load) in a STACError: its cause decides.
    """
    import urllib.error

    import requests

    if isinstance(exc, pystac.STACError):
        cause = exc.__cause__ or exc.__context__
        return cause is not None and _transient(cause)
    status = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    if isinstance(exc, urllib.error.URLError):
        return not isinstance(exc.reason, str) or "timed out" in exc.reason
    dropped = (ConnectionError, TimeoutError, http.client.HTTPException)
    if isinstance(
        exc, (*dropped, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    ):
        return True
    # pystac-client's APIError keeps only the message of what requests raised (a body cut off, a dropped connection)
    return re.search(r"Connection (?:broken|aborted|reset)|IncompleteRead|Read timed out", str(exc)) is not None


def search_api(
    url: str,
    q: Query,
    modifier: Callable[[Any], Any] | None,
    settings: Settings,
    advance: Callable[[int], object] = lambda n: None,
) -> list[pystac.Item]:
    """Every item a STAC API search returns, all pages (``advance(1)`` for each as the pages arrive); the whole
    search is retried on a transient failure."""
    # The whole paginated search is retried here, in one place (requests' own retries would not cover a body cut
    # off mid-page, and two layers would multiply the attempts)
    return retry_sync(lambda: _search_api_once(url, q, modifier, settings, advance), settings)


def _search_api_once(
    url: str,
    q: Query,
    modifier: Callable[[Any], Any] | None,
    settings: Settings,
    advance: Callable[[int], object],
) -> list[pystac.Item]:
    import requests
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    flt, lang = q.filter, q.filter_lang
    if isinstance(flt, str):  # searches are POSTed, and a STAC API takes only cql2-json in a POST body
        import cql2

        flt, lang = cql2.Expr(flt).to_json(), "cql2-json"
    try:
        stac_io = StacApiIO(headers=q.headers or None, timeout=settings.request_timeout, max_retries=0)
        client = Client.open(url, headers=q.headers or None, modifier=modifier, stac_io=stac_io)
        search = client.search(
            bbox=q.bbox,
            intersects=q.intersects,
            datetime=q.datetime,
            collections=list(q.collections) if q.collections else None,
            ids=list(q.ids) if q.ids else None,
            query=q.query,
            filter=flt,
            filter_lang=lang,
            max_items=q.max_items,
            limit=q.limit,
        )
        items = []
        for item in search.items():
            items.append(item)
            advance(1)
        return items
    except (APIError, requests.RequestException, OSError, http.client.HTTPException, pystac.STACError) as exc:
        msg = f"{url}: the STAC API search failed ({str(exc).strip()[:300]})"
        error = SearchError(msg)
        error.transient = _transient(exc)
        raise error from None
