"""plan_cube end to end: the pgstac STAC API loaded with twins of real items, compared with stackstac's grid."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pystac
import pytest

import stackcube
import stackcube.tiff
from stackcube.errors import NothingFoundError, SourceNotFoundError
from tests.twins import corpus_items, in_zone, twin_items

pytestmark = pytest.mark.corpus

BBOX_35MNM = (26.9, -8.3, 28.0, -7.2)
S2_ASSETS = ["B02", "B03", "B04", "B08", "B05", "B11", "B01"]


@pytest.mark.network
def test_35mnm_from_the_stac_api_makes_one_10m_group(stac_api, twins_35mnm) -> None:
    plan = stackcube.plan_cube(
        stac_api.url,
        BBOX_35MNM,
        "2020-06-01/2020-07-31",
        collections=["sentinel-2-l2a"],
        assets=S2_ASSETS,
        progress=False,
    )
    assert [g.key.resolution[0] for g in plan.groups] == [100.0, 200.0, 600.0]  # 10/20/60 m, downscaled 10x
    ten, twenty, sixty = plan.groups
    assert ten.shape == (13, 4, 1098, 1098)
    assert ten.bands == ("B02", "B03", "B04", "B08")
    assert twenty.bands == ("B05", "B11")
    assert sixty.bands == ("B01",)
    assert ten.crs == "EPSG:32735"
    assert np.all(np.diff(ten.time.astype("int64")) > 0)
    # every stored tile of every source lands exactly once
    # every stored tile of every source lands exactly once: 1098 px -> 3 x 3 tiles, 549 -> 2 x 2, 183 -> 1 x 1
    for group, tiles in zip(plan.groups, (3 * 3, 2 * 2, 1), strict=True):
        assert len(group.sources) == group.shape[0] * group.shape[1]
        assert group.n_chunks == len(group.sources) * tiles
    assert "3 arrays: EPSG:32735 100 m x 13 dates x 4 bands" in plan.report()


@pytest.mark.network
def test_grid_equals_stackstac_for_the_same_items(stac_api) -> None:
    import stackstac
    from pystac_client import Client

    items = list(Client.open(stac_api.url).search(collections=["sentinel-2-l2a"]).items())
    plan = stackcube.plan_cube(items, assets=["B02", "B03", "B04", "B08"], progress=False)
    (group,) = plan.groups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # pystac 1.15 migrates proj:epsg to proj:code, which stackstac 0.5.1 does not read: give it the items
        # as dicts with proj:epsg restored, as the STAC API served them
        dicts = [i.to_dict() for i in items]
        for d in dicts:
            d["properties"]["proj:epsg"] = int(d["properties"]["proj:code"].split(":")[1])
        stack = stackstac.stack(dicts, assets=["B02", "B03", "B04", "B08"], xy_coords="center", snap_bounds=False)
    assert stack.attrs["crs"] == "epsg:32735"
    assert tuple(stack.attrs["transform"])[:6] == group.transform
    assert stack.shape == group.shape
    np.testing.assert_array_equal(stack.x.values, group.x)
    np.testing.assert_array_equal(stack.y.values, group.y)
    np.testing.assert_array_equal(stack.time.values, group.time)
    assert tuple(stack.band.values) == group.bands


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
    assert [g.items for g in static.groups] == [g.items for g in api.groups]
    assert 0 < static.groups[0].shape[0] < 13


def test_static_catalog_and_item_list(tmp_path, twins_35mnm) -> None:
    catalog = pystac.Catalog(id="twins", description="35MNM twins")
    for item in twins_35mnm[:3]:
        catalog.add_item(pystac.Item.from_dict(item))
    catalog.normalize_and_save(str(tmp_path / "catalog"), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    from_catalog = stackcube.plan_cube(str(tmp_path / "catalog" / "catalog.json"), assets=["B04"], progress=False)
    from_list = stackcube.plan_cube([pystac.Item.from_dict(i) for i in twins_35mnm[:3]], assets=["B04"], progress=False)
    assert from_catalog.groups[0].items == from_list.groups[0].items
    assert from_list.groups[0].shape[0] == 3


def test_common_names_choose_assets(twins_35mnm) -> None:
    plan = stackcube.plan_cube(twins_35mnm[:2], assets=["red", "nir"], progress=False)
    (group,) = plan.groups
    assert group.bands == ("red", "nir")
    assert set(group.sources.asset) == {"B04", "B08"}


def test_bad_input_is_explained(twins_35mnm, nginx) -> None:
    with pytest.raises(NothingFoundError, match="matched no items"):
        stackcube.plan_cube(twins_35mnm, bbox=(0, 0, 1, 1), progress=False)
    plan = stackcube.plan_cube(twins_35mnm[:1], assets=["B04", "granule-metadata", "B99"], progress=False)
    report = plan.report()
    assert "granule-metadata: not a TIFF (type 'application/xml')" in report
    assert "B99: the item has no asset with key or common name 'B99'" in report
    with pytest.raises(NothingFoundError, match="usable asset"):
        stackcube.plan_cube(twins_35mnm[:1], assets=["granule-metadata"], progress=False)
    broken = json.loads(json.dumps(twins_35mnm[:2]))
    broken[1]["assets"]["B04"]["href"] = f"{nginx.url}/twins/nope.tif"
    with pytest.raises(SourceNotFoundError, match=r"nope\.tif"):
        stackcube.plan_cube(broken, assets=["B04"], progress=False)
    skipped = stackcube.plan_cube(broken, assets=["B04"], on_error="skip", progress=False)
    assert skipped.groups[0].shape[0] == 1
    assert "nope.tif" in skipped.report()


def test_several_utm_zones_make_one_group_per_grid(tmp_path) -> None:
    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    other = in_zone(item, 32736)
    twins = twin_items([item, other], tmp_path, tmp_path.as_uri(), downscale=30, assets=["B04"])
    plan = stackcube.plan_cube(twins, assets=["B04"], progress=False)
    assert sorted(g.crs for g in plan.groups) == ["EPSG:32735", "EPSG:32736"]
    assert all(g.shape[0] == 1 for g in plan.groups)
    assert "2 CRSs" in plan.report()


def test_tall_strip_across_tiles_makes_one_group_per_grid(tmp_path) -> None:
    items = corpus_items("site1-20200606-tall-strip-africa.geojson")
    twins = twin_items(items, tmp_path, tmp_path.as_uri(), downscale=30, assets=["B04"])
    plan = stackcube.plan_cube(twins, assets=["B04"], progress=False)
    transforms = {tuple(i["assets"]["B04"]["proj:transform"]) for i in twins}
    epsgs = {i["properties"]["proj:epsg"] for i in twins}
    # MGRS tiles are 10980 px apart, never whole 512-px tiles: each tile grid is its own group (until issue 9)
    assert len(plan.groups) == len(transforms)
    assert {g.crs for g in plan.groups} == {f"EPSG:{e}" for e in epsgs}
    assert sum(len(g.sources) for g in plan.groups) == len(twins)


def test_tile_aligned_quads_stand_side_by_side(tmp_path) -> None:
    """Planet NICFI quads (a global Web Mercator tiling) of one month make one mosaic array, not four."""
    items = corpus_items("planet-nicfi-analytic-pc.json")
    twins = twin_items(items, tmp_path, tmp_path.as_uri(), downscale=8, assets=["data"], blocksize=256)
    plan = stackcube.plan_cube(twins, assets=["data"], progress=False)
    (group,) = plan.groups
    assert group.mosaic
    # quads 745-746 across, 1011-1014 down, 512 px each; the asset declares 5 raster:bands (B, G, R, NIR, mask)
    assert group.shape == (1, 5, 4 * 512, 2 * 512)
    assert group.bands == ("data_1", "data_2", "data_3", "data_4", "data_5")
    assert group.chunks == (1, 5, 256, 256)
    assert "placed side by side at tile offsets" in plan.report()
    a, _, x0, _, e, y0 = group.transform
    for i, item in enumerate(twins):
        t = item["assets"]["data"]["proj:transform"]
        row, col = round((t[5] - y0) / (e * 256)), round((t[2] - x0) / (a * 256))
        manifest = stackcube.tiff.read_tiff(item["assets"]["data"]["href"])
        np.testing.assert_array_equal(group.source_index[0, 0, row : row + 2, col : col + 2], i)
        np.testing.assert_array_equal(group.offsets[0, 0, row : row + 2, col : col + 2], manifest.ifds[0].offsets[0])
    # quad 745-1011..1013 has no source: those chunks read as the fill value
    assert int((group.source_index < 0).sum()) == 4 * 2 * 2


@pytest.mark.network
def test_static_catalog_over_http(nginx) -> None:
    from stackcube.demo import write_demo_catalog

    write_demo_catalog(nginx.root / "demo", dates=2, size=256)
    with nginx.counting() as seen:
        plan = stackcube.plan_cube(f"{nginx.url}/demo/catalog/catalog.json", assets=["red", "B05"], progress=False)
    assert [g.shape for g in plan.groups] == [(2, 1, 256, 256), (2, 1, 128, 128)]
    assert all(h.startswith(nginx.url) for g in plan.groups for h in g.sources.href)
    tiff_gets = [r for r in seen if r.path.endswith(".tif")]
    assert len(tiff_gets) <= 2 * 4  # 4 headers (2 dates x 2 assets), at most 2 ranged GETs each (not COGs)
    json_gets = [r.path for r in seen if r.path.endswith(".json")]
    assert len(json_gets) == len(set(json_gets)) == 1 + 2  # the catalog and its 2 items, each read once
