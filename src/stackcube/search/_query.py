"""Search arguments normalised once, by pystac-client's own rules: a :class:`Query` a cube can store and run again.

A catalog URL's credentials (``?subscription-key=...``, the Planetary Computer's API Management key, or any
parameter :data:`stackcube._hrefs.SECRET_PARAMS` lists, and its user information, ``https://user:password@host/``)
are split off it here, once: the query keeps the URL without them (what a cube stores and messages print) and holds
them in memory only, as it holds ``headers``, for this run's requests; a refresh is given them again
(:func:`with_catalog_credentials`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypedDict, Unpack
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import pystac
from pystac_client.item_search import DATETIME_REGEX

from stackcube._bbox import check_bbox, latitude_first
from stackcube._hrefs import SECRET_PARAMS
from stackcube._keywords import keywords_of
from stackcube.errors import NothingFoundError, SearchError

__all__ = [
    "SEARCH_KEYWORDS",
    "CatalogLike",
    "Query",
    "SearchArgs",
    "make_query",
    "require_items",
    "split_credentials",
    "split_userinfo",
    "with_catalog_credentials",
]

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
    secret_params: dict[str, str] = field(default_factory=dict, repr=False)
    """The catalog URL's credential parameters (name -> value, e.g. ``subscription-key``), split off
    :attr:`catalog` when the query is made: sent with this run's requests, never stored in a cube nor shown in the
    query's repr."""
    userinfo: str = field(default="", repr=False)
    """The catalog URL's user information (``user:password`` or a token, as the URL spelt it), split off
    :attr:`catalog` as its credential parameters are: sent with this run's requests as HTTP basic authentication,
    never stored in a cube nor shown in the query's repr."""

    def __post_init__(self) -> None:
        # here rather than in make_query alone: no Query, however made (a cube stored by an earlier stackcube
        # included), keeps a credential in the catalog it stores and prints
        if self.catalog is not None:
            name, secret, userinfo = split_credentials(self.catalog)
            object.__setattr__(self, "catalog", name)
            object.__setattr__(self, "secret_params", {**self.secret_params, **secret})
            object.__setattr__(self, "userinfo", userinfo or self.userinfo)

    @property
    def url(self) -> str | None:
        """The catalog as this run's requests ask for it: :attr:`catalog` with its user information and credential
        parameters (never to be stored or printed)."""
        return None if self.catalog is None else self.credentialed(self.catalog)

    def credentialed(self, href: str) -> str:
        """``href`` as this run's requests ask for it: with the catalog's user information and credential
        parameters when it lies on the catalog's own origin (a static catalog's links), else as it is (never to
        be stored or printed)."""
        if not (self.secret_params or self.userinfo) or not self.on_catalog_origin(href):
            return href  # the credentials go to the host they were given for only
        parts = urlsplit(href)
        query = "&".join(p for p in (parts.query, urlencode(self.secret_params)) if p)
        netloc = f"{self.userinfo}@{parts.netloc}" if self.userinfo else parts.netloc
        return urlunsplit(parts._replace(netloc=netloc, query=query))

    def on_catalog_origin(self, href: str) -> bool:
        """Whether ``href`` lies on the catalog's own scheme and host: where its credentials may go."""
        return self.catalog is not None and origin(href) == origin(self.catalog)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form, without headers and the catalog's credential parameters and user information."""
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
    flt = search.get("filter")
    return Query(
        catalog=_catalog_name(catalog),
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


def _catalog_name(catalog: CatalogLike) -> str | None:
    """``catalog`` as a query takes it: a local path made absolute (a cube stores it, and a refresh may run from
    another directory), a URL as given (:class:`Query` splits its credentials off), None for items in memory."""
    if not isinstance(catalog, str | os.PathLike):
        return None
    name = os.fspath(catalog)
    return str(Path(name).resolve()) if "://" not in name and Path(name).exists() else name


def split_credentials(url: str) -> tuple[str, dict[str, str], str]:
    """``url`` without its credentials - the query parameters that carry one
    (:data:`~stackcube._hrefs.SECRET_PARAMS`, compared case-insensitively) and its user information - with its other
    parameters as they were spelt; those parameters (name -> value); and the user information (``""``: none).

    Examples
    --------
    >>> split_credentials("https://me:pa55@host/api/stac/v1?subscription-key=abc&x=1")
    ('https://host/api/stac/v1?x=1', {'subscription-key': 'abc'}, 'me:pa55')
    """
    url, userinfo = split_userinfo(url)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.query:
        return url, {}, userinfo
    kept: list[str] = []
    secret: dict[str, str] = {}
    for part in parts.query.split("&"):
        name = unquote_plus(part.partition("=")[0])
        if name.lower() in SECRET_PARAMS:
            secret.update(parse_qsl(part, keep_blank_values=True))
        else:
            kept.append(part)
    if not secret:
        return url, {}, userinfo
    return urlunsplit(parts._replace(query="&".join(kept))), secret, userinfo


def origin(url: str) -> tuple[str, str]:
    """The scheme and host (with port) of ``url``: what credentials given for it may be sent to."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def split_userinfo(url: str) -> tuple[str, str]:
    """An http(s) ``url`` without its user information (``user:password@`` or ``token@`` before the host), and that
    information as the URL spelt it (``""``: none; other URLs and paths are returned as they are).

    Examples
    --------
    >>> split_userinfo("https://me:pa55@host:8080/stac")
    ('https://host:8080/stac', 'me:pa55')
    """
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if parts.scheme not in {"http", "https"} or not at:
        return url, ""
    return urlunsplit(parts._replace(netloc=host)), userinfo


def with_catalog_credentials(q: Query, catalog: str | None, headers: Mapping[str, str] | None) -> Query:
    """A stored query with what a run needs to search its catalog again that a cube never stores: the catalog URL
    with its credential parameters or user information (``catalog``; without them it must be the stored catalog),
    and ``headers``.

    Raises SearchError when ``catalog`` is another catalog than the stored one.
    """
    secret: dict[str, str] = {}
    userinfo = ""
    if catalog is not None:
        name, secret, userinfo = split_credentials(catalog)
        if name != q.catalog:
            msg = (
                f"the catalog given, {name} (its credentials aside), is not the one this cube searches, {q.catalog}: "
                "give that catalog's URL with its credential parameters (such as subscription-key), or its headers"
            )
            raise SearchError(msg)
    return dataclasses.replace(
        q,
        secret_params=secret or q.secret_params,
        userinfo=userinfo or q.userinfo,
        headers=dict(headers) if headers is not None else q.headers,
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


def require_items(items: Sized, q: Query) -> None:
    """Raise NothingFoundError naming the search when it found nothing."""
    if not items:
        args = {k: v for k, v in q.to_dict().items() if v is not None and k != "catalog"}
        msg = f"the search of {q.catalog or 'the given items'} matched no items ({args}); widen bbox or datetime"
        other = latitude_first(q.bbox) if q.bbox is not None else None
        if other is not None:
            msg += f" (the bbox is (west, south, east, north) in degrees: if it was latitude first, it is {other})"
        raise NothingFoundError(msg)
