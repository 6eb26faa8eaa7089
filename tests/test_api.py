"""plan_cube end to end: the pgstac STAC API loaded with twins of real items, compared with stackstac's grid."""

from __future__ import annotations

import contextlib
import json
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.windows

import stackcube
import stackcube.tiff
from stackcube.errors import NothingFoundError, SourceNotFoundError
from tests.twins import corpus_items, in_zone, twin_items

pytestmark = pytest.mark.corpus

BBOX_35MNM = (26.9, -8.3, 28.0, -7.2)
S2_ASSETS = ["B02", "B03", "B04", "B08", "B05", "B11", "B01"]


@pytest.mark.network
def test_35mnm_from_the_stac_api_makes_one_10m_array(stac_api, twins_35mnm) -> None:
    plan = stackcube.plan_cube(
        stac_api.url,
        BBOX_35MNM,
        "2020-06-01/2020-07-31",
        collections=["sentinel-2-l2a"],
        assets=S2_ASSETS,
        progress=False,
    )
    assert [g.key.resolution[0] for g in plan.arrays] == [100.0, 200.0, 600.0]  # 10/20/60 m, downscaled 10x
    ten, twenty, sixty = plan.arrays
    assert ten.shape == (13, 4, 1098, 1098)
    assert ten.bands == ("B02", "B03", "B04", "B08")
    assert twenty.bands == ("B05", "B11")
    assert sixty.bands == ("B01",)
    assert ten.crs == "EPSG:32735"
    assert np.all(np.diff(ten.time.astype("int64")) > 0)
    # every stored tile of every source lands exactly once
    # every stored tile of every source lands exactly once: 1098 px -> 3 x 3 tiles, 549 -> 2 x 2, 183 -> 1 x 1
    for array, tiles in zip(plan.arrays, (3 * 3, 2 * 2, 1), strict=True):
        assert len(array.sources) == array.shape[0] * array.shape[1]
        assert array.n_chunks == len(array.sources) * tiles
    assert "3 arrays: EPSG:32735 100 m x 13 dates x 4 bands" in plan.report()


@pytest.mark.network
def test_grid_equals_stackstac_for_the_same_items(stac_api) -> None:
    import stackstac
    from pystac_client import Client

    items = list(Client.open(stac_api.url).search(collections=["sentinel-2-l2a"]).items())
    plan = stackcube.plan_cube(items, assets=["B02", "B03", "B04", "B08"], progress=False)
    (array,) = plan.arrays
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # pystac 1.15 migrates proj:epsg to proj:code, which stackstac 0.5.1 does not read: give it the items
        # as dicts with proj:epsg restored, as the STAC API served them
        dicts = [i.to_dict() for i in items]
        for d in dicts:
            d["properties"]["proj:epsg"] = int(d["properties"]["proj:code"].split(":")[1])
        stack = stackstac.stack(dicts, assets=["B02", "B03", "B04", "B08"], xy_coords="center", snap_bounds=False)
    assert stack.attrs["crs"] == "epsg:32735"
    assert stack.attrs["transform"] == array.transform
    assert stack.shape == array.shape
    np.testing.assert_array_equal(stack.x.values, array.x)
    np.testing.assert_array_equal(stack.y.values, array.y)
    np.testing.assert_array_equal(stack.time.values, array.time)
    assert tuple(stack.band.values) == array.bands


def test_static_item_collection_filters_like_the_api(tmp_path, twins_35mnm, stac_api) -> None:
    path = tmp_path / "items.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": twins_35mnm}))
    args = {
        "datetime": "2020-07",
        "collections": ["sentinel-2-l2a"],
        "assets": ["B04"],
        "progress": False,
        "query": {"eo:cloud_cover": {"lt": 50}},
    }
    static = stackcube.plan_cube(str(path), BBOX_35MNM, **args)
    api = stackcube.plan_cube(stac_api.url, BBOX_35MNM, **args)
    assert [g.items for g in static.arrays] == [g.items for g in api.arrays]
    assert 0 < static.arrays[0].shape[0] < 13


