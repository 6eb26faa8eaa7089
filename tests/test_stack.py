"""stackcube.stack against stackstac.stack on the same twin items: the same dims, coordinates and values, for every
stackstac parameter stackcube takes; the ones it does not take are refused naming what to do."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import stackcube
from tests.twins import corpus_items, twin_items

pytestmark = pytest.mark.corpus


def test_stack_has_stackstacs_shape_names_and_values(tmp_path) -> None:
    import stackstac

    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:5]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=10, assets=["B04", "B08"])
    ours = stackcube.stack(twins, assets=["B04", "B08"], mask_and_scale=False)
    dicts = [dict(d) for d in twins]
    for d in dicts:
        d["properties"] = {**d["properties"], "proj:epsg": 32735}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stackstac 0.5's affine and pandas deprecations
        theirs = stackstac.stack(
            dicts, assets=["B04", "B08"], snap_bounds=False, xy_coords="center", dtype="uint16",
            fill_value=np.uint16(0), rescale=False,
        )  # fmt: skip
        expected = theirs.values
    assert ours.dims == theirs.dims == ("time", "band", "y", "x")
    assert ours.shape == theirs.shape
    for name in ("time", "id", "band", "x", "y", "epsg", "common_name", "eo:cloud_cover", "platform"):
        assert name in ours.coords, name
        assert name in theirs.coords, name
        np.testing.assert_array_equal(np.asarray(ours[name].values), np.asarray(theirs[name].values), err_msg=name)
    np.testing.assert_array_equal(ours.values, expected)


def test_stack_refuses_to_resample(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog

    with pytest.raises(ValueError, match=r"the items lie on 2 grids .*does not resample unless asked"):
        stackcube.stack(write_demo_catalog(tmp_path / "demo"))
    red = stackcube.stack(write_demo_catalog(tmp_path / "demo"), array="EPSG32735_20m")
    assert list(red.band.values) == ["B05", "B11"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Twins of three Sentinel-2 items (B04, B08 at 100 m) and stackstac's view of them."""
    root = tmp_path_factory.mktemp("stack")
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:3]
    twins = twin_items(items, root / "twins", (root / "twins").as_uri(), downscale=10, assets=["B04", "B08"])
    dicts = [dict(d, properties={**d["properties"], "proj:epsg": 32735}) for d in twins]

    def theirs(**kwargs):
        import stackstac

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stackstac 0.5's affine and pandas deprecations
            return stackstac.stack(dicts, assets=["B04", "B08"], **{"snap_bounds": False, **kwargs})

    return twins, theirs


def same(ours, theirs) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours.x.values, theirs.x.values)
    np.testing.assert_array_equal(ours.y.values, theirs.y.values)
    np.testing.assert_array_equal(ours.values, theirs.values)


def test_values_parameters_match_stackstac(pair) -> None:
    twins, theirs = pair
    ours = stackcube.stack(twins, assets=["B04", "B08"], dtype="uint16", fill_value=0, rescale=False)
    assert ours.dtype == np.uint16
    same(ours, theirs(dtype="uint16", fill_value=np.uint16(0), rescale=False, xy_coords="center"))
    same(stackcube.stack(twins, assets=["B04", "B08"], dtype="float64"), theirs(xy_coords="center"))
    unscaled = stackcube.stack(twins, assets=["B04", "B08"], rescale=False, dtype="float64")
    same(unscaled, theirs(rescale=False, xy_coords="center"))
    with pytest.raises(TypeError, match=r"dtype=uint16 cannot hold NaN, .*pass fill_value="):
        stackcube.stack(twins, assets=["B04", "B08"], dtype="uint16")


def test_layout_parameters_match_stackstac(pair) -> None:
    twins, theirs = pair
    t = twins[0]["assets"]["B04"]["proj:transform"]
    bounds = (t[2] + 3000, t[5] - 9000, t[2] + 9000, t[5] - 3000)  # on the items' pixel grid
    clipped = stackcube.stack(twins, assets=["B04", "B08"], bounds=bounds, dtype="float64")
    same(clipped, theirs(bounds=bounds, xy_coords="center"))
    same(stackcube.stack(twins, assets=["B04", "B08"], dtype="float64", xy_coords="topleft"), theirs())
    newest_first = stackcube.stack(twins, assets=["B04", "B08"], dtype="float64", sortby_date="desc")
    same(newest_first, theirs(sortby_date="desc", xy_coords="center"))
    as_given = stackcube.stack(twins[::-1], assets=["B04", "B08"], sortby_date=False)
    assert list(as_given.id.values) == [t["id"] for t in twins[::-1]]
    assert stackcube.stack(twins, assets=["B04", "B08"], xy_coords=False).coords.keys().isdisjoint({"x", "y"})
    chunked = stackcube.stack(twins, assets=["B04", "B08"], chunksize=256)
    assert chunked.chunks[2][0] == chunked.chunks[3][0] == 256


