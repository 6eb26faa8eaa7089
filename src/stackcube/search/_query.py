"""Search arguments normalised once, by pystac-client's own rules: a :class:`Query` a cube can store and run again."""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypedDict, Unpack

import pystac
from pystac_client.item_search import DATETIME_REGEX

from stackcube._bbox import check_bbox, latitude_first
from stackcube._keywords import keywords_of
from stackcube.errors import NothingFoundError, SearchError

__all__ = ["SEARCH_KEYWORDS", "CatalogLike", "Query", "SearchArgs", "make_query", "require_items"]

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
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """Extra HTTP headers for a STAC API (never stored in a cube, nor shown in the query's repr: they may hold a
    key)."""

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


def make_query(catalog: CatalogLike, *, bbox: Any = None, datetime: Any = None, **search: Unpack[SearchArgs]) -> Query:
    """Normalise search arguments with pystac-client's own rules (no request is made; ``modifier`` is not part of
    a query)."""
    from pystac_client.item_search import ItemSearch

    search.pop("modifier", None)
    headers = dict(search.pop("headers", None) or {})
    max_items, limit = search.pop("max_items", None), search.pop("limit", None)
    filter_lang = search.pop("filter_lang", None)
    given = {"bbox": bbox, "datetime": _iso_datetime(datetime), **search}
    url = "http://normalise.invalid/search"
    try:
        ItemSearch(url, datetime=given["datetime"])  # alone first: its errors list the forms a datetime takes
    except Exception as exc:
        msg = f"datetime {datetime!r} is not a date, time or interval stackcube can read ({exc}); {DATETIME_FORMS}"
        raise SearchError(msg) from None
    try:
        params = ItemSearch(url, **given).get_parameters()
    except Exception as exc:
        msg = f"invalid search arguments {given}: {exc}"
        raise SearchError(msg) from None
    if "bbox" in params:
        params["bbox"] = check_bbox(params["bbox"])
    name = os.fspath(catalog) if isinstance(catalog, str | os.PathLike) else None
    if name is not None and "://" not in name and Path(name).exists():
        name = str(Path(name).resolve())  # stored in cubes: a refresh may run from another directory
    flt = search.get("filter")
    return Query(
        catalog=name,
        bbox=tuple(params["bbox"]) if "bbox" in params else None,
        intersects=params.get("intersects"),
        datetime=params.get("datetime"),
        collections=tuple(params["collections"]) if "collections" in params else None,
        ids=tuple(params["ids"]) if "ids" in params else None,
        query=params.get("query"),
        filter=dict(flt) if isinstance(flt, Mapping) else flt,
        filter_lang=filter_lang or (("cql2-text" if isinstance(flt, str) else "cql2-json") if flt else None),
        max_items=max_items,
        limit=limit,
        headers=headers,
    )


DATETIME_FORMS = (
    "give a year (2020), a month (2020-06), a day (2020-06-01), a time (2020-06-01T10:30, 2020-06-01T10:30:00Z), "
    "or an interval of two of them joined by / (2020-06-01/2020-07-31; .. for an open end: 2020-06-01/..)"
)
"""The forms of ``datetime`` a search takes, as errors list them."""


def _iso_datetime(value: Any) -> Any:
    """``value`` with each part of a text interval that pystac-client's pattern refuses but ISO 8601 allows
    (``2020-06-01T10:30``, ``2020-06-01 10:30``, ``20200601``) spelt as pystac-client wants it; anything else as
    given, for pystac-client to judge. (pystac-client takes such times as ``datetime`` objects, not as text.)"""
    if isinstance(value, str):
        return "/".join(_iso_part(part) for part in value.split("/"))
    if isinstance(value, list | tuple):
        return type(value)(_iso_part(v) if isinstance(v, str) else v for v in value)
    return value


# calendar dates and times only: Python also reads week (2020-W23) and ordinal (2020-155) dates, which would
# quietly narrow a week to its first day
_CALENDAR = re.compile(r"\d{4}-?\d{2}-?\d{2}(?:[T ]\d{2}:?\d{2}(?::?\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?")


def _iso_part(part: str) -> str:
    text = part.strip()
    if text in {"", ".."} or DATETIME_REGEX.match(text) or not _CALENDAR.fullmatch(text):
        return text
    try:
        return _dt.date.fromisoformat(text).isoformat()  # a day stays a day (the whole of it)
    except ValueError:
        pass
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment.isoformat(timespec="seconds" if not moment.microsecond else "microseconds")


def require_items(items: list[pystac.Item], q: Query) -> None:
    """Raise NothingFoundError naming the search when it found nothing."""
    if not items:
        args = {k: v for k, v in q.to_dict().items() if v is not None and k != "catalog"}
        msg = f"the search of {q.catalog or 'the given items'} matched no items ({args}); widen bbox or datetime"
        other = latitude_first(q.bbox) if q.bbox is not None else None
        if other is not None:
            msg += f" (the bbox is (west, south, east, north) in degrees: if it was latitude first, it is {other})"
        raise NothingFoundError(msg)
