"""A stored search narrowed to the items that can be new or changed since an instant: what a refresh asks a STAC
API for, so that its search costs what changed, not the whole catalog.

Two ways, both documented in :func:`stackcube.refresh_cube`:

- on STAC ``updated`` (every stored item carries it, and the API takes CQL2 filters): ``updated >= instant`` added
  to the stored filter. A new item, and a stored one whose metadata changed, have a later ``updated``;
- else on ``datetime``: the stored interval starts at ``instant`` instead. Items dated before it (a late arrival
  older than the window, a reprocessed old scene) are not seen; a full search finds them.

``instant`` is the last search's start minus a safety window (clock skew, and the delay between an item's
``updated`` or acquisition and its appearance in the catalog).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pystac_client.conformance import ConformanceClasses

from stackcube.search._query import Query

__all__ = ["Since", "narrow"]


@dataclass(frozen=True, slots=True)
class Since:
    """Ask only for the items that can be new or changed since ``instant``."""

    instant: datetime
    """A timezone-aware instant: the last search's start minus the safety window."""
    updated: bool
    """Filter on STAC ``updated`` (every stored item carries it); False: narrow the ``datetime`` interval."""


def _stamp(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _filters(doc: dict[str, Any]) -> bool:
    """Whether a STAC API's landing page says it takes CQL2 JSON filters in an item search."""
    conforms = doc.get("conformsTo", [])
    item_search = any(ConformanceClasses.FILTER.pattern.fullmatch(c) for c in conforms)
    return item_search and any("cql2-json" in c for c in conforms)


def _instant(text: str) -> datetime | None:
    return None if text in {"", ".."} else datetime.fromisoformat(text)


def narrow(q: Query, since: Since, doc: dict[str, Any]) -> tuple[Query | None, str]:
    """``q`` asking only for what can be new or changed since ``since.instant`` on the STAC API whose landing page
    is ``doc``, and what it asks in words: ``q`` itself when it cannot be narrowed (the whole search, and why),
    None when no item can be new (the interval ends before the window)."""
    if q.max_items is not None:
        return q, "the whole search (it has max_items: a narrower search would count other items)"
    stamp = _stamp(since.instant)
    if since.updated:
        if not _filters(doc):
            return q, "the whole search (the STAC API takes no CQL2 filter on updated)"
        # A string, not {"timestamp": ...}: pgstac answers 500 to a timestamp compared with a property outside its
        # queryables, and compares ISO 8601 strings in order (so does stac-server's date field); an ``updated`` with
        # a fraction of a second or "+00:00" is misplaced by under a second, one in another zone by its offset: inside
        # the window either way. A pgstac that declares ``updated`` a date-time queryable reads both sides as
        # timestamps, and with its index (the README's statement) finds the items without reading the others
        clause: dict[str, Any] = {"op": ">=", "args": [{"property": "updated"}, stamp]}
        flt: Any = q.filter
        if isinstance(flt, str):
            import cql2

            flt = cql2.Expr(flt).to_json()
        combined = clause if flt is None else {"op": "and", "args": [flt, clause]}
        return dataclasses.replace(q, filter=combined, filter_lang="cql2-json"), f"items updated since {stamp}"
    start_text, _, end_text = (q.datetime or "../..").partition("/")
    if not end_text:  # one instant: nothing to narrow
        return q, "the whole search (its datetime is one instant)"
    start, end = _instant(start_text), _instant(end_text)
    if start is not None and start >= since.instant:
        return q, "the whole search (it starts after the window)"
    if end is not None and end < since.instant:
        return None, f"nothing: the search ends before {stamp}"
    return dataclasses.replace(q, datetime=f"{stamp}/{end_text or '..'}"), f"items dated since {stamp}"
