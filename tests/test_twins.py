"""The twin builder: COGs on exactly the declared grids, with the declared dtype, and band metadata where the real
producer puts it (or, asked, in the file too)."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from stackcube.tiff import read_tiff
from tests.twins import asset_grid, change_in_place, corpus_items, in_zone, is_tiff_data, twin_items, upload_dir

pytestmark = pytest.mark.corpus


def local_path(nginx, href: str):
    return nginx.root / href.removeprefix(nginx.url + "/")


def test_35mnm_twins_have_the_declared_grid(nginx, twins_35mnm) -> None:
    originals = {i["id"]: i for i in corpus_items("site2-2020_jun_jul-35MNM.geojson")}
    checked = 0
    for item in twins_35mnm:
        original = originals[item["id"]]
        for key, asset in item["assets"].items():
            if not is_tiff_data(asset):
                continue
            declared = asset_grid(original, original["assets"][key])
            with rasterio.open(local_path(nginx, asset["href"])) as ds:
                assert ds.crs == CRS.from_user_input(declared.crs)
                # downscaled 10x: same origin, 10x the pixel size, shape rounded up
                assert ds.transform.c == declared.transform.c
                assert ds.transform.f == declared.transform.f
                assert ds.transform.a == declared.transform.a * 10
                assert ds.shape == tuple(-(-n // 10) for n in declared.shape)
                assert list(ds.shape) == asset["proj:shape"]
                assert ds.dtypes[0] == "uint16"  # these items have no raster:bands: uint16
                assert ds.nodata == 0  # as ESA's L2A COGs: nodata 0 in the file, though STAC does not say it
                assert ds.scales[0] == 1.0
                assert ds.count == max(1, len(asset.get("eo:bands") or []))
                assert bool(ds.overviews(1)) == (max(ds.shape) > 512)  # GDAL stops at one tile
                assert ds.profile["blockxsize"] == 512
                checked += 1
    assert checked == 13 * 16


@pytest.mark.parametrize("metadata", ["producer", "file"])
def test_raster_bands_set_dtype_and_land_where_the_producer_puts_them(tmp_path, metadata) -> None:
    item = corpus_items("landsat-c2-l2-pc.json")[0]
    keys = ["qa", "lwir11", "red"]
    twin = twin_items([item], tmp_path, "http://example.invalid", downscale=20, assets=keys, metadata=metadata)[0]
    for key in keys:
        band = item["assets"][key]["raster:bands"][0]
        path = tmp_path / twin["assets"][key]["href"].removeprefix("http://example.invalid/")
        with rasterio.open(path) as ds:
            assert ds.dtypes[0] == band["data_type"]
            assert ds.crs == CRS.from_epsg(item["properties"]["proj:epsg"])
            values = ds.read(1)
            assert (values == band["nodata"]).any()  # missing pixels hold STAC's nodata either way
            if metadata == "file":
                assert ds.nodata == band.get("nodata")
                assert ds.scales[0] == pytest.approx(band.get("scale", 1.0))
                assert ds.offsets[0] == pytest.approx(band.get("offset", 0.0))
            else:  # USGS's Collection 2 COGs state neither: the STAC item alone does
                assert ds.nodata is None
                assert (ds.scales[0], ds.offsets[0]) == (1.0, 0.0)


def test_pixels_differ_per_item_and_band(nginx, twins_35mnm) -> None:
    def read(item, key):
        with rasterio.open(local_path(nginx, item["assets"][key]["href"])) as ds:
            return ds.read(1)

    a, b = twins_35mnm[0], twins_35mnm[1]
    assert not np.array_equal(read(a, "B04"), read(b, "B04"))
    assert not np.array_equal(read(a, "B04"), read(a, "B03"))


def test_changed_in_place_gets_a_new_etag(nginx, tmp_path) -> None:
    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    twin = twin_items([item], nginx.root / "changing", f"{nginx.url}/changing", downscale=30, assets=["B02"])[0]
    href = twin["assets"]["B02"]["href"]
    before = read_tiff(href).etag
    change_in_place(local_path(nginx, href))
    assert read_tiff(href).etag != before


def test_missing_object_is_a_404(nginx, tmp_path) -> None:
    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    twin = twin_items([item], nginx.root / "gone", f"{nginx.url}/gone", downscale=30, assets=["B02"])[0]
    href = twin["assets"]["B02"]["href"]
    local_path(nginx, href).unlink()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(href)
    assert info.value.code == 404
    info.value.close()


def test_non_cog_stripped_tiff(tmp_path) -> None:
    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    twin = twin_items([item], tmp_path, "file://" + str(tmp_path), downscale=30, assets=["B02"], layout="strips")[0]
    manifest = read_tiff(twin["assets"]["B02"]["href"])
    assert len(manifest.ifds) == 1
    assert not manifest.ifds[0].recipe.tiled
    assert manifest.ifds[0].recipe.segment_length == 37


def test_items_on_several_utm_zones(tmp_path) -> None:
    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    other = in_zone(item, 32736)  # the next zone east, same footprint
    twins = twin_items([item, other], tmp_path, "file://" + str(tmp_path), downscale=30, assets=["B02"])
    crss = set()
    for twin in twins:
        with rasterio.open(twin["assets"]["B02"]["href"].removeprefix("file://")) as ds:
            crss.add(ds.crs.to_epsg())
            assert ds.transform.a == 300
    assert crss == {32735, 32736}


@pytest.mark.network
def test_twins_on_s3(s3, tmp_path) -> None:
    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    twin = twin_items([item], tmp_path, "s3://twins/s2", downscale=30, assets=["B02", "B8A"])[0]
    client = s3.client()
    client.create_bucket(Bucket="twins")
    upload_dir(client, tmp_path, "twins", "s2")
    manifest = read_tiff(twin["assets"]["B8A"]["href"])
    assert manifest.ifds[0].shape == (1, *twin["assets"]["B8A"]["proj:shape"])
    assert manifest.ifds[0].geo.crs == "EPSG:32735"