def test_static_catalog_and_item_list(tmp_path, twins_35mnm) -> None:
    catalog = pystac.Catalog(id="twins", description="35MNM twins")
    for item in twins_35mnm[:3]:
        catalog.add_item(pystac.Item.from_dict(item))
    catalog.normalize_and_save(str(tmp_path / "catalog"), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    from_catalog = stackcube.plan_cube(str(tmp_path / "catalog" / "catalog.json"), assets=["B04"], progress=False)
    from_list = stackcube.plan_cube([pystac.Item.from_dict(i) for i in twins_35mnm[:3]], assets=["B04"], progress=False)
    assert from_catalog.arrays[0].items == from_list.arrays[0].items
    assert from_list.arrays[0].shape[0] == 3


def test_common_names_choose_assets(twins_35mnm) -> None:
    plan = stackcube.plan_cube(twins_35mnm[:2], assets=["red", "nir"], progress=False)
    (array,) = plan.arrays
    assert array.bands == ("red", "nir")
    assert set(array.sources.asset) == {"B04", "B08"}


def test_bad_input_is_explained(twins_35mnm, nginx) -> None:
    with pytest.raises(NothingFoundError, match="matched no items"):
        stackcube.plan_cube(twins_35mnm, bbox=(0, 0, 1, 1), progress=False)
    plan = stackcube.plan_cube(twins_35mnm[:1], assets=["B04", "granule-metadata"], progress=False)
    report = plan.report()
    assert "'granule-metadata' in 1 item (" in report
    assert "): not a TIFF (type 'application/xml')" in report
    with pytest.raises(NothingFoundError, match=r"asset 'B99' not found in the one item the search found .* it has: "):
        stackcube.plan_cube(twins_35mnm[:1], assets=["B04", "B99"], progress=False)  # never a quietly smaller cube
    with pytest.raises(NothingFoundError, match="usable asset"):
        stackcube.plan_cube(twins_35mnm[:1], assets=["granule-metadata"], progress=False)
    broken = json.loads(json.dumps(twins_35mnm[:2]))
    broken[1]["assets"]["B04"]["href"] = f"{nginx.url}/twins/nope.tif"
    with pytest.raises(SourceNotFoundError, match=r"nope\.tif"):
        stackcube.plan_cube(broken, assets=["B04"], progress=False)
    skipped = stackcube.plan_cube(broken, assets=["B04"], on_error="skip", progress=False)
    assert skipped.arrays[0].shape[0] == 1
    assert "nope.tif" in skipped.report()


def test_several_utm_zones_make_one_group_per_grid(tmp_path) -> None:
    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    other = in_zone(item, 32736)
    twins = twin_items([item, other], tmp_path, tmp_path.as_uri(), downscale=30, assets=["B04"])
    plan = stackcube.plan_cube(twins, assets=["B04"], progress=False)
    assert sorted(g.crs for g in plan.arrays) == ["EPSG:32735", "EPSG:32736"]
    assert all(g.shape[0] == 1 for g in plan.arrays)
    assert "2 CRSs" in plan.report()


def test_tall_strip_across_tiles_makes_one_group_per_grid(tmp_path) -> None:
    items = corpus_items("site1-20200606-tall-strip-africa.geojson")
    twins = twin_items(items, tmp_path, tmp_path.as_uri(), downscale=30, assets=["B04"])
    plan = stackcube.plan_cube(twins, assets=["B04"], progress=False)
    transforms = {tuple(i["assets"]["B04"]["proj:transform"]) for i in twins}
    epsgs = {i["properties"]["proj:epsg"] for i in twins}
    # MGRS tiles are 10980 px apart, never whole 512-px tiles: each tile grid is its own array (in one union)
    assert len(plan.arrays) == len(transforms)
    assert {g.crs for g in plan.arrays} == {f"EPSG:{e}" for e in epsgs}
    assert sum(len(g.sources) for g in plan.arrays) == len(twins)


def test_tile_aligned_quads_stand_side_by_side(tmp_path) -> None:
    """Planet NICFI quads (a global Web Mercator tiling) of one month make one mosaic array, not four."""
    items = corpus_items("planet-nicfi-analytic-pc.json")
    twins = twin_items(items, tmp_path, tmp_path.as_uri(), downscale=8, assets=["data"], blocksize=256)
    plan = stackcube.plan_cube(twins, assets=["data"], progress=False)
    (array,) = plan.arrays
    assert array.mosaic
    # quads 745-746 across, 1011-1014 down, 512 px each; the asset declares 5 raster:bands (B, G, R, NIR, mask)
    assert array.shape == (1, 5, 4 * 512, 2 * 512)
    assert array.bands == ("data_1", "data_2", "data_3", "data_4", "data_5")
    assert array.chunks == (1, 5, 256, 256)
    assert "placed side by side at tile offsets" in plan.report()
    a, _, x0, _, e, y0 = array.transform[:6]
    for i, item in enumerate(twins):
        t = item["assets"]["data"]["proj:transform"]
        row, col = round((t[5] - y0) / (e * 256)), round((t[2] - x0) / (a * 256))
        manifest = stackcube.tiff.read_tiff(item["assets"]["data"]["href"])
        np.testing.assert_array_equal(array.source_index[0, 0, row : row + 2, col : col + 2], i)
        np.testing.assert_array_equal(array.offsets[0, 0, row : row + 2, col : col + 2], manifest.ifds[0].offsets[0])
    # quad 745-1011..1013 has no source: those chunks read as the fill value
    assert int((array.source_index < 0).sum()) == 4 * 2 * 2


@pytest.mark.network
def test_static_catalog_over_http(nginx) -> None:
    from stackcube.demo import write_demo_catalog

    write_demo_catalog(nginx.root / "demo", dates=2, size=256)
    with nginx.counting() as seen:
        plan = stackcube.plan_cube(f"{nginx.url}/demo/catalog/catalog.json", assets=["red", "B05"], progress=False)
    assert [g.shape for g in plan.arrays] == [(2, 1, 256, 256), (2, 1, 128, 128)]
    assert all(h.startswith(nginx.url) for g in plan.arrays for h in g.sources.href)
    tiff_gets = [r for r in seen if r.path.endswith(".tif")]
    assert len(tiff_gets) <= 2 * 4  # 4 headers (2 dates x 2 assets), at most 2 ranged GETs each (not COGs)
    json_gets = [r.path for r in seen if r.path.endswith(".json")]
    assert len(json_gets) == len(set(json_gets)) == 1 + 2  # the catalog and its 2 items, each read once


def test_same_values_and_coordinates_as_stackstac(stac_api, tmp_path) -> None:
    import stackstac
    from pystac_client import Client

    items = list(Client.open(stac_api.url).search(collections=["sentinel-2-l2a"], max_items=6).items())
    assets = ["B04", "B08"]
    cube = stackcube.build_cube(
        stac_api.url,
        collections=["sentinel-2-l2a"],
        max_items=6,
        assets=assets,
        repo=tmp_path / "cube.icechunk",
        progress=False,
    )
    ours = cube.open(mask_and_scale=False)["EPSG32735_100m/0"]["data"]
    # pystac 1.15 writes proj:code; stackstac 0.5.1 reads proj:epsg: give it the items as the API served them
    dicts = [i.to_dict() for i in items]
    for d in dicts:
        d["properties"]["proj:epsg"] = int(d["properties"]["proj:code"].split(":")[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = stackstac.stack(
            dicts,
            assets=assets,
            snap_bounds=False,
            xy_coords="center",
            dtype="uint16",
            fill_value=np.uint16(0),
            rescale=False,
        )
        expected = theirs.values
    np.testing.assert_array_equal(ours.x.values, theirs.x.values)
    np.testing.assert_array_equal(ours.y.values, theirs.y.values)
    np.testing.assert_array_equal(ours.time.values, theirs.time.values)
    assert list(ours.band.values) == list(theirs.band.values)
    np.testing.assert_array_equal(ours.values, expected)


def test_build_from_the_stac_api_onto_s3_reads_one_get_per_chunk(stac_api, nginx, s3) -> None:
    """The product as a scheduled job meets it: search the pgstac API, sources on nginx, the cube on S3."""
    repo = f"s3://{s3.repos_bucket}/cubes/from-api"
    cube = stackcube.build_cube(
        stac_api.url,
        (27.0, -8.2, 27.4, -7.8),
        "2020-07",
        collections=["sentinel-2-l2a"],
        assets=["B04", "B08"],
        repo=repo,
        tag="july",
        progress=False,
    )
    (array,) = cube.plan.arrays
    assert array.shape[0] == sum(1 for ids in array.items)
    assert array.window is not None  # the exact bbox is kept inside the chunk-aligned array
    # requests counted at nginx itself: exactly one ranged GET per chunk of the slice, no header read
    tree = stackcube.open_cube(repo, tag="july", mask_and_scale=False)
    data = tree[f"{array.name}/0"]["data"]
    with nginx.counting() as gets:
        values = data.isel(time=0, band=1).values
    assert len(gets) == int((array.source_index[0, 1] >= 0).sum())
    assert all(r.method == "GET" and r.range for r in gets)
    href = str(tree[f"{array.name}/0"]["source_href"].values[0, 1])
    with rasterio.open(nginx.root / href.removeprefix(nginx.url + "/")) as ds:
        a, _, x0, _, e, y0 = array.transform[:6]
        col0, row0 = round((x0 - ds.transform.c) / a), round((y0 - ds.transform.f) / e)
        window = rasterio.windows.Window(col0, row0, values.shape[1], values.shape[0])
        np.testing.assert_array_equal(values, ds.read(1, window=window, boundless=True, fill_value=0))


# --- a catalog URL's credentials: kept in memory for the run, never stored nor printed --------------------------


@dataclass
class KeyedCatalog:
    """The STAC API behind a real nginx that answers 401 to any request without the key, as the Planetary
    Computer's API Management does: in the ``subscription-key`` query parameter or the ``Ocp-Apim-Subscription-Key``
    header."""

    url: str
    key: str
    log: Path

    @property
    def with_key(self) -> str:
        return f"{self.url}/?subscription-key={self.key}"

    def statuses(self) -> list[int]:
        """The status of every request nginx answered, in order."""
        return [int(line) for line in self.log.read_text().split("\n")[:-1]]


@contextlib.contextmanager
def run_keyed_catalog(upstream: str, workdir: Path) -> Iterator[KeyedCatalog]:
    from tests.services.nginx import run_gate

    key = f"fake-test-key-{uuid.uuid4().hex}"  # made up per run: no key lives in the repository
    log = workdir / "statuses.log"
    log.write_text("")
    checks = f"""
    log_format status '$status';
    access_log {log} status;
    map "$args|$http_ocp_apim_subscription_key" $refused {{
        "~(^|&)subscription-key={key}(&|\\|)" 0;
        "~\\|{key}$" 0;
        default 1;
    }}"""
    with run_gate(upstream, workdir, http=checks, location="if ($refused) { return 401; }") as url:
        yield KeyedCatalog(url, key, log)


def _stored_strings(repo: Path) -> list[str]:
    """Every string a key could hide in: every attribute and string array of every group and array, each
    commit's message and metadata (:func:`tests.test_hrefs._everything_stored`), and the bytes of every file of
    the repository (its configuration among them)."""
    from tests.test_hrefs import _everything_stored

    files = [p.read_bytes().decode("latin-1") for p in sorted(repo.rglob("*")) if p.is_file()]
    return [*_everything_stored(repo), *files]


@pytest.mark.network
def test_a_catalog_key_is_used_but_never_stored_nor_printed(stac_api, tmp_path) -> None:
    import stackcube.search
    from stackcube.errors import SearchError
    from stackcube.store.layout import ROOT

    with run_keyed_catalog(stac_api.url, tmp_path) as catalog:
        with pytest.raises(SearchError, match="HTTP 401"):  # the gate is real
            stackcube.plan_cube(catalog.url, collections=["sentinel-2-l2a"], progress=False)
        repo = tmp_path / "cube.icechunk"
        args = {"collections": ["sentinel-2-l2a"], "assets": ["B04"], "limit": 2, "progress": False}
        cube = stackcube.build_cube(catalog.with_key, (27.0, -8.2, 27.4, -7.8), "2020-07", repo=repo, **args)
        found = len(cube.plan.sources)
        assert found > 2  # more than one page, each asked with the key

        stored = _stored_strings(repo)
        assert any(f'"catalog": "{catalog.url}/"' in text for text in stored)  # the scan sees the stored search
        assert stackcube.open_cube(repo).attrs[ROOT]["query"]["catalog"] == f"{catalog.url}/"
        printed = [
            repr(cube.plan),
            str(cube.plan),
            cube.plan.report(),
            cube.summary(),
            repr(cube),
            repr(cube.plan.query),
        ]
        assert not [text for text in [*stored, *printed] if catalog.key in text]

        # a scheduled refresh gives the key again, in the URL or as the header API Management also takes
        report = stackcube.refresh_cube(repo, catalog=catalog.with_key, full_search=True, progress=False)
        assert (report.found, report.committed) == (found, False)
        header = {"Ocp-Apim-Subscription-Key": catalog.key}
        report = stackcube.refresh_cube(repo, headers=header, full_search=True, progress=False)
        assert (report.found, report.committed) == (found, False)
        assert catalog.key not in str(report)

        # without it, the catalog refuses, and the error says what to pass
        refused = catalog.statuses().count(401)
        with pytest.raises(SearchError) as raised:
            stackcube.refresh_cube(repo, progress=False)
        assert catalog.statuses().count(401) == refused + 1  # refused once: not retried
        text = str(raised.value)
        assert text.startswith(f"{catalog.url}/: the catalog refused the request (HTTP 401): it wants credentials")
        assert f"stackcube.refresh_cube({str(repo)!r}, catalog=URL) with URL '{catalog.url}/'" in text
        assert "subscription-key" in text
        assert "headers=" in text

        with pytest.raises(SearchError, match="is not the one this cube searches"):
            stackcube.refresh_cube(repo, catalog=f"{stac_api.url}/?subscription-key={catalog.key}", progress=False)
        assert stackcube.search.make_query(catalog.with_key).secret_params == {"subscription-key": catalog.key}


@contextlib.contextmanager
def run_basic_auth_catalog(upstream: str, workdir: Path, user: str, password: str) -> Iterator[str]:
    """The STAC API behind a real nginx that answers 401 to any request without HTTP basic authentication as
    ``user`` with ``password``; yields its URL."""
    from tests.services.nginx import run_gate

    (workdir / "htpasswd").write_text(f"{user}:{{PLAIN}}{password}\n")
    basic = f'auth_basic "catalog"; auth_basic_user_file {workdir}/htpasswd;'
    with run_gate(upstream, workdir, http="access_log off;", location=basic) as url:
        yield url


@pytest.mark.network
def test_a_catalog_password_is_used_but_never_stored_nor_printed(stac_api, tmp_path) -> None:
    """``http://user:password@host/``: every request (the landing page, each page of the search) carries it as
    basic authentication; the cube, its report and its errors hold the URL without it."""
    import traceback

    from stackcube.errors import SearchError
    from stackcube.store.layout import ROOT
    from tests.test_errors import _chain, _exposed

    password = "fake-Pw9Kz4Qx7Lm2Vb5Rs8"
    with run_basic_auth_catalog(stac_api.url, tmp_path, "reader", password) as url:
        keyed = url.replace("http://", f"http://reader:{password}@") + "/"
        wrong = url.replace("http://", "http://reader:fake-Wr0ngQz7Wv2Lp4Xr8@") + "/"
        with pytest.raises(SearchError, match=r"HTTP 401") as refused:  # the gate is real
            stackcube.plan_cube(wrong, collections=["sentinel-2-l2a"], progress=False)
        assert str(refused.value).startswith(f"{url}/: the catalog refused the request (HTTP 401)")
        assert not _exposed(refused.value, ["fake-Wr0ngQz7Wv2Lp4Xr8"])
        assert _chain(refused.value) == [refused.value]

        repo = tmp_path / "cube.icechunk"
        args = {"collections": ["sentinel-2-l2a"], "assets": ["B04"], "limit": 2, "progress": False}
        cube = stackcube.build_cube(keyed, (27.0, -8.2, 27.4, -7.8), "2020-07", repo=repo, **args)
        assert len(cube.plan.sources) > 2  # more than one page, each asked with the password
        assert stackcube.open_cube(repo).attrs[ROOT]["query"]["catalog"] == f"{url}/"
        printed = [repr(cube.plan), str(cube.plan), cube.plan.report(), cube.summary(), repr(cube)]
        assert not [text for text in [*_stored_strings(repo), *printed] if password in text]

        report = stackcube.refresh_cube(repo, catalog=keyed, full_search=True, progress=False)
        assert (report.found, report.committed) == (len(cube.plan.sources), False)
        with pytest.raises(SearchError, match=r"HTTP 401") as refused:  # not stored: a refresh is given it again
            stackcube.refresh_cube(repo, progress=False)
        assert password not in "".join(traceback.format_exception(refused.value))


def test_a_callers_own_items_are_planned_whole_and_left_whole(tmp_path) -> None:
    """A build cuts the items its search makes to their chosen assets; items the caller gives (a list, an
    ItemCollection) are theirs: left with every asset, so a second plan of other assets finds them."""
    import pystac

    from stackcube.demo import write_demo_catalog
    from stackcube.search import search_items

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    _, items = search_items(catalog)
    keys = [sorted(i.assets) for i in items]
    assert all(len(k) > 2 for k in keys)
    for given in (items, pystac.ItemCollection(items)):
        red = stackcube.plan_cube(given, assets=["red"], progress=False)
        assert [sorted(i.assets) for i in items] == keys
        nir = stackcube.plan_cube(given, assets=["nir"], progress=False)
        assert [s.band for s in red.sources] == ["red"] * len(items)
        assert [s.band for s in nir.sources] == ["nir"] * len(items)
    # the same items from the catalog file: planned the same, the search's own items cut as they arrived
    assert [s.manifest.href for s in stackcube.plan_cube(catalog, assets=["red"], progress=False).sources] == [
        s.manifest.href for s in red.sources
    ]
