"""Static catalogs, collections, ItemCollection files and item lists, filtered as a STAC API would filter them."""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pystac
import pystac.stac_io
import shapely.geometry

from stackcube.errors import SearchError
from stackcube.search._fetch import read_json
from stackcube.search._query import CatalogLike, Query
from stackcube.settings import Settings

if TYPE_CHECKING:
    import cql2

__all__ = ["check_filter", "interval_of", "matches", "static_items"]


class _CatalogIO(pystac.stac_io.DefaultStacIO):
    """A static catalog's links read as its root was: over HTTP with the catalog's credentials (its key parameters,
    user information and headers) on its own origin only (:meth:`Query.credentialed`), transient failures retried,
    a failure a SearchError naming the link. pystac's own reader would send none of them."""

    def __init__(self, q: Query | None, settings: Settings) -> None:
        super().__init__()
        self._q = q
        self._settings = settings

    def read_json(self, source: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        href = str(source)
        if urlsplit(href).scheme not in {"http", "https"}:
            return super().read_json(source, *args, **kwargs)
        if self._q is None:
            return read_json(href, self._settings)
        headers = self._q.headers if self._q.on_catalog_origin(href) else None
        return read_json(self._q.credentialed(href), self._settings, headers)


def static_items(
    catalog: CatalogLike, doc: dict[str, Any] | None, settings: Settings, q: Query | None = None
) -> Iterable[pystac.Item]:
    """Every item of a static input (``doc``: its document, when already read; ``q``: the search, whose catalog
    credentials its links on the same host are read with), unfiltered."""
    if isinstance(catalog, pystac.ItemCollection):
        return list(catalog)
    if not isinstance(catalog, str | os.PathLike):
        return [
            i if isinstance(i, pystac.Item) else pystac.Item.from_dict(dict(i), preserve_dict=False) for i in catalog
        ]
    href = os.fspath(catalog)
    doc = doc if doc is not None else read_json(href, settings)
    kind = doc.get("type")
    if kind == "FeatureCollection":  # made one at a time, so that a caller may keep less of each than all of it
        return (pystac.Item.from_dict(f, preserve_dict=False) for f in doc.get("features", []))
    if kind == "Feature":
        return [pystac.Item.from_dict(doc)]
    if kind in {"Catalog", "Collection"}:
        root = pystac.read_dict(doc, href=href, stac_io=_CatalogIO(q, settings))
        if isinstance(root, pystac.Catalog):
            root.set_root(root)  # so items' "root" links resolve to this object instead of reading it again
        if not isinstance(root, pystac.Catalog):
            msg = f"{href} is a STAC {kind} that pystac cannot open as a catalog"
            raise SearchError(msg)
        return list(root.get_items(recursive=True))
    msg = f"{href} is not a STAC API, catalog, collection, item or item collection (type {kind!r})"
    raise SearchError(msg)


def interval_of(text: str) -> tuple[datetime | None, datetime | None]:
    start, _, end = text.partition("/")

    def parse(value: str) -> datetime | None:
        return None if value in {"", ".."} else datetime.fromisoformat(value.replace("Z", "+00:00"))

    lo = parse(start)
    return lo, parse(end) if end else lo


def matches(item: pystac.Item, q: Query) -> bool:
    """Whether a STAC API would return ``item`` for the search ``q``."""
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
        expr = check_filter(q)
        data = item.to_dict(transform_hrefs=False)
        if data["properties"].get("datetime") is None and "start_datetime" in data["properties"]:
            # as pgstac: an item of a start and end has the start as its ``datetime`` in a filter
            data["properties"]["datetime"] = data["properties"]["start_datetime"]
        try:
            if not expr.matches(data):
                return False
        except Exception:  # cql2 raises a bare Exception whenever the filter is not reduced to true or false
            # The filter is known to be one cql2 evaluates (check_filter): what is left unknown is a property the
            # item lacks (as SQL's NULL) or a value of another kind than the filter compares it with (a list, a
            # text for a number); a STAC API (pgstac) does not return such an item either
            return False
    return True


def check_filter(q: Query) -> cql2.Expr:
    """The CQL2 filter of ``q`` (a search with one), parsed once and checked before any item is matched.

    Raises SearchError, naming the filter and what to do, when cql2 (which filters static catalogs, item
    collections and stac-geoparquet files) cannot evaluate it: text that does not parse, an operator CQL2 does not
    define (a misspelling, or a function only some STAC API defines: cql2 accepts such calls, then matches no item
    at all), an operator given the wrong number of arguments, JSON that CQL2's schema refuses, or a part without
    properties cql2 cannot reduce (a text compared with a number). A STAC API (pgstac) answers the same malformed
    filters with an error, so a malformed filter fails whichever kind the catalog is, instead of finding nothing; a
    function a STAC API defines (pgstac's ``upper``) is named in the error, for that API can evaluate it.

    Examples
    --------
    >>> from stackcube.search import make_query
    >>> check_filter(make_query([], filter="eo:cloud_cover < 5"))
    Expr(eo:cloud_cover < 5)
    >>> check_filter(make_query([], filter={"op": "eqq", "args": [{"property": "eo:cloud_cover"}, 5]}))
    Traceback (most recent call last):
    ...
    stackcube.errors.SearchError: the filter {"args": [...], "op": "eqq"} of the search of ... calls 'eqq', ...
    """
    if q.filter is None:
        msg = "the search has no filter to check"
        raise ValueError(msg)
    return _expression(json.dumps(q.filter, sort_keys=True), q.catalog or "the given items")


_ARGUMENTS: dict[str, tuple[int, int | None]] = {
    **dict.fromkeys(("and", "or"), (2, None)),
    **dict.fromkeys(("not", "isNull", "casei", "accenti"), (1, 1)),
    "between": (3, 3),
    **dict.fromkeys(("=", "<>", "<", "<=", ">", ">=", "like", "in"), (2, 2)),
    **dict.fromkeys(("+", "-", "*", "/", "%", "^", "div"), (2, 2)),
    **dict.fromkeys(
        ("s_contains", "s_crosses", "s_disjoint", "s_equals", "s_intersects", "s_overlaps", "s_touches", "s_within"),
        (2, 2),
    ),
    **dict.fromkeys(
        (
            *("t_after", "t_before", "t_contains", "t_disjoint", "t_during", "t_equals", "t_finishedBy"),
            *("t_finishes", "t_intersects", "t_meets", "t_metBy", "t_overlappedBy", "t_overlaps", "t_startedBy"),
            "t_starts",
        ),
        (2, 2),
    ),
    **dict.fromkeys(("a_containedBy", "a_contains", "a_equals", "a_overlaps"), (2, 2)),
}
"""Every operator CQL2 defines (its JSON schema's), in the spelling cql2 gives it when it parses a filter, with the
fewest and most arguments the schema allows (None: no most). cql2 evaluates each of them. Anything else a filter
calls is a function of the server's (CQL2 allows them: pgstac's ``upper``) or a misspelling; cql2 parses and
validates such a call, then cannot evaluate it, and its ``matches`` raises for every item the same bare "Could not
reduce expression to boolean" as for a property the item lacks (cql2 0.6) -- a search finding nothing in silence."""

_QUERY_NAMES = {"eq": "=", "neq": "<>", "ne": "<>", "lt": "<", "lte": "<=", "le": "<=", "gt": ">", "gte": ">="}
"""Names of the ``query`` extension and of SQL that a CQL2 filter spells otherwise."""

_SPEC = "https://docs.ogc.org/is/21-065r2/21-065r2.html"
"""The CQL2 standard, for what a filter may say."""


@functools.lru_cache(maxsize=16)
def _expression(given: str, where: str) -> cql2.Expr:
    """A CQL2 filter (given as JSON: its text, or its JSON object) parsed and checked once, not once per item."""
    import cql2

    flt = json.loads(given)
    about = _named(flt, where)
    try:
        expr = cql2.Expr(flt)
    except Exception as exc:  # cql2 raises a bare Exception for text or JSON it cannot parse
        msg = f"{about} is not CQL2 ({_parse_error(exc)}); fix it (CQL2 text or JSON: {_SPEC})"
        raise SearchError(msg) from None
    for op, count in _operations(expr.to_json()):
        if op not in _ARGUMENTS:
            meant = _QUERY_NAMES.get(op.lower()) or next(iter(difflib.get_close_matches(op, _ARGUMENTS, n=1)), None)
            hint = f"did you mean {meant!r}? " if meant is not None else ""
            msg = (
                f"{about} calls {op!r}, which is not a CQL2 operator: cql2, which filters static catalogs and files, "
                f"cannot evaluate it, and would match no item; {hint}use CQL2's operators ({', '.join(_ARGUMENTS)}), "
                "or search a STAC API that defines the function"
            )
            raise SearchError(msg)
        least, most = _ARGUMENTS[op]
        if count < least or (most is not None and count > most):
            takes = f"at least {least}" if most is None else str(least)
            msg = f"{about} gives {op!r} {count} argument{'s' * (count != 1)}, and it takes {takes}; fix the filter"
            raise SearchError(msg)
    try:
        expr.validate()
    except cql2.ValidationError as exc:
        msg = f"{about} is not valid CQL2 (cql2: {str(exc).splitlines()[0][:300]}); fix it ({_SPEC})"
        raise SearchError(msg) from None
    # reduced without an item, every part that names no property is folded to its value: a part left is one cql2
    # cannot evaluate whatever the item (a text compared with a number, a division by zero)
    stuck = _unevaluated(expr.reduce().to_json(), top=True)
    if stuck is not None:
        msg = f"{about} asks what cql2 cannot evaluate for any item: {stuck}; fix that part of the filter"
        raise SearchError(msg)
    return expr


def _named(flt: object, where: str) -> str:
    """A filter as messages name it: its text quoted, or its JSON."""
    shown = repr(flt) if isinstance(flt, str) else json.dumps(flt, sort_keys=True)
    return f"the filter {shown} of the search of {where}"


def _parse_error(exc: Exception) -> str:
    """cql2's parse error in one line: pest draws the text with a caret under the place, on several lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    place = next((line.removeprefix("-->").strip() for line in lines if line.startswith("-->")), None)
    expected = next((line.removeprefix("=").strip() for line in lines if line.startswith("=")), None)
    if place is not None and expected is not None:
        return f"at line:column {place}, {expected}"
    return " ".join(lines)


def _operations(node: object) -> Iterator[tuple[str, int]]:
    """Every operation of a CQL2 JSON expression, outermost first: its operator and its number of arguments."""
    if isinstance(node, dict):
        if "op" in node:
            yield str(node["op"]), len(node.get("args") or [])
        for value in node.values():
            yield from _operations(value)
    elif isinstance(node, list):
        for value in node:
            yield from _operations(value)


def _unevaluated(node: object, *, top: bool = False) -> str | None:
    """The first operation of a reduced CQL2 JSON expression that names no property and still was not reduced, as
    text (or the expression, when it is ``top`` and reduced to something other than true, false or null); None when
    what is left waits only for properties."""
    import cql2

    if isinstance(node, dict) and "op" in node:
        args = node.get("args") or []
        if not any(_refers(a) for a in args):
            return cql2.Expr(node).to_text()
        return next((s for s in (_unevaluated(a) for a in args) if s is not None), None)
    if not top or node is None or isinstance(node, bool) or (isinstance(node, dict) and "property" in node):
        return None
    return json.dumps(node)


def _refers(node: object) -> bool:
    """Whether a CQL2 JSON expression names a property."""
    if isinstance(node, dict):
        return "property" in node or any(_refers(v) for v in node.values())
    if isinstance(node, list):
        return any(_refers(v) for v in node)
    return False


def _in_interval(item: pystac.Item, interval: str) -> bool:
    lo, hi = interval_of(interval)
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
