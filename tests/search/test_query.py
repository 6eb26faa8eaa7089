"""Search arguments (search._query): normalised once, stored in a cube without headers, run again as they were."""

from __future__ import annotations

import dataclasses
import json

import pytest

from stackcube.errors import SearchError
from stackcube.search import (
    Query,
    make_query,
    search_again,
    search_items,
    split_credentials,
    with_catalog_credentials,
)


def test_a_query_round_trips_without_its_headers(tmp_path) -> None:
    q = make_query(
        "https://example.com/stac",
        bbox=[27, -8, 27.5, -7.5],
        datetime="2020-06",
        collections="sentinel-2-l2a",
        filter="eo:cloud_cover < 20",
        max_items=10,
        headers={"Authorization": "Bearer secret"},
    )
    assert q.datetime == "2020-06-01T00:00:00Z/2020-06-30T23:59:59Z"
    assert q.collections == ("sentinel-2-l2a",)
    assert q.filter_lang == "cql2-text"
    stored = json.loads(json.dumps(q.to_dict()))
    assert "secret" not in json.dumps(stored)
    again = Query.from_dict(stored)
    assert again == dataclasses.replace(q, headers={})
    assert again.bbox == (27.0, -8.0, 27.5, -7.5)


def test_unknown_search_keywords_are_refused() -> None:
    with pytest.raises(TypeError, match=r"search_items\(\) got an unexpected keyword argument 'collection'"):
        search_items([], collection="sentinel-2-l2a")  # type: ignore[call-arg]
    with pytest.raises(SearchError, match="invalid search arguments"):
        search_items([], intersects="not a geometry")


@pytest.mark.parametrize(
    ("given", "searched"),
    [
        ("2020-06-01T00:00", "2020-06-01T00:00:00Z"),  # ISO 8601 without seconds, which pystac-client's text refuses
        ("2020-06-01 10:30", "2020-06-01T10:30:00Z"),
        ("2020-06-01T10:30+02:00", "2020-06-01T10:30:00+02:00"),
        ("2020-06-01T10:30/2020-06-02", "2020-06-01T10:30:00Z/2020-06-02T23:59:59Z"),
        ("20200601", "2020-06-01T00:00:00Z/2020-06-01T23:59:59Z"),  # a day, basic format: still the whole day
        ("2020-06", "2020-06-01T00:00:00Z/2020-06-30T23:59:59Z"),  # pystac-client's own forms, as it reads them
        ("2020-06-01/..", "2020-06-01T00:00:00Z/.."),
        (["2020-06-01T10:30", "2020-06-02"], "2020-06-01T10:30:00Z/2020-06-02T23:59:59Z"),  # a pair, as a list
    ],
)
def test_iso_datetimes_are_read_as_pystac_client_reads_datetime_objects(given, searched) -> None:
    assert make_query("https://example.com/stac", datetime=given).datetime == searched


@pytest.mark.parametrize(
    "given",
    ["06/2020", "last tuesday", "2020-13", "2020-06-01T25:00", "2020-W23", "2020-155"],  # no week narrowed to a day
)
def test_a_datetime_it_cannot_read_lists_the_forms_it_can(given) -> None:
    with pytest.raises(SearchError) as raised:
        search_items([], datetime=given)
    text = str(raised.value)
    assert text.startswith(f"datetime {given!r} is not a date, time or interval stackcube can read (")
    assert text.endswith(
        "); give a year (2020), a month (2020-06), a day (2020-06-01), a time (2020-06-01T10:30, "
        "2020-06-01T10:30:00Z), or an interval of two of them joined by / (2020-06-01/2020-07-31; .. for an open "
        "end: 2020-06-01/..)"
    )


def test_a_stored_search_runs_again_only_on_a_catalog(tmp_path) -> None:
    with pytest.raises(SearchError, match="nothing to search again"):
        search_again(Query(catalog=None))
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    found = search_again(Query(catalog=str(path), datetime="2020-06-01T00:00:00Z/2020-06-30T23:59:59Z"))
    assert (found.items, found.asked, found.whole) == ([], "the whole search", True)


