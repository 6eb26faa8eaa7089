"""to_grid: arrays of several UTM zones warped onto one grid, against stackstac on the same items."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta

import numpy as np
import pytest

import stackcube
from stackcube.errors import BboxError
from tests.twins import corpus_items, in_zone, twin_items

pytestmark = pytest.mark.corpus


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine * in odc-geo / rasterio paths
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo 0.5 on shapely 2.2
# GDAL's warper, inside odc-geo, can warn about its own in-memory datasets; the values are checked below
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_two_zones_on_one_grid_match_stackstac_within_resampling_tolerance(tmp_path) -> None:
    import stackstac
    from rasterio.enums import Resampling

    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    other = in_zone(item, 32736)
    when = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
    other["properties"]["datetime"] = (when + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    twins = twin_items([item, other], tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=30, assets=["B04"])
    cube = stackcube.build_cube(twins, assets=["B04"], repo=tmp_path / "cube.icechunk", progress=False)
    assert len(cube.plan.arrays) == 2  # one per zone

    t = twins[0]["assets"]["B04"]["proj:transform"]
    shape = twins[0]["assets"]["B04"]["proj:shape"]
    bounds = (t[2], t[5] - shape[0] * 300.0, t[2] + shape[1] * 300.0, t[5])
    ours = stackcube.to_grid(cube, crs="EPSG:32735", resolution=300.0, bounds=bounds)
    assert ours.dims == ("time", "band", "y", "x")
    assert ours.sizes["time"] == 2
    assert ours.odc.geobox.crs.epsg == 32735

    dicts = [
        dict(d, properties={**d["properties"], "proj:epsg": 32735 if i == 0 else 32736}) for i, d in enumerate(twins)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = stackstac.stack(
            dicts, assets=["B04"], epsg=32735, resolution=300.0, bounds=bounds,
            snap_bounds=False, resampling=Resampling.nearest, dtype="float64", fill_value=np.nan, rescale=False,
        ).values  # fmt: skip
    mine = ours.values
    assert mine.shape == theirs.shape
    same = (mine == theirs) | (np.isnan(mine) & np.isnan(theirs))
    assert same[0].mean() > 0.999  # the array already on the target grid: nearest is exact
    assert same[1].mean() > 0.99  # the other zone, warped by odc-geo and by stackstac (both GDAL nearest; 1.0 here)
    assert np.isfinite(mine[1]).mean() > 0.5


@pytest.fixture(scope="module")
def demo_cube(tmp_path_factory):
    from stackcube.demo import write_demo_catalog

    root = tmp_path_factory.mktemp("regrid")
    return stackcube.build_cube(write_demo_catalog(root / "demo", dates=2, size=256), repo=root / "c", progress=False)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine * in odc-geo
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo 0.5 on shapely 2.2
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # GDAL's handler across threads
def test_every_kind_of_cube_gives_the_same_grid(demo_cube) -> None:
    by_repo = stackcube.to_grid(demo_cube.repository, crs="EPSG:32735", resolution=20.0)
    for source in (demo_cube, demo_cube.open()):
        other = stackcube.to_grid(source, crs="EPSG:32735", resolution=20.0)
        assert other.identical(by_repo)
    names = demo_cube.plan.array_names
    arrays = [stackcube.open_dataarray(demo_cube.repository, n) for n in names]
    from_arrays = stackcube.to_grid(arrays, crs="EPSG:32735", resolution=20.0)
    np.testing.assert_array_equal(from_arrays.values, by_repo.values)
    one = stackcube.to_grid(arrays[0], crs="EPSG:32735", resolution=20.0)
    assert list(one.band.values) == list(arrays[0].band.values)
    assert list(by_repo.band.values) == ["B02", "B03", "B04", "B08", "B05", "B11"]  # the arrays' bands in order
    assert list(by_repo.common_name.values) == ["blue", "green", "red", "nir", "rededge", "swir16"]
    assert by_repo.sel(band="red").equals(by_repo.sel(band="B04"))
    assert list(by_repo.id.values) == list(arrays[0].id.values)
    with pytest.raises(TypeError, match="only apply to a cube or a repository"):
        stackcube.to_grid(arrays[0], crs="EPSG:32735", resolution=20.0, tag="v1")


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine * in odc-geo
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo 0.5 on shapely 2.2
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # GDAL's handler across threads
def test_a_regridded_array_describes_its_new_grid(demo_cube) -> None:
    """The projection coordinates along ``band`` say what the warped array is, not what the 10 m sources were."""
    import json

    native = stackcube.open_dataarray(demo_cube.repository, "EPSG32735_10m")
    assert set(native["proj:shape"].values.tolist()) == {json.dumps([native.sizes["y"], native.sizes["x"]])}
    warped = stackcube.to_grid(demo_cube, crs="EPSG:32735", resolution=20.0)
    ny, nx = warped.sizes["y"], warped.sizes["x"]
    assert (ny, nx) != (native.sizes["y"], native.sizes["x"])
    assert set(warped["proj:shape"].values.tolist()) == {json.dumps([ny, nx])}
    (transform,) = {tuple(json.loads(t)) for t in warped["proj:transform"].values.tolist()}
    x0, y0 = float(warped.x[0]) - 10.0, float(warped.y[0]) + 10.0  # the first pixel's centre, less half a pixel
    assert transform == (20.0, 0.0, x0, 0.0, -20.0, y0)
    assert set(warped["proj:code"].values.tolist()) == {"EPSG:32735"}
    geographic = stackcube.to_grid(demo_cube, crs="EPSG:4326", resolution=0.001)
    assert set(geographic["proj:code"].values.tolist()) == {"EPSG:4326"}
    assert json.loads(geographic["proj:transform"].values[0])[0] == 0.001
    mollweide = stackcube.to_grid(demo_cube, crs="ESRI:54009", resolution=20.0)  # a code, not an EPSG one
    assert set(mollweide["proj:code"].values.tolist()) == {"ESRI:54009"}


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine * in odc-geo
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo 0.5 on shapely 2.2
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # GDAL's handler across threads
def test_geographic_grids_and_bboxes_in_any_crs(demo_cube) -> None:
    geographic = stackcube.to_grid(demo_cube, crs="EPSG:4326", resolution=0.0002)
    assert geographic.dims == ("time", "band", "y", "x")
    assert geographic.odc.geobox.crs.epsg == 4326
    assert float(geographic.x.min()) > 27.8
    assert np.isfinite(geographic.values).mean() > 0.5
    data = stackcube.open_dataarray(demo_cube.repository, "EPSG32735_10m")
    x0, y1 = float(data.x[0]) - 5, float(data.y[0]) + 5
    metres = (x0, y1 - 1280, x0 + 1280, y1)
    inside = stackcube.to_grid(demo_cube, crs="EPSG:32735", resolution=20.0, bbox=metres, bbox_crs="EPSG:32735")
    assert inside.sizes["x"] == inside.sizes["y"] == 64
    assert float(inside.x[0]) == x0 + 10
    exact = stackcube.to_grid(demo_cube, crs="EPSG:32735", resolution=30.0, bounds=(x0, y1 - 1920, x0 + 1920, y1))
    # nearest: each 30 m pixel centre lies inside one 10 m pixel, the second of every three
    np.testing.assert_array_equal(exact.isel(band=0).values, data.isel(band=0).values[:, 1:192:3, 1:192:3])
    with pytest.raises(BboxError, match=r"not in degrees .*or pass bbox_crs= the CRS it is in"):
        stackcube.to_grid(demo_cube, crs="EPSG:32735", resolution=20.0, bbox=metres)
    with pytest.raises(BboxError, match=r"west 27\.95 is east of east 27\.9"):
        stackcube.to_grid(demo_cube, crs="EPSG:32735", resolution=20.0, bbox=(27.95, -4.55, 27.9, -4.53))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(("crs", "resolution"), [("EPSG:4326", 0.00002), ("EPSG:32736", 4.0)])
def test_the_block_warp_for_grids_off_the_earth_equals_odc_geos(demo_cube, crs, resolution) -> None:
    """The warp used where odc-geo cannot pair blocks (a full disk: tests/test_product_twins.py) gives odc-geo's
    values on an ordinary grid, in blocks that do not divide it (but for GDAL's approximate transformer choosing a
    neighbouring pixel at a few positions: 312 of 10.7 million here)."""
    import pyproj
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_reproject

    from stackcube.regrid import _footprints, _outlines_meet, _warp_tiles

    data = stackcube.open_dataarray(demo_cube.repository, "EPSG32735_10m").isel(time=slice(0, 2))
    bare = data.drop_vars([c for c in data.coords if c not in {*data.dims, "spatial_ref"}]).astype("float32")
    target = pyproj.CRS.from_user_input(crs)
    geobox = GeoBox.from_bbox(_footprints([bare], target), crs=target.to_wkt(), resolution=resolution)
    assert geobox.shape.x > 512  # several blocks, the last one partial
    assert _outlines_meet(bare, geobox)  # (to_grid itself warps this one with odc-geo)
    lazy = _warp_tiles(bare, geobox, "nearest")
    assert lazy.chunks is not None
    assert set(lazy.chunks[0]) == {1}  # a task per time step and band, as odc-geo's
    assert set(lazy.chunks[1]) == {1}
    ours = lazy.values
    theirs = xr_reproject(bare, geobox, resampling="nearest", dst_nodata=float("nan")).values
    same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
    assert same.mean() > 0.9999  # GDAL's approximate transformer picks a neighbour at a few block-dependent pixels
    assert np.isfinite(ours).mean() > 0.5


def test_a_member_a_tree_only_lists_is_named_with_how_to_open_it(tmp_path) -> None:
    from stackcube.demo import write_demo_offset_catalog
    from stackcube.errors import ArrayNotFoundError

    repo = tmp_path / "cube.icechunk"
    built = stackcube.build_cube(write_demo_offset_catalog(tmp_path / "demo"), repo=repo, progress=False)
    member = built.plan.unions[0].members[0]
    with pytest.raises(ArrayNotFoundError, match=rf"{member}: members of a union.*members=True"):
        stackcube.to_grid(stackcube.open_cube(repo), arrays=[member], crs="EPSG:32735", resolution=60.0)
    assert "data" in stackcube.open_cube(repo, members=True)[f"{member}/0"]  # where the error sends the reader
