"""Static inputs are filtered as a STAC API would: ids, intersects, datetime ranges, query, CQL2, max_items."""

from __future__ import annotations

import pytest

from stackcube.errors import NothingFoundError, SearchError
from stackcube.search import Query, make_query, require_items, search_items
from stackcube.search._static import check_filter
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


# Filters cql2 parses and validates (CQL2 allows calls of functions a server defines), then cannot evaluate: alone,
# cql2 would match no item and the search would find nothing instead of failing
UNKNOWN_OPERATOR = {"op": "eqq", "args": [{"property": "eo:cloud_cover"}, 5]}
MISSPELT_FUNCTION = {"op": "=", "args": [{"op": "uppr", "args": [{"property": "platform"}]}, "SENTINEL-2A"]}
MISSPELT_PREDICATE = {
    "op": "t_intersect",
    "args": [{"property": "datetime"}, {"interval": ["2020-06-01T00:00:00Z", "2020-08-01T00:00:00Z"]}],
}
QUERY_NAME = {"op": "lt", "args": [{"property": "eo:cloud_cover"}, 5]}
WRONG_COUNT = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 5, 6]}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (UNKNOWN_OPERATOR, r"calls 'eqq', which is not a CQL2 operator.*use CQL2's operators \(and, or, not"),
        (MISSPELT_FUNCTION, r"calls 'uppr', which is not a CQL2 operator"),
        (MISSPELT_PREDICATE, r"calls 't_intersect'.*did you mean 't_intersects'\?"),
        (QUERY_NAME, r"calls 'lt'.*did you mean '<'\?"),
        ("eo:cloud_cover < 5 AND foo(platform) = 'x'", r"calls 'foo', which is not a CQL2 operator"),
    ],
    ids=["unknown-operator", "misspelt-function", "misspelt-predicate", "query-extension-name", "text-function"],
)
def test_a_filter_cql2_cannot_evaluate_fails_instead_of_finding_nothing(items, bad, says) -> None:
    import cql2

    cql2.Expr(bad).validate()  # cql2 accepts each of them: the check is stackcube's
    with pytest.raises(Exception, match="Could not reduce expression to boolean"):
        cql2.Expr(bad).matches(items[0])  # and alone it answers as for a property the item lacks
    with pytest.raises(SearchError, match=rf"^the filter .* of the search of the given items {says}"):
        search_items(items, filter=bad)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (WRONG_COUNT, r"gives '<' 3 arguments, and it takes 2; fix the filter"),
        ({"op": "between", "args": [{"property": "eo:cloud_cover"}, 5]}, r"gives 'between' 2 arguments.*takes 3"),
        ({"op": "and", "args": [{"op": "<", "args": [{"property": "eo:cloud_cover"}, 5]}]}, r"takes at least 2"),
        ({"op": "in", "args": [{"property": "eo:cloud_cover"}, 5]}, r"is not valid CQL2 \(cql2: .*\); fix it"),
        ({"op": "<", "args": ["five", 5]}, r"cannot evaluate for any item: 'five' < 5; fix that part"),
        ("eo:cloud_cover <<< 5", r"eo:cloud_cover <<< 5"),
        ({"op": 5, "args": []}, r"is not CQL2 \(.*\); fix it"),
    ],
    ids=["comparison-of-3", "between-of-2", "and-of-1", "in-without-a-list", "text-against-number", "text", "json"],
)
def test_a_malformed_filter_fails_before_any_item_is_matched(items, bad, says) -> None:
    with pytest.raises(SearchError, match=says):
        search_items(items, filter=bad)
    with pytest.raises(SearchError, match=says):
        check_filter(Query(catalog=None, filter=bad))  # no item needed: what is checked is the filter alone


def test_a_property_an_item_lacks_still_leaves_the_item_out(items) -> None:
    lacking = [{**i, "properties": {k: v for k, v in i["properties"].items() if k != "eo:cloud_cover"}} for i in items]
    mixed = [items[0], lacking[1], items[2]]
    _, found = search_items(mixed, filter="NOT (eo:cloud_cover < 0)")
    assert [i.id for i in found] == [items[0]["id"], items[2]["id"]]


