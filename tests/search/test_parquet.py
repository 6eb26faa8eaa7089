"""stac-geoparquet inputs: filters pushed down to pyarrow, answers equal to the same items in an ItemCollection and
in a STAC API (pgstac), read locally, from a directory, and from S3."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackcube.errors import SearchError
from stackcube.search import make_query, search_items
from tests.conftest import CORPUS

pytestmark = pytest.mark.corpus

QUERIES = [
    {},
    {"bbox": (-120.0, 25.0, -60.0, 45.0)},  # Utah, California, Puerto Rico
    {"bbox": (170.0, -5.0, 180.0, 60.0)},  # io-lulc zones at the antimeridian
    {"intersects": {"type": "Polygon", "coordinates": [[[147, -44], [152, -44], [152, -38], [147, -38], [147, -44]]]}},
    {"datetime": "2020-01-01/2021-12-31"},  # instants and start/end ranges
    {"datetime": "2024-04"},
    {"datetime": "../2014-01-01"},
    {"collections": ["gp-landsat-c2-l2", "gp-naip"]},
    {"ids": ["60N-2023", "LC09_L2SP_089088_20240417_02_T2", "nope"]},
    {"filter": '"eo:cloud_cover" < 30'},
    {"filter": "platform = 'landsat-9' OR \"eo:cloud_cover\" > 90"},
    {"filter": 'NOT ("eo:cloud_cover" < 1)'},  # the items without cloud cover are not returned by pgstac either
    {"filter": {"op": "in", "args": [{"property": "platform"}, ["landsat-5", "TanDEM-X"]]}},
    {"filter": {"op": "between", "args": [{"property": "eo:cloud_cover"}, 0.1, 30]}},
    {
        "filter": {
            "op": "s_intersects",
            "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [-65.6, 18.35]}],
        }
    },
    {"filter": {"op": "t_intersects", "args": [{"property": "datetime"}, {"interval": ["2024-04-18", "2024-04-20"]}]}},
    {"filter": {"op": ">=", "args": [{"property": "datetime"}, {"timestamp": "2022-06-01T00:00:00Z"}]}},
    {"bbox": (-180.0, -90.0, 0.0, 90.0), "datetime": "2013/2022", "filter": '"eo:cloud_cover" <= 2'},
]


def _ids(items) -> list[str]:
    return sorted(i.id for i in items)


def _content(item) -> dict:
    """An item's content as stac-geoparquet keeps it: no null fields (a table cannot tell them from absent ones,
    ``datetime`` aside), instants as instants (rustac writes ``+00:00`` where the producer wrote ``Z``)."""
    from datetime import datetime

    def plain(value, key=""):
        if isinstance(value, dict):
            return {k: plain(v, k) for k, v in value.items() if v is not None or k == "datetime"}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, str) and key.endswith(("datetime", "created", "updated")):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value

    return plain(item.to_dict(transform_hrefs=False))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The 48 real Planetary Computer items of the stac-geoparquet corpus (ten collections; instants and ranges;
    2D and 3D bboxes; items across the antimeridian), renamed into ``gp-`` collections, as stac-geoparquet writes
    them: a directory of one file per collection (as Planetary Computer publishes), and the 44 items with 2D bboxes
    in one file of small row groups ordered by time (neither stac-geoparquet's nor rustac's writer mixes 2D and 3D
    bboxes in one file); with the ItemCollections they came from."""
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    root = tmp_path_factory.mktemp("geoparquet")
    items = []
    for path in sorted((CORPUS / "stac" / "stac-geoparquet").glob("*-pc.json")):
        for item in json.loads(path.read_text()):
            item.pop("links", None)
            item["collection"] = "gp-" + item["collection"]
            items.append(item)
    items.sort(key=lambda i: i["properties"].get("datetime") or i["properties"]["start_datetime"])
    flat = [i for i in items if len(i["bbox"]) == 4]
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": flat}))
    (root / "all.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    to_parquet(parse_stac_items_to_arrow(flat), root / "items.parquet")
    pq.write_table(pq.read_table(root / "items.parquet"), root / "items.parquet", row_group_size=6)  # 8 groups
    (root / "by-collection").mkdir()
    for collection in sorted({i["collection"] for i in items}):
        mine = [i for i in items if i["collection"] == collection]
        to_parquet(parse_stac_items_to_arrow(mine), root / "by-collection" / f"{collection}.parquet")
    return root, items


@pytest.mark.parametrize("query", QUERIES, ids=[json.dumps(q)[:60] for q in QUERIES])
def test_filters_answer_as_the_item_collection_does(published, query) -> None:
    root, _ = published
    _, expected = search_items(str(root / "items.json"), **query)
    _, from_file = search_items(str(root / "items.parquet"), **query)
    _, from_directory = search_items(str(root / "by-collection"), **query)
    _, all_expected = search_items(str(root / "all.json"), **query)
    assert [i.id for i in from_file] == [i.id for i in expected]
    assert _ids(from_directory) == _ids(all_expected)
    assert [_content(i) for i in from_file] == [_content(i) for i in expected]


@pytest.mark.network
def test_filters_answer_as_the_stac_api_does(published, stac_api) -> None:
    """pgstac, loaded with the same items, returns the same ids for every query."""
    root, items = published
    collection = json.loads((CORPUS / "stac" / "odc-stac" / "sentinel-2-l2a.collection.json").read_text())
    names = sorted({i["collection"] for i in items})
    stac_api.load([{**collection, "id": name, "links": []} for name in names], items)
    answered = 0
    for given in QUERIES:
        query = {"collections": names, **given}  # the API holds other collections too
        _, from_api = search_items(stac_api.url, **query)
        _, from_directory = search_items(str(root / "by-collection"), **query)
        assert _ids(from_directory) == _ids(from_api), query
        answered += bool(from_api)
    assert answered >= len(QUERIES) - 2  # the queries select something


def test_only_rows_that_may_match_become_items(published) -> None:
    """The pushdown: for selective searches, fewer rows become items than the file holds, and never fewer than
    match."""
    from stackcube.search._parquet import parquet_items
    from stackcube.settings import current

    root, items = published
    items = json.loads((root / "items.json").read_text())["features"]
    for query in ({"bbox": (-120.0, 25.0, -60.0, 45.0)}, {"datetime": "2024-04"}, {"filter": '"eo:cloud_cover" < 30'}):
        q = make_query(str(root / "items.parquet"), **query)
        candidates = list(parquet_items(str(root / "items.parquet"), q, current()))
        _, matching = search_items(str(root / "items.json"), **query)
        assert {i.id for i in matching} <= {i.id for i in candidates}
        assert len(candidates) < len(items) / 2, query


def test_a_cube_planned_from_geoparquet_equals_one_from_its_items(tmp_path, twins_35mnm) -> None:
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    import stackcube

    to_parquet(parse_stac_items_to_arrow(twins_35mnm), tmp_path / "twins.parquet")
    (tmp_path / "twins.json").write_text(json.dumps({"type": "FeatureCollection", "features": twins_35mnm}))
    args = {"datetime": "2020-07", "assets": ["B04", "B08"], "progress": False, "filter": "eo:cloud_cover < 60"}
    from_json = stackcube.plan_cube(str(tmp_path / "twins.json"), **args)
    from_parquet = stackcube.plan_cube(str(tmp_path / "twins.parquet"), **args)
    assert [a.items for a in from_parquet.arrays] == [a.items for a in from_json.arrays]
    assert [s.manifest.to_dict() for s in from_parquet.sources] == [s.manifest.to_dict() for s in from_json.sources]
    assert from_parquet.query.catalog == str((tmp_path / "twins.parquet").resolve())  # what a refresh searches


@pytest.mark.network
def test_geoparquet_on_s3_is_read_in_place(published, s3) -> None:
    root, _ = published
    s3.client().upload_file(str(root / "items.parquet"), s3.repos_bucket, "catalogs/items.parquet")
    query = {"bbox": (-120.0, 25.0, -60.0, 45.0), "datetime": "2013/2023"}
    _, expected = search_items(str(root / "items.json"), **query)
    _, found = search_items(f"s3://{s3.repos_bucket}/catalogs/items.parquet", **query)
    assert found
    assert [i.id for i in found] == [i.id for i in expected]


def test_what_is_not_stac_geoparquet_is_explained(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"name": ["a"], "value": [1]}), tmp_path / "table.parquet")
    with pytest.raises(SearchError, match=r"table\.parquet is Parquet but not stac-geoparquet"):
        search_items(str(tmp_path / "table.parquet"))
    with pytest.raises(SearchError, match=r"missing\.parquet: no such stac-geoparquet file"):
        search_items(str(tmp_path / "missing.parquet"))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SearchError, match=r"broken\.parquet"):
        search_items(str(tmp_path / "broken.parquet"))


