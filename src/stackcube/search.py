"""Search stage: a STAC API, a static catalog or collection, an ItemCollection file or item list -> pystac Items.

The search arguments are normalised once by pystac-client's ``ItemSearch`` (without a request), so a static
catalog is filtered exactly as a STAC API would filter it: the same bbox and datetime ranges ("2020-06" is the
whole month), CQL2 filters evaluated with the ``cql2`` library, the ``query`` extension's operators.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypedDict, Unpack, cast
from urllib.parse import urlparse

import pystac
import shapely.geometry

from stackcube._keywords import check_keywords, keywords_of
from stackcube._retry import retry_sync
from stackcube.errors import NothingFoundError, SearchError
from stackcube.settings import Settings, current

__all__ = ["CatalogLike", "Query", "SearchArgs", "require_items", "search_again", "search_items"]

CatalogLike = str | os.PathLike[str] | pystac.ItemCollection | Iterable[pystac.Item | Mapping[str, Any]]
"""A STAC API URL, a static catalog or collection (path or URL), an ItemCollection file, or items."""


class SearchArgs(TypedDict, total=False):
    """The arguments of ``pystac_client.Client.search`` besides ``bbox`` and ``datetime``."""

    intersects: Mapping[str, Any] | None
    """A GeoJSON geometry (or an object with ``__geo_interface__``) the items must intersect."""
    collections: str | Sequence[str] | None
    """Collection ids."""
    ids: str | Sequence[str] | None
    """Item ids."""
    query: Mapping[str, Any] | None
    """The STAC ``query`` extension object."""
    filter: Mapping[str, Any] | str | None
    """A CQL2 filter (JSON object or text)."""
    filter_lang: str | None
    """``cql2-json`` or ``cql2-text``; inferred from ``filter`` when None."""
    max_items: int | None
    """Stop after this many items."""
    limit: int | None
    """Page size asked of a STAC API."""
    headers: Mapping[str, str] | None
    """Extra HTTP headers for a STAC API (never stored)."""
    modifier: Callable[[Any], Any] | None
    """Called on every item found, e.g. ``planetary_computer.sign_inplace``."""


SEARCH_KEYWORDS = keywords_of(SearchArgs)
"""The names :class:`SearchArgs` declares."""


@dataclass(frozen=True, slots=True)
class Query:
    """A normalised search: everything needed to run it again (a cube stores it to refresh itself)."""

    catalog: str | None
    """URL or path of the catalog; None for items passed in memory."""
    bbox: tuple[float, float, float, float] | None = None
    """(west, south, east, north) in degrees."""
    intersects: dict[str, Any] | None = None
    """A GeoJSON geometry the items must intersect."""
    datetime: str | None = None
    """An RFC 3339 instant or ``start/end`` interval (open ends as ``..``), as pystac-client sends it."""
    collections: tuple[str, ...] | None = None
    """Collection ids."""
    ids: tuple[str, ...] | None = None
    """Item ids."""
    query: dict[str, Any] | None = None
    """The STAC ``query`` extension object."""
    filter: dict[str, Any] | str | None = None
    """A CQL2 filter (JSON object or text)."""
    filter_lang: str | None = None
    """``cql2-json`` or ``cql2-text``; inferred from ``filter`` when None."""
    max_items: int | None = None
    """Stop after this many items."""
    limit: int | None = None
    """Page size asked of a STAC API."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra HTTP headers for a STAC API (never stored in a cube)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form, without headers (they may hold credentials)."""
        out = {
            k: getattr(self, k)
            for k in (
                "catalog",
                "bbox",
                "intersects",
                "datetime",
                "collections",
                "ids",
                "query",
                "filter",
                "filter_lang",
                "max_items",
                "limit",
            )
        }
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The query :meth:`to_dict` stored."""

        def strings(value: Any) -> tuple[str, ...] | None:
            return tuple(value) if value is not None else None

        bbox = data.get("bbox")
        return cls(
            catalog=data.get("catalog"),
            bbox=(bbox[0], bbox[1], bbox[2], bbox[3]) if bbox is not None else None,
            intersects=data.get("intersects"),
            datetime=data.get("datetime"),
            collections=strings(data.get("collections")),
            ids=strings(data.get("ids")),
            query=data.get("query"),
            filter=data.get("filter"),
            filter_lang=data.get("filter_lang"),
            max_items=data.get("max_items"),
            limit=data.get("limit"),
        )


def make_query(catalog: CatalogLike, **kwargs: Any) -> Query:
    """Normalise search arguments with pystac-client's own rules (no request is made)."""
    from pystac_client.item_search import ItemSearch

    headers = dict(kwargs.pop("headers", None) or {})
    max_items, limit = kwargs.pop("max_items", None), kwargs.pop("limit", None)
    filter_lang = kwargs.pop("filter_lang", None)
    try:
        params = ItemSearch("http://normalise.invalid/search", **kwargs).get_parameters()
    except Exception as exc:
        msg = f"invalid search arguments {kwargs}: {exc}"
        raise SearchError(msg) from None
    name = os.fspath(catalog) if isinstance(catalog, str | os.PathLike) else None
    if name is not None and "://" not in name and Path(name).exists():
        name = str(Path(name).resolve())  # stored in cubes: a refresh may run from another directory
    flt = kwargs.get("filter")
    return Query(
        catalog=name,
        bbox=tuple(params["bbox"]) if "bbox" in params else None,
        intersects=params.get("intersects"),
        datetime=params.get("datetime"),
        collections=tuple(params["collections"]) if "collections" in params else None,
        ids=tuple(params["ids"]) if "ids" in params else None,
        query=params.get("query"),
        filter=flt,
        filter_lang=filter_lang or (("cql2-text" if isinstance(flt, str) else "cql2-json") if flt else None),
        max_items=max_items,
        limit=limit,
        headers=headers,
    )