def test_a_catalog_urls_credentials_are_kept_apart_from_what_is_stored() -> None:
    """Every parameter the signed-href rules call a credential (the Planetary Computer's ``subscription-key``
    among them) is split off the catalog URL: the query stores and prints the URL without it, and requests it
    with (``Query.url``); the other parameters stay as they were spelt."""
    fake = "fake-test-key"
    q = make_query(f"https://host/api/stac/v1?a=1%202&Subscription-Key={fake}&code=c0de", collections="c")
    assert q.catalog == "https://host/api/stac/v1?a=1%202"
    assert q.secret_params == {"Subscription-Key": fake, "code": "c0de"}
    assert q.url == f"https://host/api/stac/v1?a=1%202&Subscription-Key={fake}&code=c0de"
    shown = [repr(q), str(q), json.dumps(q.to_dict())]
    assert [text for text in shown if "https://host/api/stac/v1" in text] == shown
    assert not [text for text in shown if fake in text or "c0de" in text]
    assert Query.from_dict(q.to_dict()).secret_params == {}
    # however a query is made: one stored by an earlier stackcube gives its key to this run only
    old = Query.from_dict({"catalog": f"https://host/stac?subscription-key={fake}"})
    assert (old.catalog, old.secret_params) == ("https://host/stac", {"subscription-key": fake})
    assert fake not in json.dumps(old.to_dict())
    assert split_credentials("/data/items.json?subscription-key=x") == ("/data/items.json?subscription-key=x", {}, "")


@pytest.mark.parametrize("userinfo", ["reader:fake-pa55w0rd", "fake-T0k3nAsUserName", "r%40der:p%3Aw%2F"])
def test_a_catalog_urls_user_information_is_kept_apart_from_what_is_stored(userinfo) -> None:
    """``https://user:password@host/`` (or ``https://TOKEN@host/``): split off the catalog URL as its credential
    parameters are; the query stores and prints the URL without it, and requests it with (``Query.url``), as
    spelt."""
    q = make_query(f"https://{userinfo}@host:8443/stac?a=1&subscription-key=fake-key", collections="c")
    assert q.catalog == "https://host:8443/stac?a=1"
    assert (q.userinfo, q.secret_params) == (userinfo, {"subscription-key": "fake-key"})
    assert q.url == f"https://{userinfo}@host:8443/stac?a=1&subscription-key=fake-key"
    secret = userinfo.rpartition(":")[2]
    shown = [repr(q), str(q), json.dumps(q.to_dict())]
    assert [text for text in shown if "https://host:8443/stac?a=1" in text] == shown
    assert not [text for text in shown if secret in text or "fake-key" in text]
    assert Query.from_dict(q.to_dict()).userinfo == ""
    old = Query.from_dict({"catalog": f"https://{userinfo}@host:8443/stac"})  # stored by an earlier stackcube
    assert (old.catalog, old.userinfo) == ("https://host:8443/stac", userinfo)
    assert split_credentials(f"https://{userinfo}@host/stac") == ("https://host/stac", {}, userinfo)
    other = f"s3://{userinfo}@bucket/items.parquet"  # only http(s) URLs are split
    assert split_credentials(other) == (other, {}, "")


def test_a_stored_query_is_given_its_catalogs_password_again() -> None:
    stored = Query.from_dict(make_query("https://reader:old-pw@host/stac").to_dict())
    assert (stored.catalog, stored.userinfo, stored.url) == ("https://host/stac", "", "https://host/stac")
    again = with_catalog_credentials(stored, "https://reader:fake-new-pw@host/stac", None)
    assert (again.catalog, again.url) == ("https://host/stac", "https://reader:fake-new-pw@host/stac")
    assert "fake-new-pw" not in repr(again)
    with pytest.raises(SearchError, match=r"the catalog given, https://other/stac \(its credentials aside\)") as raised:
        with_catalog_credentials(stored, "https://reader:fake-new-pw@other/stac", None)
    assert "fake-new-pw" not in str(raised.value)


def test_a_stored_query_is_given_its_catalogs_credentials_again_only_for_its_own_catalog() -> None:
    stored = Query.from_dict(make_query("https://host/stac?subscription-key=old").to_dict())
    again = with_catalog_credentials(stored, "https://host/stac?subscription-key=fake-new-key", {"X-Trace": "1"})
    assert (again.url, again.headers) == ("https://host/stac?subscription-key=fake-new-key", {"X-Trace": "1"})
    assert with_catalog_credentials(stored, None, None) == stored
    with pytest.raises(SearchError) as raised:
        with_catalog_credentials(stored, "https://other/stac?subscription-key=fake-new-key", None)
    assert str(raised.value) == (
        "the catalog given, https://other/stac (its credentials aside), is not the one this cube searches, "
        "https://host/stac: give that catalog's URL with its credential parameters (such as subscription-key), or "
        "its headers"
    )
    assert "fake-new-key" not in str(raised.value)
