"""Physical values from real producers' catalogs: scale, offset and nodata from STAC, per time step and band,
against rasterio reads with the STAC metadata applied and against stackstac (``rescale=True``).

Twins here are written as the real producers write their files (``metadata="producer"``): Landsat Collection 2
COGs state nothing (STAC alone does), Sentinel-2 L2A COGs state nodata 0 and no offset.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine

import stackcube
from tests.twins import S2_OFFSET, S2_SCALE, as_stac_1_1, corpus_items, redated, twin_items, with_s2_offsets

pytestmark = pytest.mark.corpus

LANDSAT_DATES = ("2024-04-17T23:45:56Z", "2024-05-03T23:46:01Z", "2024-05-19T23:46:07Z")


def physical_from_rasterio(href: str, band: dict) -> np.ndarray:
    """What a reader must return for one twin: rasterio's values, STAC's nodata as NaN, then STAC's scale/offset."""
    with rasterio.open(href.removeprefix("file://")) as ds:
        raw = ds.read(1)
    out = raw.astype(np.float64)
    if band.get("nodata") is not None:
        out[raw == band["nodata"]] = np.nan
    return (out * band.get("scale", 1.0) + band.get("offset", 0.0)).astype(np.float32)


def stackstac_rescaled(items: list[dict], assets: list[str], epsg: int):
    import stackstac

    dicts = [json.loads(json.dumps(i)) for i in items]
    for d in dicts:
        d["properties"]["proj:epsg"] = epsg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stackstac 0.5's affine and pandas deprecations
        return stackstac.stack(dicts, assets=assets, snap_bounds=False, xy_coords="center", rescale=True).compute()


@pytest.fixture(scope="module")
def landsat(tmp_path_factory):
    """Twins of one real Landsat 9 C2 L2 scene at three dates: red (reflectance) and lwir11 (kelvin) in STAC only."""
    root = tmp_path_factory.mktemp("landsat")
    item = corpus_items("landsat-c2-l2-pc.json")[1]  # path 089 row 089
    items = [redated(item, when) for when in LANDSAT_DATES]
    twins = twin_items(items, root / "twins", (root / "twins").as_uri(), downscale=10, assets=["red", "lwir11"])
    cube = stackcube.build_cube(twins, assets=["red", "lwir11"], repo=root / "cube.icechunk", progress=False)
    return twins, cube, root / "cube.icechunk"


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine * in odc-geo (to_grid)
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo 0.5 on shapely 2.2
# GDAL's process-wide error handler can surface one warp thread's message in another (stackcube.regrid silences it
# for users; pytest's own warning filters come first here)
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_landsat_reads_as_reflectance_and_kelvin_where_only_stac_says_so(landsat) -> None:
    twins, cube, repo = landsat
    (array,) = cube.plan.arrays  # both bands uint16 with nodata 0 on one grid: one array, two scales
    red, lwir = (twins[0]["assets"][k]["raster:bands"][0] for k in ("red", "lwir11"))
    np.testing.assert_array_equal(array.scale, [[red["scale"], lwir["scale"]]] * 3)
    np.testing.assert_array_equal(array.offset, [[red["offset"], lwir["offset"]]] * 3)
    assert array.fill_value == 0  # from STAC: the files state no nodata
    assert array.unit is None  # kelvin for one band, nothing for the other
    for chunks in (None, False):
        data = stackcube.open_dataarray(repo, array.name, chunks=chunks)
        assert data.dtype == np.float32
        values = data.values
        for t, item in enumerate(twins):
            for b, key in enumerate(("red", "lwir11")):
                asset = item["assets"][key]
                expected = physical_from_rasterio(asset["href"], asset["raster:bands"][0])
                np.testing.assert_array_equal(values[t, b], expected, err_msg=f"{t} {key} chunks={chunks}")
    assert np.nanmax(values[:, 0]) < 2.0  # reflectance, not the DNs around 8,000 the files hold
    raw = stackcube.open_dataarray(repo, array.name, mask_and_scale=False)
    assert raw.dtype == np.uint16
    tree = stackcube.open_cube(repo)
    np.testing.assert_array_equal(tree[f"{array.name}/0"]["data"].values, values)
    np.testing.assert_array_equal(tree[f"{array.name}/0"]["scale"].values, array.scale)
    half = tree[f"{array.name}/1"]["data"]  # the overviews read with the same scale and offset
    assert np.nanmax(half.isel(band=0).values) < 2.0
    warped = stackcube.to_grid(repo, crs="EPSG:32655", resolution=600.0)  # to_grid warps the physical values
    assert 0.0 < np.nanmax(warped.isel(band=0).values) < 2.0
    look = cube.quicklook(bands=["red"], size=64)  # the quicklook stretches physical values too
    assert look.bands == ("red",)