def search_items(
    catalog: CatalogLike,
    *,
    bbox: Any = None,
    datetime: Any = None,
    settings: Settings | None = None,
    **search: Unpack[SearchArgs],
) -> tuple[Query, list[pystac.Item]]:
    """Run a search and return the normalised query and the matching items (in the catalog's order).

    Parameters
    ----------
    catalog
        A STAC API root URL, a static catalog or collection JSON (path or URL), an ItemCollection / GeoJSON
        FeatureCollection file, a ``pystac.ItemCollection``, or an iterable of ``pystac.Item`` or item dicts.
    bbox, datetime
        As in ``pystac_client.Client.search``; static inputs are filtered the same way.
    settings
        Timeouts and retries (default: :func:`stackcube.settings.current`).
    **search
        :class:`SearchArgs`: intersects, collections, ids, query, filter, filter_lang, max_items, limit (as
        pystac-client takes them), ``headers`` for a STAC API, and ``modifier``, called on every item (and result)
        a STAC API returns, e.g. ``planetary_computer.sign_inplace``; also applied to static items.

    Examples
    --------
    >>> from stackcube.search import search_items
    >>> q, items = search_items("https://earth-search.aws.element84.com/v1", collections=["sentinel-2-l2a"],
    ...                         bbox=[27.0, -8.0, 27.1, -7.9], datetime="2020-06")  # doctest: +SKIP
    """
    check_keywords(search, SEARCH_KEYWORDS, "search_items")
    settings = settings or current()
    modifier = search.pop("modifier", None)
    q = make_query(catalog, bbox=bbox, datetime=datetime, **search)
    href = os.fspath(catalog) if isinstance(catalog, str | os.PathLike) else None
    # read once, whatever kind it turns out to be
    doc = _read_json(href, settings, q.headers) if href is not None else None
    if href is not None and doc is not None and _is_api(href, doc):
        items = _search_api(href, q, modifier, settings)
    else:
        items = [i for i in _static_items(catalog, doc, settings) if _matches(i, q)]
        if modifier is not None:
            for item in items:
                modifier(item)
        if q.max_items is not None:
            items = items[: q.max_items]
    return q, items


def search_again(query: Query, settings: Settings | None = None) -> tuple[Query, list[pystac.Item]]:
    """Run a stored search again (a cube's refresh): the same catalog, filters and limits, without headers."""
    if query.catalog is None:
        msg = "the search was of items in memory, not of a catalog: there is nothing to search again"
        raise SearchError(msg)
    return search_items(
        query.catalog,
        bbox=query.bbox,
        datetime=query.datetime,
        settings=settings,
        intersects=query.intersects,
        collections=query.collections,
        ids=query.ids,
        query=query.query,
        filter=query.filter,
        filter_lang=query.filter_lang,
        max_items=query.max_items,
        limit=query.limit,
    )


def _is_api(catalog: str, doc: dict[str, Any]) -> bool:
    if urlparse(catalog).scheme not in {"http", "https"}:
        return False
    conforms = " ".join(doc.get("conformsTo", []))
    return doc.get("type") == "Catalog" and (
        "item-search" in conforms or any(link.get("rel") == "search" for link in doc.get("links", []))
    )


