"""narrow: what a refresh asks a STAC API for, decided from the stored query and the API's landing page."""

from __future__ import annotations

from datetime import UTC, datetime

import cql2
import pytest

from stackcube.search import Query, Since
from stackcube.search._since import narrow

# what stac-fastapi-pgstac's landing page says about filters (tests/services/pgstac.py runs it)
FILTERS = {
    "conformsTo": [
        "https://api.stacspec.org/v1.0.0/item-search",
        "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    ]
}
NO_FILTERS = {"conformsTo": ["https://api.stacspec.org/v1.0.0/item-search"]}
INSTANT = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
UPDATED = Since(INSTANT, updated=True)
DATED = Since(INSTANT, updated=False)


def _matches(flt: dict, updated: str, cloud: float) -> bool:
    return bool(cql2.Expr(flt).matches({"properties": {"updated": updated, "eo:cloud_cover": cloud}}))


@pytest.mark.parametrize(
    "given", [None, {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]}, "eo:cloud_cover < 20"]
)
def test_updated_since_is_added_to_the_stored_filter(given) -> None:
    q = Query(
        "http://api", collections=("s2",), filter=given, filter_lang="cql2-text" if isinstance(given, str) else None
    )
    asked, words = narrow(q, UPDATED, FILTERS)
    assert asked is not None
    assert words == "items updated since 2026-11-25T20:00:00Z"
    assert asked.filter_lang == "cql2-json"
    assert (asked.collections, asked.datetime) == (q.collections, q.datetime)
    assert _matches(asked.filter, "2026-11-25T20:00:01.5Z", 10)
    assert not _matches(asked.filter, "2026-11-25T19:59:59Z", 10)
    assert _matches(asked.filter, "2026-11-26T00:00:00Z", 30) is (given is None)  # the stored filter still holds


def test_no_filter_conformance_or_max_items_means_the_whole_search() -> None:
    q = Query("http://api", collections=("s2",))
    assert narrow(q, UPDATED, NO_FILTERS) == (q, "the whole search (the STAC API takes no CQL2 filter on updated)")
    limited = Query("http://api", max_items=10)
    asked, words = narrow(limited, UPDATED, FILTERS)
    assert asked is limited
    assert "max_items" in words


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, "2026-11-25T20:00:00Z/.."),
        ("../..", "2026-11-25T20:00:00Z/.."),
        ("2020-01-01T00:00:00Z/..", "2026-11-25T20:00:00Z/.."),
        ("2020-01-01T00:00:00Z/2026-12-31T23:59:59Z", "2026-11-25T20:00:00Z/2026-12-31T23:59:59Z"),
    ],
)
def test_dated_since_narrows_the_stored_interval(stored, expected) -> None:
    asked, words = narrow(Query("http://api", datetime=stored), DATED, NO_FILTERS)  # no filter needed
    assert asked is not None
    assert asked.datetime == expected
    assert words == "items dated since 2026-11-25T20:00:00Z"


def test_an_interval_the_window_cannot_narrow() -> None:
    ended = Query("http://api", datetime="2020-06-01T00:00:00Z/2020-06-30T23:59:59Z")
    assert narrow(ended, DATED, FILTERS) == (None, "nothing: the search ends before 2026-11-25T20:00:00Z")
    later = Query("http://api", datetime="2026-11-26T00:00:00Z/..")
    assert narrow(later, DATED, FILTERS)[0] is later
    instant = Query("http://api", datetime="2026-11-26T00:00:00Z")
    assert narrow(instant, DATED, FILTERS)[0] is instant
