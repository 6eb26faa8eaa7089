"""STAC documents and STAC API searches over the network, each retried whole in one place.

What urllib, requests and pystac-client raise quotes the URL as requested, a catalog's key included (an HTTPError
keeps it as ``.url``; a dropped connection's message names ``/search?subscription-key=...``): such an error becomes a
:class:`~stackcube.errors.SearchError` raised outside the ``except`` block that caught it, with a redacted stand-in
as its cause (:func:`stackcube.errors.caused_by`), so no traceback, debugger or error tracker finds the key.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast, override
from urllib.parse import unquote, urlparse

import pystac

from stackcube._retry import retry_sync
from stackcube.errors import Remedy, SearchError, caused_by
from stackcube.search._query import Query, origin, split_credentials, split_userinfo
from stackcube.settings import Settings

__all__ = ["basic_auth", "is_api", "read_json", "search_api"]


def is_api(catalog: str, doc: dict[str, Any]) -> bool:
    """Whether the document at ``catalog`` is the landing page of a STAC API that can search items."""
    if urlparse(catalog).scheme not in {"http", "https"}:
        return False
    conforms = " ".join(doc.get("conformsTo", []))
    return doc.get("type") == "Catalog" and (
        "item-search" in conforms or any(link.get("rel") == "search" for link in doc.get("links", []))
    )


GIVE_CREDENTIALS = Remedy(
    python=(
        "give them: the catalog URL with its key as a query parameter (the Planetary Computer's is subscription-key), "
        "or headers={...}; stackcube never stores either"
    ),
    cli=(
        "give them: the catalog URL with its key as a query parameter (the Planetary Computer's is subscription-key), "
        "or --header 'NAME: VALUE'; stackcube never stores either"
    ),
)
"""What to do when a catalog refuses a request for want of credentials (HTTP 401 or 403), as a search says it."""


def read_json(
    href: str, settings: Settings, headers: Mapping[str, str] | None = None, denied: Remedy | None = None
) -> dict[str, Any]:
    """The JSON document at a local path or HTTP(S) URL; transient failures retried. A host that refuses it (HTTP
    401 or 403) raises a SearchError naming ``denied`` (default :data:`GIVE_CREDENTIALS`) as what to do."""
    return retry_sync(lambda: _read_json_once(href, settings, headers, denied), settings)


def _read_json_once(
    href: str, settings: Settings, headers: Mapping[str, str] | None, denied: Remedy | None
) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    # urllib sends no user information: it would take "user:password@host" for a host name (and say so, quoting
    # the password); it goes as HTTP basic authentication, as requests and curl send it
    url, userinfo = split_userinfo(href)
    try:
        if urlparse(url).scheme in {"http", "https"}:
            given = {**basic_auth(userinfo), **(headers or {})}
            request = urllib.request.Request(url, headers=given)
            opener = urllib.request.build_opener(_SameOriginRedirects(given))
            with opener.open(request, timeout=settings.request_timeout) as response:
                return cast("dict[str, Any]", json.loads(response.read()))
        return cast("dict[str, Any]", json.loads(Path(url).read_text()))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # its response's connection, which the error would otherwise keep open until collected
        failure = _read_failure(split_credentials(href)[0], exc, denied)  # the key itself goes in no message
    # raised here, not in the except block: urllib's error (an HTTPError's .url and .filename hold the key) must not
    # ride along as __context__
    raise failure


def _read_failure(shown: str, exc: BaseException, denied: Remedy | None) -> SearchError:
    """The error a failed read of the STAC document at ``shown`` (its credentials split off) becomes, with a
    redacted stand-in of ``exc`` as its cause."""
    if _refused(exc):
        return _refusal(shown, exc, denied)
    msg = f"{shown}: could not read a STAC document ({exc}); check the catalog URL or path"
    error = caused_by(SearchError(msg), exc)
    error.transient = _transient(exc)
    return error


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects followed as urllib follows them, with the catalog's credentials (basic authentication, the caller's
    headers) sent on only to the origin they were given for: urllib copies every header to wherever a redirect
    points, where requests and curl drop ``Authorization`` on a change of host."""

    def __init__(self, credentials: Mapping[str, str]) -> None:
        self._names = {name.capitalize() for name in credentials}  # as urllib.request.Request keeps them

    @override  # urllib's signature
    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(newurl) != origin(req.full_url):
            for name in self._names & set(new.headers):
                del new.headers[name]
        return new


def basic_auth(userinfo: str) -> dict[str, str]:
    """The ``Authorization`` header of HTTP basic authentication for an URL's user information (``user:password``
    or ``token``, percent-encoded as in the URL); none for ``""``."""
    if not userinfo:
        return {}
    user, _, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}