def test_the_unit_lands_in_the_attributes_when_the_bands_agree(landsat) -> None:
    twins, _, repo = landsat
    cube = stackcube.build_cube(twins, assets=["lwir11"], repo=repo.parent / "kelvin.icechunk", progress=False)
    data = stackcube.open_dataarray(cube.repository, cube.plan.arrays[0].name)
    assert data.attrs["units"] == "kelvin"
    assert 149.0 < np.nanmin(data.values) < np.nanmax(data.values) < 400.0
    assert data.encoding["scale_factor"] == 0.00341802  # one scale for the whole array: CF attributes too


def test_stack_equals_stackstac_rescaled(landsat) -> None:
    twins, _, _ = landsat
    ours = stackcube.stack(twins, assets=["red", "lwir11"])
    theirs = stackstac_rescaled(twins, ["red", "lwir11"], 32655)
    assert ours.shape == theirs.shape
    raw = stackcube.stack(twins, assets=["red", "lwir11"], mask_and_scale=False).values
    valid = raw != 0
    # stackstac scales in float64; stackcube computes in float64 too and returns float32
    np.testing.assert_array_equal(ours.values[valid], theirs.values[valid].astype(np.float32))
    # the files state no nodata, so stackstac returns 0 x scale + offset there; STAC's nodata masks it here
    assert np.isnan(ours.values[~valid]).all()
    np.testing.assert_allclose(theirs.values[:, 0][~valid[:, 0]], -0.2)


def test_stac_1_1_bands_read_the_same(landsat, tmp_path) -> None:
    twins, cube, _ = landsat
    expected = stackcube.open_dataarray(cube.repository, cube.plan.arrays[0].name).values
    for nodata_on_asset in (False, True):
        items = [as_stac_1_1(t, nodata_on_asset=nodata_on_asset) for t in twins]
        assert "raster:bands" not in items[0]["assets"]["red"]
        repo = tmp_path / f"v11-{nodata_on_asset}.icechunk"
        built = stackcube.build_cube(items, assets=["red", "lwir11"], repo=repo, progress=False)
        np.testing.assert_array_equal(stackcube.open_dataarray(repo, built.plan.arrays[0].name).values, expected)


def s2_series(root: Path, *, offsets: bool) -> list[dict]:
    """Twins of real Sentinel-2 L2A items of tile 35MNM, four from 2020 (baseline 02.12) and three re-dated after
    25 January 2022 with baseline 04.00; with ``offsets``, described as Earth Search does (raster:bands scale and
    offset per item), else as Planetary Computer does (nothing but ``s2:processing_baseline``)."""
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:7]
    later = ("2022-02-03T08:16:01Z", "2022-02-13T08:15:11Z", "2022-02-23T08:14:21Z")
    items[4:] = [
        redated(i, when, **{"s2:processing_baseline": "04.00"}) for i, when in zip(items[4:], later, strict=True)
    ]
    if offsets:
        items = [with_s2_offsets(i) for i in items]
    return twin_items(items, root / "twins", (root / "twins").as_uri(), downscale=30, assets=["B04", "B08"])