def test_a_cql2_filter_on_a_property_some_items_lack_leaves_them_out(published) -> None:
    """As pgstac (SQL NULL): ``NOT (cloud < 1)`` does not return items without a cloud cover."""
    root, items = published
    _, found = search_items(str(root / "all.json"), filter='NOT ("eo:cloud_cover" < 1)')
    assert {i.id for i in found} == {
        i["id"] for i in items if "eo:cloud_cover" in i["properties"] and not i["properties"]["eo:cloud_cover"] < 1
    }


@pytest.mark.network
def test_a_missing_file_on_s3_is_named_at_once(s3, use_settings) -> None:
    """Not found is an answer, not a transient failure: no retries. Counted at a proxy in front of the S3 server,
    asking with retries costs the requests of asking with none (two missing files: nothing read is cached)."""
    from stackcube.settings import S3Settings
    from tests.services.proxy import run_proxy

    requests = []
    with run_proxy(s3.endpoint, dialect="s3") as proxy:
        use_settings(s3=S3Settings(proxy.url, "us-east-1", signed=True))
        for retries, name in ((0, "missing"), (5, "missing-too")):
            use_settings(retries=retries)
            proxy.reset()
            with pytest.raises(SearchError, match=rf"{name}\.parquet: could not read stac-geoparquet") as raised:
                search_items(f"s3://{s3.repos_bucket}/catalogs/{name}.parquet")
            assert not raised.value.transient
            requests.append(proxy.stats["requests"])
    assert 1 <= requests[1] <= requests[0], requests


