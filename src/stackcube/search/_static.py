"""Static catalogs, collections, ItemCollection files and item lists, filtered as a STAC API would filter them."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pystac
import shapely.geometry

from stackcube.errors import SearchError
from stackcube.search._fetch import read_json
from stackcube.search._query import CatalogLike, Query
from stackcube.settings import Settings

__all__ = ["interval_of", "matches", "static_items"]


def static_items(catalog: CatalogLike, doc: dict[str, Any] | None, settings: Settings) -> Iterable[pystac.Item]:
    """Every item of a static input (``doc``: its document, when already read), unfiltered."""
    if isinstance(catalog, pystac.ItemCollection):
        return list(catalog)
    if not isinstance(catalog, str | os.PathLike):
        return [
            i if isinstance(i, pystac.Item) else pystac.Item.from_dict(dict(i), preserve_dict=False) for i in catalog
        ]
    href = os.fspath(catalog)
    doc = doc if doc is not None else read_json(href, settings)
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
        expr = _expression(json.dumps(q.filter, sort_keys=True))
        data = item.to_dict(transform_hrefs=False)
        if data["properties"].get("datetime") is None and "start_datetime" in data["properties"]:
            # as pgstac: an item of a start and end has the start as its ``datetime`` in a filter
            data["properties"]["datetime"] = data["properties"]["start_datetime"]
        try:
            if not expr.matches(data):
                return False
        except Exception:  # cql2 raises a bare Exception for a property the item lacks
            return False  # unknown, as SQL's NULL: a STAC API (pgstac) does not return the item either
    return True


@functools.lru_cache(maxsize=16)
def _expression(given: str) -> Any:
    """A CQL2 filter (given as JSON: its text, or its JSON object) parsed once, not once per item matched."""
    import cql2

    return cql2.Expr(json.loads(given))


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
