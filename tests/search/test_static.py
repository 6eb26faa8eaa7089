"""Static inputs are filtered as a STAC API would: ids, intersects, datetime ranges, query, CQL2, max_items."""

from __future__ import annotations

import pytest

from stackcube.errors import NothingFoundError, SearchError
from stackcube.search import require_items, search_items
from tests.twins import corpus_items

pytestmark = pytest.mark.corpus


@pytest.fixture
def items(corpus):
    return corpus_items("site2-2020_jun_jul-35MNM.geojson")


def test_ids_and_max_items(items) -> None:
    wanted = [items[3]["id"], items[5]["id"]]
    _, found = search_items(items, ids=wanted)
    assert sorted(i.id for i in found) == sorted(wanted)
    _, first = search_items(items, max_items=4)
    assert len(first) == 4


def test_datetime_month_is_the_whole_month(items) -> None:
    q, found = search_items(items, datetime="2020-07")
    assert q.datetime == "2020-07-01T00:00:00Z/2020-07-31T23:59:59Z"
    assert {i.id for i in found} == {i["id"] for i in items if i["properties"]["datetime"].startswith("2020-07")}
    _, open_end = search_items(items, datetime="2020-07-15/..")
    later = {i["id"] for i in items if i["properties"]["datetime"] >= "2020-07-15"}
    assert later  # (the fixture has items after the 15th, so the next line can fail)
    assert {i.id for i in open_end} == later


def test_intersects_and_bbox(items) -> None:
    inside = {"type": "Point", "coordinates": [27.4, -7.7]}
    _, found = search_items(items, intersects=inside)
    assert len(found) == len(items)
    _, none = search_items(items, bbox=[0, 0, 1, 1])
    assert none == []


def test_query_and_cql2_text(items) -> None:
    _, by_query = search_items(items, query={"eo:cloud_cover": {"lt": 5}})
    _, by_cql2 = search_items(items, filter="eo:cloud_cover < 5")
    assert {i.id for i in by_query} == {i.id for i in by_cql2}
    assert 0 < len(by_query) < len(items)
    with pytest.raises(SearchError, match="not one of"):
        search_items(items, query={"eo:cloud_cover": {"like": 5}})


def test_empty_search_names_the_search(items) -> None:
    q, found = search_items(items, bbox=[0, 0, 1, 1], datetime="2020")
    with pytest.raises(NothingFoundError, match=r"matched no items.*bbox"):
        require_items(found, q)


def test_unreadable_catalog(tmp_path) -> None:
    with pytest.raises(SearchError, match="could not read a STAC document"):
        search_items(str(tmp_path / "missing.json"))
    (tmp_path / "x.json").write_text('{"type": "Something"}')
    with pytest.raises(SearchError, match="is not a STAC API, catalog"):
        search_items(str(tmp_path / "x.json"))