@pytest.mark.network
@pytest.mark.parametrize("fault", ["truncate", "reset", "503"])
def test_geoparquet_on_s3_is_read_through_answers_cut_short(published, s3, use_settings, fault) -> None:
    """A read the host cuts short (half a body, a dropped connection, a 503) is retried, and the search finds what
    it finds in the local file. (A clean-clone CI run once failed here with pyarrow's "Failed to read ... only 0
    bytes returned", an OSError parquet_items now takes as a transient failure like DuckDB's own; these faults have
    not provoked it again.)"""
    from stackcube.settings import S3Settings
    from tests.services.proxy import run_proxy

    root, _ = published
    s3.client().upload_file(str(root / "items.parquet"), s3.repos_bucket, f"catalogs/cut-{fault}.parquet")
    query = {"bbox": (-120.0, 25.0, -60.0, 45.0), "datetime": "2013/2023"}
    _, expected = search_items(str(root / "items.json"), **query)
    with run_proxy(s3.endpoint, dialect="s3", fault_rate=0.3, faults=(fault,), seed=3) as proxy:
        use_settings(s3=S3Settings(proxy.url, "us-east-1", signed=True), retries=10)
        _, found = search_items(f"s3://{s3.repos_bucket}/catalogs/cut-{fault}.parquet", **query)
        assert proxy.stats[f"fault:{fault}"] > 0
    assert [i.id for i in found] == [i.id for i in expected]


# --- credentials in a stac-geoparquet URL: sent, never quoted ---------------------------------------------------