def test_sentinel_2_across_the_baseline_change_is_one_array_with_two_offsets(tmp_path) -> None:
    twins = s2_series(tmp_path, offsets=True)
    cube = stackcube.build_cube(twins, assets=["B04", "B08"], repo=tmp_path / "cube.icechunk", progress=False)
    (array,) = cube.plan.arrays
    assert array.shape[0] == 7
    np.testing.assert_array_equal(array.offset[:, 0], [0.0] * 4 + [S2_OFFSET] * 3)
    np.testing.assert_array_equal(array.scale, np.full((7, 2), S2_SCALE))
    ours = stackcube.open_dataarray(tmp_path / "cube.icechunk").values
    by_time = sorted(twins, key=lambda i: i["properties"]["datetime"])
    for t, item in enumerate(by_time):
        for b, key in enumerate(("B04", "B08")):
            asset = item["assets"][key]
            np.testing.assert_array_equal(ours[t, b], physical_from_rasterio(asset["href"], asset["raster:bands"][0]))
    theirs = stackstac_rescaled(twins, ["B04", "B08"], 32735)
    valid = ~np.isnan(ours)
    np.testing.assert_array_equal(ours[valid], theirs.values[valid].astype(np.float32))
    stacked = stackcube.stack(twins, assets=["B04", "B08"]).values  # stack(): the same, two offsets along time
    np.testing.assert_array_equal(stacked[valid], theirs.values[valid].astype(np.float32))
    # the same DN reads 0.1 lower after the change, as ESA defines it
    assert "baselines before and from 04.00" not in cube.plan.report()


def test_sentinel_2_without_stated_offsets_warns_and_harmonizes_on_request(tmp_path) -> None:
    twins = s2_series(tmp_path, offsets=False)
    plain = stackcube.plan_cube(twins, assets=["B04"], progress=False)
    assert (
        "EPSG32735_300m: Sentinel-2 processing baselines before and from 04.00 in one array, and no offset"
        in plain.report()
    )
    repo = tmp_path / "harmonized.icechunk"
    cube = stackcube.build_cube(twins, assets=["B04"], harmonize="sentinel-2", repo=repo, progress=False)
    (array,) = cube.plan.arrays
    np.testing.assert_array_equal(array.offset[:, 0], [0.0] * 4 + [-1000.0] * 3)
    assert "baselines before and from 04.00" not in cube.plan.report()
    ours = stackcube.open_dataarray(repo).values
    raw = stackcube.open_dataarray(repo, mask_and_scale=False).values
    valid = raw != 0  # ESA's COGs state nodata 0 in the file
    np.testing.assert_array_equal(ours[:4][valid[:4]], raw[:4][valid[:4]])
    np.testing.assert_array_equal(ours[4:][valid[4:]], raw[4:][valid[4:]].astype(np.float64) - 1000)
    assert np.isnan(ours[~valid]).all()
    assert stackcube.store.read_metadata(repo).options.harmonize == "sentinel-2"  # a refresh harmonizes too


def test_a_refresh_adds_items_with_the_other_offset_to_the_same_array(tmp_path) -> None:
    twins = s2_series(tmp_path, offsets=True)
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": twins[:4]}))
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(str(catalog), assets=["B04"], repo=repo, progress=False)
    before = stackcube.open_dataarray(repo)
    assert set(before.offset.values.ravel().tolist()) == {0.0}
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": twins}))
    report = stackcube.refresh_cube(repo, progress=False)
    assert len(report.added) == 3
    after = stackcube.open_dataarray(repo)
    assert after.sizes["time"] == 7
    np.testing.assert_array_equal(after.offset.values[:, 0], [0.0] * 4 + [S2_OFFSET] * 3)
    np.testing.assert_array_equal(after.isel(time=slice(0, 4)).values, before.values)
    asset = sorted(twins, key=lambda i: i["properties"]["datetime"])[-1]["assets"]["B04"]
    np.testing.assert_array_equal(
        after.isel(time=6, band=0).values, physical_from_rasterio(asset["href"], asset["raster:bands"][0])
    )


def test_a_union_of_landsat_rows_reads_physical_values(tmp_path) -> None:
    items = corpus_items("landsat-c2-l2-pc.json")[:3]  # rows 088-090 of path 089, whole pixels apart
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=10, assets=["red"])
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(twins, assets=["red"], groupby=None, repo=repo, progress=False)
    (union,) = cube.plan.unions
    band = items[0]["assets"]["red"]["raster:bands"][0]
    assert set(np.ravel(union.scale)) == {band["scale"]}
    ours = stackcube.open_dataarray(repo, union.name)
    raw = stackcube.open_dataarray(repo, union.name, mask_and_scale=False).values
    valid = raw != 0
    expected = (raw.astype(np.float64) * band["scale"] + band["offset"]).astype(np.float32)
    for chunks in (None, False):
        values = stackcube.open_dataarray(repo, union.name, chunks=chunks).values
        np.testing.assert_array_equal(values[valid], expected[valid])
        assert np.isnan(values[~valid]).all()
    assert ours.dtype == np.float32