EXAMPLES = {
    "and": {"op": "and", "args": [{"op": "=", "args": [{"property": "n"}, 3]}, True]},
    "or": {"op": "or", "args": [{"op": "=", "args": [{"property": "n"}, 3]}, False]},
    "not": {"op": "not", "args": [{"op": "=", "args": [{"property": "n"}, 3]}]},
    "isNull": {"op": "isNull", "args": [{"property": "n"}]},
    "casei": {"op": "=", "args": [{"op": "casei", "args": [{"property": "s"}]}, {"op": "casei", "args": ["ABC"]}]},
    "accenti": {
        "op": "=",
        "args": [{"op": "accenti", "args": [{"property": "s"}]}, {"op": "accenti", "args": ["ábc"]}],
    },
    "between": {"op": "between", "args": [{"property": "n"}, 1, 5]},
    "like": {"op": "like", "args": [{"property": "s"}, "a%"]},
    "in": {"op": "in", "args": [{"property": "n"}, [1, 3]]},
    **{op: {"op": op, "args": [{"property": "n"}, 3]} for op in ("=", "<>", "<", "<=", ">", ">=")},
    **{
        op: {"op": "=", "args": [{"op": op, "args": [{"property": "n"}, 2]}, 1]}
        for op in ("+", "-", "*", "/", "%", "^", "div")
    },
    **{
        op: {
            "op": op,
            "args": [{"property": "geometry"}, {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 0]]]}],
        }
        for op in ("s_contains", "s_crosses", "s_disjoint", "s_equals", "s_intersects", "s_overlaps", "s_touches")
    },
    "s_within": {"op": "s_within", "args": [{"property": "geometry"}, {"bbox": [0, 0, 4, 4]}]},
    **{
        op: {
            "op": op,
            "args": [{"property": "datetime"}, {"interval": ["2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"]}],
        }
        for op in (
            *("t_after", "t_before", "t_contains", "t_disjoint", "t_during", "t_equals", "t_finishedBy", "t_finishes"),
            *("t_intersects", "t_meets", "t_metBy", "t_overlappedBy", "t_overlaps", "t_startedBy", "t_starts"),
        )
    },
    **{op: {"op": op, "args": [{"property": "a"}, ["x"]]} for op in ("a_containedBy", "a_contains", "a_equals")},
    "a_overlaps": {"op": "a_overlaps", "args": [{"property": "a"}, ["x", "y"]]},
}
"""An example of each operator stackcube lets through, on ITEM."""
ITEM = {
    "type": "Feature",
    "id": "one",
    "geometry": {"type": "Point", "coordinates": [1, 2]},
    "properties": {"datetime": "2020-06-01T00:00:00Z", "n": 3, "s": "abc", "a": ["x", "y"]},
}


@pytest.mark.parametrize("op", sorted(EXAMPLES))
def test_every_operator_let_through_is_one_cql2_evaluates(op) -> None:
    import cql2

    from stackcube.search._static import _ARGUMENTS

    assert set(EXAMPLES) == set(_ARGUMENTS)
    check_filter(make_query([], filter=EXAMPLES[op]))
    assert isinstance(cql2.Expr(EXAMPLES[op]).matches(ITEM), bool)  # reduced to true or false, not left unknown


@pytest.mark.network
@pytest.mark.parametrize(
    "bad",
    [UNKNOWN_OPERATOR, MISSPELT_FUNCTION, MISSPELT_PREDICATE, WRONG_COUNT, "eo:cloud_cover <<< 5"],
    ids=["unknown-operator", "misspelt-function", "misspelt-predicate", "wrong-count", "text"],
)
def test_a_stac_api_refuses_the_same_filters(stac_api, twins_35mnm, use_settings, bad) -> None:
    # (not QUERY_NAME: pgstac also reads the query extension's names, "lt" as "<"; CQL2 and cql2 do not)
    use_settings(retries=0)  # pgstac answers them with a 500, which stackcube would try again
    with pytest.raises(SearchError):
        search_items(stac_api.url, collections=["sentinel-2-l2a"], filter=bad)
    with pytest.raises(SearchError, match=r"the filter|filter': 'eo:cloud_cover <<< 5'"):
        search_items(twins_35mnm, collections=["sentinel-2-l2a"], filter=bad)


@pytest.mark.network
def test_a_function_only_the_stac_api_defines_is_named(stac_api, twins_35mnm) -> None:
    upper = "upper(platform) = 'SENTINEL-2A'"
    _, found = search_items(stac_api.url, collections=["sentinel-2-l2a"], filter=upper)
    assert {i.id for i in found} == {
        i["id"] for i in twins_35mnm if i["properties"]["platform"].upper() == "SENTINEL-2A"
    }
    assert found  # (pgstac defines upper: the same filter is right there)
    with pytest.raises(SearchError, match=r"calls 'upper'.*or search a STAC API that defines the function"):
        search_items(twins_35mnm, collections=["sentinel-2-l2a"], filter=upper)