@contextlib.contextmanager
def _listing_host(root: Path) -> Iterator[tuple[str, list[str]]]:
    """A WebDAV host serving ``root``: PROPFIND lists a folder (as Apache's mod_dav or nginx's dav_ext do), HEAD
    and GET serve its files whole. Yields its URL and the request lines it saw."""
    from email.utils import formatdate
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.services import serving

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            seen.append(self.requestline)

        def _send(self, status: int, body: bytes, kind: str = "application/octet-stream") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = root / self.path.split("?", 1)[0].lstrip("/")
            if path.is_file():
                self._send(200, path.read_bytes())
            else:
                self._send(404, b"")

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_PROPFIND(self) -> None:
            folder = self.path.split("?", 1)[0].rstrip("/")
            entries = [(f"{folder}/", "<D:collection/>", 0)] + [
                (f"{folder}/{p.name}", "", p.stat().st_size) for p in (root / folder.lstrip("/")).glob("*.parquet")
            ]
            modified = formatdate(usegmt=True)
            body = '<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">' + "".join(
                f"<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype>{kind}</D:resourcetype>"
                f"<D:getcontentlength>{size}</D:getcontentlength><D:getlastmodified>{modified}</D:getlastmodified>"
                "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
                for href, kind, size in entries
            )
            self._send(207, (body + "</D:multistatus>").encode(), "application/xml")

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "webdav-host") as url:
        yield url, seen


@pytest.mark.network
def test_a_signed_geoparquet_url_is_refused_before_any_request(published, tmp_path, use_settings) -> None:
    """DuckDB takes the "?" of a signed URL for a wildcard: it lists the folder, matches nothing and says so,
    quoting the whole URL with its signature (obstore's adapter would drop the query anyway). Such an URL is refused
    before any request, naming it redacted, with nothing chained."""
    import boto3
    import botocore.config

    from tests.test_errors import _chain, _exposed, _secrets

    use_settings(retries=0)
    root, _ = published
    (tmp_path / "catalogs").mkdir()
    (tmp_path / "catalogs" / "items.parquet").write_bytes((root / "items.parquet").read_bytes())
    with _listing_host(tmp_path) as (url, seen):
        for version in ("s3", "s3v4"):  # made up credentials, real signatures (SigV2 and SigV4)
            client = boto3.client(
                "s3",
                endpoint_url=url,
                aws_access_key_id="AKIAFAKEQZ7WV2LP4XR8",
                aws_secret_access_key="fake-secret-Tn6Jm3Hs5Gd1Bc0Ye",
                region_name="us-east-1",
                config=botocore.config.Config(signature_version=version),
            )
            signed = client.generate_presigned_url(
                "get_object", Params={"Bucket": "catalogs", "Key": "items.parquet"}, ExpiresIn=3600
            )
            with pytest.raises(SearchError) as info:
                search_items(signed)
            assert not _exposed(info.value, _secrets(signed)), version
            assert _chain(info.value) == [info.value]
            assert str(info.value).startswith(f"{url}/catalogs/items.parquet?")
            assert "cannot be read from an URL with a query string" in str(info.value)
        assert seen == []


@pytest.mark.network
def test_a_geoparquet_urls_password_is_sent_as_basic_authentication_and_quoted_nowhere(
    published, tmp_path, use_settings
) -> None:
    """``https://user:password@host/items.parquet``: every request carries it as HTTP basic authentication; a
    failure names the URL without it, and chains DuckDB's error redacted."""
    import base64

    from stackcube.errors import RedactedError
    from tests.services.host import run_host
    from tests.test_errors import _chain, _exposed

    use_settings(retries=0)
    root, _ = published
    password = "Pw9Kz4Qx7Lm2Vb5NfakeRs8"
    with run_host(root) as host:
        url = host.url.replace("http://", f"http://reader:{password}@")
        basic = "Basic " + base64.b64encode(f"reader:{password}".encode()).decode()
        with pytest.raises(SearchError) as info:
            search_items(f"{url}/missing.parquet")
        assert not _exposed(info.value, [password, basic.split()[1]])
        assert str(info.value).startswith(f"{host.url}/missing.parquet: could not read stac-geoparquet (")
        chain = _chain(info.value)
        assert len(chain) > 1
        assert all(isinstance(e, RedactedError) for e in chain[1:])

        host.seen.clear()
        _, expected = search_items(str(root / "items.json"))
        _, found = search_items(f"{url}/items.parquet")
        assert [i.id for i in found] == [i.id for i in expected]
        assert host.seen
        assert {s.headers.get("authorization") for s in host.seen} == {basic}