def _status(exc: BaseException) -> int | None:
    """The HTTP status a failed exchange answered (pystac wraps what went wrong in a STACError: its cause's)."""
    if isinstance(exc, pystac.STACError):
        cause = exc.__cause__ or exc.__context__
        return None if cause is None else _status(cause)
    status = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _refused(exc: BaseException) -> bool:
    """Whether the catalog refused the request for want of credentials (HTTP 401 or 403)."""
    return _status(exc) in {401, 403}


def _refusal(url: str, exc: BaseException, denied: Remedy | None) -> SearchError:
    """The error of a catalog that refused a request (never retried: the same request gets the same answer); the
    status says it all, nothing is chained."""
    msg = f"{url}: the catalog refused the request (HTTP {_status(exc)}): it wants credentials"
    return caused_by(SearchError(msg, remedy=denied or GIVE_CREDENTIALS), None)


def _transient(exc: BaseException) -> bool:
    """Whether a failed HTTP exchange may succeed when tried again: 429, 5xx, timeouts, dropped connections.

    pystac wraps what went wrong (a landing page that would not load) in a STACError: its cause decides.
    """
    import urllib.error

    import requests

    if isinstance(exc, pystac.STACError):
        cause = exc.__cause__ or exc.__context__
        return cause is not None and _transient(cause)
    status = _status(exc)
    if status is not None:
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
    q: Query,
    modifier: Callable[[Any], Any] | None,
    settings: Settings,
    advance: Callable[[int], object] = lambda n: None,
    denied: Remedy | None = None,
    *,
    each: Callable[[pystac.Item], Any] | None = None,
) -> list[Any]:
    """Every item a STAC API search of ``q.catalog`` returns, all pages (``advance(1)`` for each as the pages
    arrive; the list holds what ``each`` makes of it, when given), every request with ``q``'s headers, credential
    parameters and user information (as basic authentication); the whole search is retried on a transient
    failure, and a refusal (HTTP 401 or 403) names ``denied`` (default :data:`GIVE_CREDENTIALS`)."""
    # The whole paginated search is retried here, in one place (requests' own retries would not cover a body cut
    # off mid-page, and two layers would multiply the attempts)
    return retry_sync(lambda: _search_api_once(q, modifier, settings, advance, denied, each=each), settings)


def _search_api_once(
    q: Query,
    modifier: Callable[[Any], Any] | None,
    settings: Settings,
    advance: Callable[[int], object],
    denied: Remedy | None,
    *,
    each: Callable[[pystac.Item], Any] | None = None,
) -> list[Any]:
    import requests
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    flt, lang = q.filter, q.filter_lang
    if isinstance(flt, str):  # searches are POSTed, and a STAC API takes only cql2-json in a POST body
        import cql2

        flt, lang = cql2.Expr(flt).to_json(), "cql2-json"
    url = str(q.catalog)
    headers = {**basic_auth(q.userinfo), **q.headers}
    try:
        # the credentials go with every request, the search's pages included (the landing page's links do not
        # carry them)
        stac_io = StacApiIO(
            headers=headers or None,
            parameters=q.secret_params or None,
            timeout=settings.request_timeout,
            max_retries=0,
        )
        client = Client.open(url, headers=headers or None, modifier=modifier, stac_io=stac_io)
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
        items: list[Any] = []
        for data in search.items_as_dicts():  # (signed there, by the modifier, page by page)
            # made without the client as root, which ItemSearch.items() gives them: the client would keep every
            # item of the search in its cache of resolved objects, so none could be let go as it arrives
            item = pystac.Item.from_dict(data, preserve_dict=False)
            items.append(item if each is None else each(item))
            advance(1)
        return items
    except (APIError, requests.RequestException, OSError, http.client.HTTPException, pystac.STACError) as exc:
        failure = _search_failure(url, flt, exc, denied)
    # raised here, not in the except block: what requests raised (its message names the URL with the key) must not
    # ride along as __context__
    raise failure


def _search_failure(url: str, flt: Any, exc: BaseException, denied: Remedy | None) -> SearchError:
    """The error a failed search of the STAC API at ``url`` (with the filter ``flt``) becomes, with a redacted
    stand-in of ``exc`` as its cause."""
    if _refused(exc):
        return _refusal(url, exc, denied)
    # cut, then redacted (as every message is): a key's value cut short is redacted all the same
    msg = f"{url}: the STAC API search failed ({str(exc).strip()[:300]})"
    status = _status(exc)
    if flt is not None and status is not None and 400 <= status < 600 and status != 429:
        # pgstac answers a filter it cannot evaluate with a 500, as it would a failure of its own
        msg += f"; if its filter is at fault, check it against the API's CQL2: {json.dumps(flt)[:300]}"
    error = caused_by(SearchError(msg), exc)
    error.transient = _transient(exc)
    return error
