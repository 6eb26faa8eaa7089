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
