"""Running a search: what ``each`` makes of every item, as the items arrive, whatever kind of catalog it is."""

from __future__ import annotations

import gc
import json
import weakref

import pytest

from stackcube.search import search_items

pytestmark = pytest.mark.corpus


@pytest.mark.parametrize("kind", ["item collection", "stac-geoparquet", "stac api"])
def test_each_makes_what_the_search_keeps_of_every_item_in_order(kind, tmp_path, twins_35mnm, request) -> None:
    """``search_items(each=...)`` keeps what ``each`` returns for every item the search finds, in the catalog's
    order, called once per item after the modifier, as the items arrive: the search holds no item it has passed to
    ``each`` (so a build can keep less of each item than all of it)."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    catalog: str
    search: dict = {}
    if kind == "item collection":
        catalog = str(tmp_path / "items.json")
        (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": twins_35mnm}))
    elif kind == "stac-geoparquet":
        catalog = str(tmp_path / "items.parquet")
        to_parquet(parse_stac_items_to_arrow(twins_35mnm), catalog)
    else:
        catalog = request.getfixturevalue("stac_api").url
        search = {"collections": ["sentinel-2-l2a"]}
    if kind == "stac api":
        search["limit"] = 2  # pages of two items
    _, whole = search_items(catalog, datetime="2020-06-01/2020-07-15", **search)
    assert 4 < len(whole) < len(twins_35mnm)  # the search matched several items, not all
    seen: list[str] = []

    def modifier(found):  # pystac-client gives it a page's dict, the static search an item
        for item in found.get("features", [found]) if isinstance(found, dict) else [found.to_dict()]:
            item["properties"]["modified"] = True
        if not isinstance(found, dict):
            found.properties["modified"] = True

    made: list[weakref.ref] = []

    def each(item):
        assert item.properties["modified"]  # the modifier came first
        seen.append(item.id)
        gc.collect()
        # called as the items arrive, made one at a time: the search keeps none it has passed on (pystac-client's
        # own items would stay in its client's cache, a file's items would stay in a list)
        assert all(made() is None for made in made)
        made.append(weakref.ref(item))
        return ("kept", item.id)

    _, kept = search_items(catalog, datetime="2020-06-01/2020-07-15", modifier=modifier, each=each, **search)
    assert kept == [("kept", i.id) for i in whole]
    assert seen == [i.id for i in whole]