def test_conflicts_between_stac_and_the_file_are_reported_once_per_array(tmp_path) -> None:
    item = corpus_items("landsat-c2-l2-pc.json")[1]
    items = [redated(item, when) for when in LANDSAT_DATES[:2]]
    twins = twin_items(
        items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=40, assets=["red"], metadata="file"
    )
    for twin in twins:  # the catalog now disagrees with what the files say
        twin["assets"]["red"]["raster:bands"][0] |= {"nodata": 1, "offset": -0.1}
    plan = stackcube.plan_cube(twins, assets=["red"], progress=False)
    (line,) = [n for n in plan.notes if "STAC and the files disagree" in n]
    sources = f"{twins[0]['id']}/red, {twins[1]['id']}/red"
    assert line == (
        f"EPSG32655_1200m: STAC and the files disagree (nodata: STAC 1, the file 0 ({sources}); "
        f"offset: STAC -0.1, the file -0.2 ({sources})); STAC's values are used"
    )
    assert line in plan.report()
    assert plan.arrays[0].fill_value == 1
    ignored = stackcube.plan_cube(twins, assets=["red"], stac_metadata=False, progress=False)
    assert ignored.arrays[0].fill_value == 0
    assert ignored.arrays[0].offset[0, 0] == -0.2
    assert not [n for n in ignored.notes if "disagree" in n]


def test_impossible_band_metadata_fails_or_is_listed(tmp_path) -> None:
    from stackcube.errors import MetadataError

    item = corpus_items("landsat-c2-l2-pc.json")[1]
    items = [redated(item, when) for when in LANDSAT_DATES[:2]]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=40, assets=["red"])
    twins[1]["assets"]["red"]["raster:bands"][0]["scale"] = 0
    with pytest.raises(MetadataError, match=rf"{twins[1]['id']}/red: a scale of 0"):
        stackcube.plan_cube(twins, assets=["red"], progress=False)
    plan = stackcube.plan_cube(twins, assets=["red"], on_error="skip", progress=False)
    assert plan.arrays[0].shape[0] == 1
    (failure,) = plan.failed
    assert failure.startswith(f"{twins[1]['id']}/red: a scale of 0")


def test_different_nodata_keeps_arrays_apart_and_says_why(tmp_path) -> None:
    item = corpus_items("landsat-c2-l2-pc.json")[1]
    items = [redated(item, when) for when in LANDSAT_DATES[:2]]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=40, assets=["red"])
    twins[1]["assets"]["red"]["raster:bands"][0]["nodata"] = 65535
    plan = stackcube.plan_cube(twins, assets=["red"], progress=False)
    assert len(plan.arrays) == 2
    assert "state different nodata (0, 65535); each is its own array" in plan.report()


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_a_nodata_value_of_any_dtype_opens_masked(tmp_path, dtype) -> None:
    """A float band with a numeric nodata (EASE-Grid products: -9999) opens: _FillValue is stored as xarray stores
    it (base64 for floats), and reads mask it."""
    data = np.arange(64 * 64).astype(dtype).reshape(1, 64, 64)
    data[0, :4, :4] = -9999
    path = tmp_path / "f.tif"
    profile = {"driver": "COG", "width": 64, "height": 64, "count": 1, "dtype": dtype, "nodata": -9999}
    with rasterio.open(path, "w", crs="EPSG:6933", transform=Affine(36032.22, 0, -17367530.45, 0, -36032.22,
                                                                     7314540.83), **profile) as ds:  # fmt: skip
        ds.write(data)
    item = pystac.Item("a", None, None, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), {})
    item.add_asset("data", pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
    stackcube.build_cube([item], repo=str(tmp_path / "cube.icechunk"), progress=False)
    masked = stackcube.open_dataarray(str(tmp_path / "cube.icechunk")).isel(time=0, band=0).values
    raw = stackcube.open_dataarray(str(tmp_path / "cube.icechunk"), mask_and_scale=False).isel(time=0, band=0)
    assert np.isnan(masked[:4, :4]).all()
    np.testing.assert_array_equal(masked[4:, 4:], data[0, 4:, 4:])
    np.testing.assert_array_equal(raw.values, data[0])
    assert raw.attrs["_FillValue"] == -9999
