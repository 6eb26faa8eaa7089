"""Running a search: whichever kind of catalog it is, read its document once and search it as a STAC API would."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Unpack

import pystac

from stackcube._keywords import check_keywords
from stackcube._progress import progress_bar
from stackcube._retry import retry_sync
from stackcube.errors import Remedy, SearchError
from stackcube.search._fetch import is_api, read_json, search_api
from stackcube.search._parquet import is_parquet, parquet_items
from stackcube.search._query import SEARCH_KEYWORDS, CatalogLike, Query, SearchArgs, make_query
from stackcube.search._since import Since, narrow
from stackcube.search._static import check_filter, matches, static_items
from stackcube.settings import Settings, current

__all__ = ["Found", "search_again", "search_items"]


@dataclass(frozen=True, slots=True)
class Found:
    """What a search found, and what it asked."""

    items: list[Any]
    """The items, in the catalog's order (or what ``each`` made of each, :func:`search_items`)."""
    asked: str
    """What was asked, in words: "the whole search", "items updated since ...", ..."""
    whole: bool = True
    """False when only what can be new or changed was asked: the items it did not find were not asked about."""


def search_items(
    catalog: CatalogLike,
    *,
    bbox: Any = None,
    datetime: Any = None,
    settings: Settings | None = None,
    progress: bool = False,
    each: Callable[[pystac.Item], Any] | None = None,
    **search: Unpack[SearchArgs],
) -> tuple[Query, list[Any]]:
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
    progress
        Count the items found as they arrive (a progress bar of unknown end).
    each
        Called on each item as it arrives (after ``modifier``); the list holds what it returns instead of the items,
        so a search of many items need not hold them all (a build keeps only each item's chosen assets). A search
        retried after a transient failure calls it again on the items found again.
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
    q = make_query(catalog, bbox=bbox, datetime=datetime, **search)
    found = _search(catalog, q, settings or current(), search.get("modifier"), progress=progress, each=each)
    return q, found.items


def _search(
    catalog: CatalogLike,
    q: Query,
    settings: Settings,
    modifier: Callable[[Any], Any] | None,
    *,
    progress: bool,
    since: Since | None = None,
    denied: Remedy | None = None,
    each: Callable[[pystac.Item], Any] | None = None,
) -> Found:
    """The items ``q`` finds in ``catalog`` (a path or URL: ``q``'s, with its credentials; else items); a STAC API is
    asked only for what can be new or changed ``since`` (when given and the API allows it); a catalog that refuses
    the requests names ``denied`` as what to do."""
    href = q.url if isinstance(catalog, str | os.PathLike) else None  # requested, never printed
    with progress_bar(None, f"searching {q.catalog or 'the given items'}", "item", enabled=progress) as advance:
        if href is not None and is_parquet(href):  # a remote file's transient failure: the search again
            if q.filter is not None:
                check_filter(q)  # before the file is read: cql2 evaluates the filter here
            items = retry_sync(
                lambda: _matching(parquet_items(href, q, settings), q, modifier, advance, each), settings
            )
            return Found(items, "the whole search" + " (a stac-geoparquet file is read whole)" * (since is not None))
        # read once, whatever kind it turns out to be
        doc = read_json(href, settings, q.headers, denied) if href is not None else None
        if href is not None and doc is not None and is_api(href, doc):
            asked, words = narrow(q, since, doc) if since is not None else (q, "the whole search")
            items = [] if asked is None else search_api(asked, modifier, settings, advance, denied, each=each)
            return Found(items, words, whole=asked is q)
        # a document read already: its URL without credentials is only the base its links resolve against
        if q.filter is not None:
            check_filter(q)  # before any item is matched, even when there is none
        items = _matching(static_items(q.catalog or catalog, doc, settings, q), q, modifier, advance, each)
        return Found(items, "the whole search" + " (a static catalog is read whole)" * (since is not None))


def _matching(
    candidates: Iterable[pystac.Item],
    q: Query,
    modifier: Callable[[Any], Any] | None,
    advance: Callable[[int], object],
    each: Callable[[pystac.Item], Any] | None = None,
) -> list[Any]:
    """The static items a STAC API would return for ``q``, in order, ``modifier`` applied (then ``each``: the list
    holds what it returns)."""
    items: list[Any] = []
    for item in candidates:
        if matches(item, q):
            if modifier is not None:
                modifier(item)
            items.append(item if each is None else each(item))
            advance(1)
            if q.max_items is not None and len(items) >= q.max_items:
                break
    return items


def search_again(
    query: Query,
    settings: Settings | None = None,
    modifier: Callable[[Any], Any] | None = None,
    progress: bool = False,
    since: Since | None = None,
    *,
    denied: Remedy | None = None,
) -> Found:
    """Run a stored search again (a cube's refresh): the same catalog, filters and limits, with the headers and
    credential parameters ``query`` holds (a stored query holds none:
    :func:`~stackcube.search._query.with_catalog_credentials` gives them back); ``modifier`` (not stored with the
    cube) is called on every item, as the build's was. With ``since``, a STAC API is asked only for the items that
    can be new or changed since then (:func:`~stackcube.search._since.narrow`). A catalog that refuses the requests
    (HTTP 401 or 403) raises a SearchError naming ``denied`` as what to do."""
    if query.catalog is None:
        msg = "the search was of items in memory, not of a catalog: there is nothing to search again"
        raise SearchError(msg)
    return _search(query.catalog, query, settings or current(), modifier, progress=progress, since=since, denied=denied)
