"""The pgstac STAC API fixture, used for real: pystac-client searches with every parameter stackcube passes on."""

from __future__ import annotations

import pytest
from pystac_client import Client

from tests.services.proxy import run_proxy

pytestmark = [pytest.mark.network, pytest.mark.corpus]

BBOX_35MNM = [26.9, -8.2, 27.9, -7.2]


def test_search_by_bbox_datetime_and_collection(stac_api, twins_35mnm) -> None:
    client = Client.open(stac_api.url)
    search = client.search(collections=["sentinel-2-l2a"], bbox=BBOX_35MNM, datetime="2020-06-01/2020-07-31")
    ids = {item.id for item in search.items()}
    assert ids == {item["id"] for item in twins_35mnm}
    july = {item.id for item in client.search(collections=["sentinel-2-l2a"], datetime="2020-07-01/2020-07-31").items()}
    assert july == {i["id"] for i in twins_35mnm if i["properties"]["datetime"].startswith("2020-07")}
    assert 0 < len(july) < len(ids)
    assert not list(client.search(collections=["sentinel-2-l2a"], bbox=[0, 0, 1, 1]).items())


def test_cql2_filter(stac_api, twins_35mnm) -> None:
    client = Client.open(stac_api.url)
    cql2 = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 5]}
    found = {i.id for i in client.search(collections=["sentinel-2-l2a"], filter=cql2, filter_lang="cql2-json").items()}
    expected = {i["id"] for i in twins_35mnm if i["properties"]["eo:cloud_cover"] < 5}
    assert found == expected
    assert 0 < len(found) < len(twins_35mnm)


def test_paging_with_a_limit_smaller_than_the_result(stac_api, twins_35mnm) -> None:
    with run_proxy(stac_api.url) as proxy:
        client = Client.open(proxy.url)
        proxy.reset()
        items = list(client.search(collections=["sentinel-2-l2a"], limit=2).items())
        assert len(items) == len(twins_35mnm) == 13
        assert len({i.id for i in items}) == 13
        assert proxy.stats["requests"] >= 7  # 13 items, 2 per page


def test_items_point_at_twins_served_by_nginx(stac_api, nginx) -> None:
    client = Client.open(stac_api.url)
    item = next(client.search(collections=["sentinel-2-l2a"], max_items=1).items())
    assert item.assets["B04"].href.startswith(nginx.url)
    assert item.assets["B04"].extra_fields["proj:shape"] == [1098, 1098]