def test_bounds_latlon_keep_the_items_pixels_that_touch_them(pair) -> None:
    import pyproj

    twins, theirs = pair
    t = twins[0]["assets"]["B04"]["proj:transform"]
    inner = (t[2] + 3050, t[5] - 8950, t[2] + 8950, t[5] - 3050)  # not on pixel edges
    latlon = pyproj.Transformer.from_crs(32735, 4326, always_xy=True).transform_bounds(*inner)
    ours = stackcube.stack(twins, assets=["B04", "B08"], bounds_latlon=latlon, dtype="float64")
    x0, x1 = float(ours.x.min()) - 50, float(ours.x.max()) + 50
    y0, y1 = float(ours.y.min()) - 50, float(ours.y.max()) + 50
    box = pyproj.Transformer.from_crs(4326, 32735, always_xy=True).transform_bounds(*latlon, densify_pts=21)
    # covered, by pixels that touch it
    assert x0 <= box[0] < x0 + 100
    assert x1 - 100 < box[2] <= x1
    assert y0 <= box[1] < y0 + 100
    assert y1 - 100 < box[3] <= y1
    same(ours, theirs(bounds=(x0, y0, x1, y1), xy_coords="center"))  # the items' own pixels, not resampled


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of pixels equal (NaN equal to NaN)."""
    return float(((a == b) | (np.isnan(a) & np.isnan(b))).mean())


def whole_image_warp(source, target) -> np.ndarray:
    """``source`` warped onto ``target``'s grid by GDAL nearest, one whole image per date and band."""
    import rasterio.warp
    from rasterio.enums import Resampling

    from stackcube._georef import to_affine

    def affine(data):
        c, a, b, f, d, e = (float(v) for v in str(data["spatial_ref"].attrs["GeoTransform"]).split())
        return to_affine([a, b, c, d, e, f])

    out = np.full(target.shape, np.nan)
    values = source.values
    for t in range(values.shape[0]):
        for b in range(values.shape[1]):
            rasterio.warp.reproject(
                values[t, b],
                out[t, b],
                src_transform=affine(source),
                src_crs=f"EPSG:{int(source.epsg)}",
                dst_transform=affine(target),
                dst_crs=f"EPSG:{int(target.epsg)}",
                resampling=Resampling.nearest,
                src_nodata=np.nan,
                dst_nodata=np.nan,
            )
    return out


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine * in odc-geo
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo 0.5 on shapely 2.2
# GDAL's process-wide error handler can surface one warp thread's message in another (stackcube.regrid silences it
# for users; pytest's own warning filters come first here); the values are checked below
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_another_grid_is_warped_like_stackstac_and_says_so(pair) -> None:
    from rasterio.enums import Resampling

    from stackcube.errors import ResamplingWarning

    twins, theirs = pair
    with pytest.warns(ResamplingWarning, match=r"resampled \(nearest\) from EPSG:32735 100 to EPSG:32736 100"):
        ours = stackcube.stack(twins, assets=["B04", "B08"], epsg=32736, resolution=100, dtype="float64")
    expected = theirs(epsg=32736, resolution=100, snap_bounds=True, xy_coords="center", resampling=Resampling.nearest)
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours.x.values, expected.x.values)
    # both warp with GDAL nearest block by block (dask), so a pixel centre on an edge, or near a block's border,
    # may round either way; against one warp of each whole image, ours agrees closer than stackstac does
    assert agreement(ours.values, expected.values) > 0.998
    whole = whole_image_warp(stackcube.stack(twins, assets=["B04", "B08"], dtype="float64"), ours)
    assert agreement(ours.values, whole) > 0.999
    assert agreement(ours.values, whole) >= agreement(expected.values, whole)
    assert int(ours.epsg) == 32736
    assert list(ours.common_name.values) == ["red", "nir"]
    with pytest.warns(ResamplingWarning, match="to EPSG:32735 200"):
        coarse = stackcube.stack(twins, assets=["B04", "B08"], resolution=200, crs="EPSG:32735")
    assert coarse.sizes["x"] == 550  # the 109,800 m of the items, snapped outwards to 200 m
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the items' own grid, asked for by name: no resampling, no warning
        native = stackcube.stack(twins, assets=["B04", "B08"], epsg=32735, resolution=100)
    assert native.sizes["x"] == 1098
    with pytest.raises(ValueError, match="needs both epsg=/crs= and resolution="):
        stackcube.stack(twins, assets=["B04", "B08"], epsg=32736)


def test_coordinates_are_stackstacs_and_band_names_select_by_common_name(pair) -> None:
    twins, theirs = pair
    ours = stackcube.stack(twins, assets=["B04", "B08"])
    expected = theirs(xy_coords="center")
    for name in ("common_name", "center_wavelength", "full_width_half_max", "gsd", "title", "proj:shape"):
        assert name in ours.coords, name
    for name in ("common_name", "center_wavelength", "full_width_half_max", "gsd", "title"):
        np.testing.assert_array_equal(ours[name].values, expected[name].values, err_msg=name)
    assert ours.sel(band="red").equals(ours.sel(band="B04"))
    assert list(ours.sel(band=["nir", "red"]).band.values) == ["B08", "B04"]
    only = stackcube.stack(twins, assets=["B04", "B08"], properties=["eo:cloud_cover"], band_coords=False)
    assert "eo:cloud_cover" in only.coords
    assert "platform" not in only.coords
    assert "common_name" not in only.coords
    assert "id" in only.coords  # stackcube's own, as stackstac's


def test_odc_stac_names_do_what_odc_stac_does(pair) -> None:
    twins, _ = pair
    ours = stackcube.stack(twins, bands=["red", "nir"], crs="EPSG:32735", chunks={"x": 512, "y": 512}, groupby="time")
    assert list(ours.band.values) == ["red", "nir"]
    assert ours.chunks[3][0] == 512
    with pytest.raises(TypeError, match=r"assets= .* or bands= .*not both"):
        stackcube.stack(twins, assets=["B04"], bands=["B08"])


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("gdal_env", "not through GDAL: set stackcube.settings"),
        ("errors_as_nodata", "never turns a failed read into nodata"),
        ("geobox", "pass crs=, resolution= and bounds="),
        ("patch_url", "sign hrefs before stacking"),
    ],
)
def test_parameters_stackcube_does_not_take_are_refused_with_the_way(pair, name, says) -> None:
    twins, _ = pair
    with pytest.raises(TypeError, match=rf"stack\(\) does not take {name}=: .*{says}"):
        stackcube.stack(twins, **{name: None})