def _read_json(href: str, settings: Settings, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
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
    return isinstance(
        exc, (*dropped, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    )


def _search_api(url: str, q: Query, modifier: Callable[[Any], Any] | None, settings: Settings) -> list[pystac.Item]:
    # The whole paginated search is retried here, in one place (requests' own retries would not cover a body cut
    # off mid-page, and two layers would multiply the attempts)
    return retry_sync(lambda: _search_api_once(url, q, modifier, settings), settings)


def _search_api_once(
    url: str, q: Query, modifier: Callable[[Any], Any] | None, settings: Settings
) -> list[pystac.Item]:
    import requests
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

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
            filter=q.filter,
            filter_lang=q.filter_lang,
            max_items=q.max_items,
            limit=q.limit,
        )
        return list(search.items())
    except (APIError, requests.RequestException, OSError, http.client.HTTPException, pystac.STACError) as exc:
        msg = f"{url}: the STAC API search failed ({str(exc).strip()[:300]})"
        error = SearchError(msg)
        error.transient = _transient(exc)
        raise error from None


def _static_items(catalog: CatalogLike, doc: dict[str, Any] | None, settings: Settings) -> Iterable[pystac.Item]:
    if isinstance(catalog, pystac.ItemCollection):
        return list(catalog)
    if not isinstance(catalog, str | os.PathLike):
        return [
            i if isinstance(i, pystac.Item) else pystac.Item.from_dict(dict(i), preserve_dict=False) for i in catalog
        ]
    href = os.fspath(catalog)
    doc = doc if doc is not None else _read_json(href, settings)
    kind = doc.get("type")
    if kind == "FeatureCollection":
        return [pystac.Item.from_dict(f, preserve_dict=False) for f in doc.get("features", [])]
    if kind == "Feature":
        return [pystac.Item.from_dict(doc)]
    if kind in {"Catalog", "Collection"}:
        root = pystac.read_dict(doc, href=href)
        if isinstance(root, pystac.Catalog):
            root.set_root(root)  # so items' "root" links resolve to this object instead of reading it again
        if not isinstance(root, pystac.Catalog):
            msg = f"{href} is a STAC {kind} that pystac cannot open as a catalog"
            raise SearchError(msg)
        return list(root.get_items(recursive=True))
    msg = f"{href} is not a STAC API, catalog, collection, item or item collection (type {kind!r})"
    raise SearchError(msg)


def _interval(text: str) -> tuple[datetime | None, datetime | None]:
    start, _, end = text.partition("/")

    def parse(value: str) -> datetime | None:
        return None if value in {"", ".."} else datetime.fromisoformat(value.replace("Z", "+00:00"))

    lo = parse(start)
    return lo, parse(end) if end else lo


def _matches(item: pystac.Item, q: Query) -> bool:
    if q.collections is not None and item.collection_id not in q.collections:
        return False
    if q.ids is not None and item.id not in q.ids:
        return False
    geometry = shapely.geometry.shape(item.geometry) if item.geometry is not None else None
    if geometry is not None and q.bbox is not None and not geometry.intersects(shapely.geometry.box(*q.bbox)):
        return False
    if (
        geometry is not None
        and q.intersects is not None
        and not geometry.intersects(shapely.geometry.shape(q.intersects))
    ):
        return False
    if q.datetime is not None and not _in_interval(item, q.datetime):
        return False
    if q.query is not None and not _matches_query(item.properties, q.query):
        return False
    if q.filter is not None:
        import cql2

        if not cql2.Expr(q.filter).matches(item.to_dict(transform_hrefs=False)):
            return False
    return True


def _in_interval(item: pystac.Item, interval: str) -> bool:
    lo, hi = _interval(interval)
    props = item.properties
    start = props.get("start_datetime") or props.get("datetime")
    end = props.get("end_datetime") or props.get("datetime")
    if start is None or end is None:
        return False
    s = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(UTC)
    e = datetime.fromisoformat(end.replace("Z", "+00:00")).astimezone(UTC)
    return (lo is None or e >= lo) and (hi is None or s <= hi)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
    "startsWith": lambda a, b: str(a).startswith(b),
    "endsWith": lambda a, b: str(a).endswith(b),
    "contains": lambda a, b: b in str(a),
}


def _matches_query(properties: dict[str, Any], query: dict[str, Any]) -> bool:
    for name, condition in query.items():
        if name not in properties:
            return False
        for op, value in condition.items():
            if op not in _OPS:
                msg = f"query operator {op!r} is not one of {sorted(_OPS)}"
                raise SearchError(msg)
            try:
                if not _OPS[op](properties[name], value):
                    return False
            except TypeError:
                return False
    return True


def require_items(items: list[pystac.Item], q: Query) -> None:
    """Raise NothingFoundError naming the search when it found nothing."""
    if not items:
        args = {k: v for k, v in q.to_dict().items() if v is not None and k != "catalog"}
        msg = f"the search of {q.catalog or 'the given items'} matched no items ({args}); widen bbox or datetime"
        raise NothingFoundError(msg)
