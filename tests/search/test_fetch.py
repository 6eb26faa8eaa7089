"""Reading a catalog's documents: credentials go to the origin they were given for, and no further."""

from __future__ import annotations

import json

import pytest

from stackcube.search._fetch import read_json
from stackcube.settings import current


@pytest.mark.network
def test_a_redirect_to_another_host_carries_none_of_the_catalogs_credentials(tmp_path) -> None:
    """A catalog URL with a password, and a key header, answered with a redirect to another host (as front doors
    send readers on to storage): the document is read there, without the basic authentication or the header,
    which requests and curl would not send to another host either."""
    from tests.services.host import run_host

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "front").mkdir()
    document = {"type": "FeatureCollection", "features": []}
    (tmp_path / "elsewhere" / "catalog.json").write_text(json.dumps(document))
    with run_host(tmp_path / "elsewhere") as elsewhere, run_host(tmp_path / "front", redirect=elsewhere.url) as front:
        url = front.url.replace("http://", "http://reader:fake-password@") + "/catalog.json"
        assert read_json(url, current(), {"Ocp-Apim-Subscription-Key": "fake-key"}) == document
        (asked,) = front.seen
        assert asked.headers["authorization"].startswith("Basic ")  # given to the catalog's own host
        assert asked.headers["ocp-apim-subscription-key"] == "fake-key"
        (sent_on,) = elsewhere.seen
        assert "authorization" not in sent_on.headers
        assert "ocp-apim-subscription-key" not in sent_on.headers


@pytest.mark.network
def test_a_static_catalog_behind_a_password_is_read_link_by_link_with_it(nginx, tmp_path) -> None:
    """A static catalog behind basic authentication (nginx's auth_basic in front of the files): its items, one
    document each, are read with the catalog URL's user information, as its root is; the items keep hrefs without
    it."""
    from stackcube.demo import write_demo_catalog
    from stackcube.search import search_items
    from tests.test_api import run_basic_auth_catalog

    write_demo_catalog(nginx.root / "guarded", dates=2, size=256)
    (tmp_path / "gate").mkdir()
    with run_basic_auth_catalog(nginx.url, tmp_path / "gate", "reader", "fake-password") as gate:
        url = gate.replace("http://", "http://reader:fake-password@") + "/guarded/catalog/catalog.json"
        _, items = search_items(url, progress=False)
    assert len(items) == 2
    hrefs = [a.get_absolute_href() or "" for item in items for a in item.assets.values()]
    assert hrefs
    assert all(h.startswith(gate) and "fake-password" not in h for h in hrefs)
