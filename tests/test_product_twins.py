"""Product families built into cubes (:mod:`tests.product_twins`): MODIS sinusoidal tiles, a GOES-R full disk,
NSIDC polar stereographic (coded and user-defined), EASE-Grid 2.0, CONUS Albers and State Plane feet.

Each cube is compared with rasterio's reading of the same files: pixel-centre ``x``/``y``, ``spatial_ref`` (its
GeoTransform, and its CRS as places: the image's corners, centre and pixel centres through each CRS to
longitude/latitude), the values, and ``to_grid(crs="EPSG:4326")`` against ``rasterio.warp.reproject`` of the files
onto the same grid with nearest resampling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.transform
import rasterio.warp
import tifffile
import xarray as xr
from affine import Affine

import stackcube
from tests.product_twins import (
    GOES_ORIGIN,
    GOES_PIXEL_500M,
    PRODUCTS,
    ProductTwin,
    modis,
    modis_transform,
    stated_crs,
)
from tests.tiff.geokey_cases import difference, gdal_view, quiet_gdal

NAMES = list(PRODUCTS)

MOST = 0.98
"""The share of target pixels that must hold exactly what ``rasterio.warp.reproject`` gives them. GDAL's approximate
transformer (error threshold 0.125 pixel, gdalwarp's and rasterio's default) interpolates source positions along
each block of target rows, and odc-geo (inside ``to_grid``) warps block by block where rasterio warps the whole grid
at once, so a pixel whose centre projects close to a source pixel's edge may take the neighbouring source pixel in
one and not the other (and the approximation can exceed its threshold where a projection bends hard, as near a
full disk's limb)."""


def ignoring_warp_warnings[F: Callable[..., None]](test: F) -> F:
    """What odc-geo's warp (inside ``to_grid``) warns about, as tests/test_regrid.py ignores it."""
    for spec in (
        "ignore::PendingDeprecationWarning",  # affine * in odc-geo / rasterio paths
        "ignore:The 'shapely.ops.transform:DeprecationWarning",  # odc-geo 0.5 on shapely 2.2
        "ignore::rasterio.errors.NotGeoreferencedWarning",  # GDAL's handler across threads (see stackcube.regrid)
    ):
        test = pytest.mark.filterwarnings(spec)(test)
    return test


REAL_GOES_GEOKEYS: dict[str, Any] = {
    "GTModelTypeGeoKey": 32767,
    "GTRasterTypeGeoKey": 1,
    "GTCitationGeoKey": "unnamed",
    "GeographicTypeGeoKey": 32767,
    "GeogCitationGeoKey": "GCS Name = unknown|Datum = unnamed|Ellipsoid = Spheroid|Primem = Greenwich|",
    "GeogGeodeticDatumGeoKey": 32767,
    "GeogAngularUnitsGeoKey": 9102,
    "GeogEllipsoidGeoKey": 32767,
    "GeogSemiMajorAxisGeoKey": 6378137.0,
    "GeogInvFlatteningGeoKey": 298.2572221,
    "GeogPrimeMeridianLongGeoKey": 0.0,
    "PCSCitationGeoKey": (
        'ESRI PE String = PROJCS["unnamed",GEOGCS["unknown",DATUM["unnamed",SPHEROID["Spheroid",6378137,'
        '298.2572221]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]]],'
        'PROJECTION["Geostationary_Satellite"],PARAMETER["central_meridian",-75],PARAMETER["satellite_height",'
        '35786023],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1,AUTHORITY["EPSG",'
        '"9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],EXTENSION["PROJ4","+proj=geos +lon_0=-75 '
        '+h=35786023 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs +sweep=x"]]'
    ),
    "ProjLinearUnitsGeoKey": 9001,
}
"""The GeoKey directory of a real goes-cmi COG (stactools-goes' example
``OR_ABI-L2-CMIPM1-M6C05_G16_s20211451800267_e20211451800324_c20211451800393_CMI.tif``, GDAL's netCDF driver and
``gdal_translate -of COG``)."""

GEOKEYS: dict[str, dict[str, Any]] = {
    "modis": {"ProjectedCSTypeGeoKey": 32767, "ProjCoordTransGeoKey": 24, "GeogSemiMajorAxisGeoKey": 6371007.181},
    "goes": REAL_GOES_GEOKEYS,
    "nsidc-epsg": {"ProjectedCSTypeGeoKey": 3413},
    "nsidc-user": {"ProjectedCSTypeGeoKey": 32767, "ProjCoordTransGeoKey": 15, "ProjNatOriginLatGeoKey": 70.0},
    "ease2-global": {"ProjectedCSTypeGeoKey": 6933},
    "ease2-north": {"ProjectedCSTypeGeoKey": 6931},
    "conus-albers": {"ProjectedCSTypeGeoKey": 5070},
    "state-plane": {"ProjectedCSTypeGeoKey": 2263, "ProjLinearUnitsGeoKey": 9003},
}
"""What each twin's GeoKey directory holds (a part of it; GOES's whole)."""


# --------------------------------------------------------------------------------------------------------------
# Building (once per module and product)


@dataclass(frozen=True)
class Built:
    """A product's twin and the cube built from its items."""

    twin: ProductTwin
    cube: stackcube.Cube

    def path_of(self, item_id: str) -> Path:
        """The file of the item ``item_id``."""
        return self.twin.paths[[i["id"] for i in self.twin.items].index(item_id)]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Built]:
    """``build(name, **options)``: the product's twin (written once) and its cube."""
    made: dict[tuple[str, tuple[tuple[str, Any], ...]], Built] = {}
    root = tmp_path_factory.mktemp("product-twins")

    def get(name: str, **options: Any) -> Built:
        key = (name, tuple(sorted(options.items())))
        if key not in made:
            folder = root / "-".join([name, *(f"{k}-{v}" for k, v in key[1])])
            uri = folder.as_uri()
            twin = modis(folder, uri, **options) if options else PRODUCTS[name](folder, uri)  # options: MODIS's
            cube = stackcube.build_cube(
                twin.items, assets=[twin.asset], repo=folder / "cube.icechunk", on_error="raise", progress=False
            )
            made[key] = Built(twin, cube)
        return made[key]

    return get


# --------------------------------------------------------------------------------------------------------------
# What rasterio reads


def physical(path: Path, item: dict[str, Any], asset: str, stored: np.ndarray, dtype: Any) -> np.ndarray:
    """``stored`` values of ``path`` as physical values (nodata as NaN), by the rule stackcube documents: STAC's
    ``raster:bands`` nodata, scale and offset first, the file's where STAC says nothing; computed in float64."""
    band = item["assets"][asset]["raster:bands"][0]
    with rasterio.Env(**quiet_gdal()), rasterio.open(path) as ds:
        nodata = band.get("nodata", ds.nodata)
        scale = band.get("scale", ds.scales[0])
        offset = band.get("offset", ds.offsets[0])
    values = stored.astype(np.float64) * scale + offset
    if nodata is not None:
        values[stored == nodata] = np.nan
    result: np.ndarray = values.astype(dtype)
    return result


def read_physical(path: Path, item: dict[str, Any], asset: str, dtype: Any) -> np.ndarray:
    """(band, y, x) of ``path`` as rasterio reads it, as physical values."""
    with rasterio.Env(**quiet_gdal()), rasterio.open(path) as ds:
        stored = ds.read()
    return physical(path, item, asset, stored, dtype)


def pixel_centres(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the pixel centres of ``path``'s rows and columns, as rasterio gives them."""
    with rasterio.Env(**quiet_gdal()), rasterio.open(path) as ds:
        rows, cols = np.arange(ds.height), np.arange(ds.width)
        _, y = rasterio.transform.xy(ds.transform, rows, np.zeros_like(rows), offset="center")
        x, _ = rasterio.transform.xy(ds.transform, np.zeros_like(cols), cols, offset="center")
    return np.asarray(y, dtype=float), np.asarray(x, dtype=float)


def geo_transform(data: xr.DataArray) -> tuple[float, float, float, float, float, float]:
    """(a, b, c, d, e, f) of ``spatial_ref``'s GeoTransform (which GDAL orders c, a, b, f, d, e)."""
    c, a, b, f, d, e = (float(v) for v in str(data.spatial_ref.attrs["GeoTransform"]).split())
    return a, b, c, d, e, f


def places_differ(ours_wkt: str, path: Path, step: int = 7) -> str | None:
    """How stackcube's CRS places pixel centres of ``path`` (every ``step``-th row and column) elsewhere than
    GDAL's CRS does (longitude/latitude on each CRS's own datum, 1e-7 degree apart at most), or None.

    :func:`tests.tiff.geokey_cases.difference` compares corners and centre, and only whether they are defined when
    some are not (a full disk's corners are in space); this compares every sampled pixel that is on the Earth.
    """
    with rasterio.Env(**quiet_gdal()), rasterio.open(path) as ds:
        gdal = pyproj.CRS.from_wkt(ds.crs.to_wkt(version="WKT2_2019"))
        rows, cols = np.mgrid[0 : ds.height : step, 0 : ds.width : step]
        t = ds.transform
        x, y = t.c + t.a * (cols + 0.5), t.f + t.e * (rows + 0.5)
    mine = pyproj.CRS.from_wkt(ours_wkt)
    theirs_lonlat = pyproj.Transformer.from_crs(gdal, gdal.geodetic_crs, always_xy=True)
    ours_lonlat = pyproj.Transformer.from_crs(mine, mine.geodetic_crs, always_xy=True)
    lon2, lat2 = theirs_lonlat.transform(x, y, errcheck=False)
    lon1, lat1 = ours_lonlat.transform(x, y, errcheck=False)
    defined = np.isfinite(lon2) & np.isfinite(lat2)
    if not np.array_equal(defined, np.isfinite(lon1) & np.isfinite(lat1)):
        return "pixels on the Earth for one CRS are not for the other"
    if not defined.any():
        return "no sampled pixel is on the Earth"
    far = max(np.max(np.abs(lon1[defined] - lon2[defined])), np.max(np.abs(lat1[defined] - lat2[defined])))
    return None if far <= 1e-7 else f"pixel centres up to {far:.3g} degree from GDAL's"


@dataclass(frozen=True)
class Warped:
    """The files of a twin warped onto a target grid by rasterio, and what each target pixel could hold."""

    values: np.ndarray
    """(band, y, x) physical float32 from ``rasterio.warp.reproject`` (nearest, GDAL's defaults), NaN where no file
    has a valid value (the first file first, as ``to_grid`` lays arrays)."""
    neighbours: list[np.ndarray]
    """Per band, (k, y, x): the physical values of the 3 x 3 source pixels around where each target pixel's centre
    projects exactly (NaN outside a file or at nodata), over every file."""


def warp_files(built: Built, target: xr.DataArray) -> Warped:
    """Every file of ``built`` warped with ``rasterio.warp.reproject`` (nearest) onto the grid of ``target``
    (``to_grid``'s result), and each target pixel's possible nearest values."""
    twin = built.twin
    dst_transform = Affine(*geo_transform(target))
    dst_crs = str(target.spatial_ref.attrs["crs_wkt"])
    count, height, width = target.sizes["band"], target.sizes["y"], target.sizes["x"]
    values = np.full((count, height, width), np.nan, dtype=np.float32)
    neighbours: list[list[np.ndarray]] = [[] for _ in range(count)]
    rows, cols = np.mgrid[0:height, 0:width]
    lon, lat = dst_transform.c + dst_transform.a * (cols + 0.5), dst_transform.f + dst_transform.e * (rows + 0.5)
    for item, path in zip(twin.items, twin.paths, strict=True):
        with rasterio.Env(**quiet_gdal()), rasterio.open(path) as ds:
            nodata = item["assets"][twin.asset]["raster:bands"][0].get("nodata", ds.nodata)
            stored = np.full((ds.count, height, width), np.nan)
            for band in range(ds.count):
                rasterio.warp.reproject(
                    rasterio.band(ds, band + 1), stored[band], dst_transform=dst_transform, dst_crs=dst_crs,
                    src_nodata=nodata, dst_nodata=np.nan, resampling=rasterio.warp.Resampling.nearest,
                )  # fmt: skip
            source = physical(path, item, twin.asset, ds.read(), np.float32)
            src_crs = pyproj.CRS.from_wkt(ds.crs.to_wkt(version="WKT2_2019"))
            src = ds.transform
        values = np.where(np.isnan(values), physical(path, item, twin.asset, stored, np.float32), values)
        x, y = pyproj.Transformer.from_crs(dst_crs, src_crs, always_xy=True).transform(lon, lat, errcheck=False)
        with np.errstate(invalid="ignore"):  # centres that do not project (space, for a full disk) are NaN
            col = np.floor(np.nan_to_num((x - src.c) / src.a, nan=-9, posinf=-9, neginf=-9)).astype(int)
            row = np.floor(np.nan_to_num((y - src.f) / src.e, nan=-9, posinf=-9, neginf=-9)).astype(int)
        n_rows, n_cols = source.shape[1:]
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = row + dr, col + dc
                inside = (r >= 0) & (c >= 0) & (r < n_rows) & (c < n_cols)
                r, c = np.clip(r, 0, n_rows - 1), np.clip(c, 0, n_cols - 1)
                for band in range(count):
                    neighbours[band].append(np.where(inside, source[band][r, c], np.nan))
    return Warped(values, [np.stack(n) for n in neighbours])


def assert_warped_alike(ours: np.ndarray, theirs: Warped) -> None:
    """``ours`` (band, y, x) equals rasterio's warp (NaN included) at :data:`MOST` of the pixels at least, and every
    other pixel holds the value of a source pixel next to the one its centre projects into (or NaN where one of
    those is missing)."""
    assert np.isfinite(theirs.values).any(), "the warp holds no data"
    same = (ours == theirs.values) | (np.isnan(ours) & np.isnan(theirs.values))
    assert same.mean() >= MOST, f"only {same.mean():.2%} of the pixels are rasterio's"
    for band in range(ours.shape[0]):
        other = ~same[band]
        candidates, got = theirs.neighbours[band][:, other], ours[band][other]
        allowed = (candidates == got).any(axis=0) | (np.isnan(got) & np.isnan(candidates).any(axis=0))
        assert allowed.all(), f"band {band}: {(~allowed).sum()} pixels hold no value of a neighbouring source pixel"


# --------------------------------------------------------------------------------------------------------------
# The twins themselves


@pytest.mark.parametrize("name", NAMES)
def test_twin_files_and_items_say_what_the_producer_says(tmp_path: Path, name: str) -> None:
    twin = PRODUCTS[name](tmp_path, tmp_path.as_uri())
    for item, path in zip(twin.items, twin.paths, strict=True):
        assert not Path(f"{path}.aux.xml").exists()  # the TIFF alone holds the CRS
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            keys = {k: getattr(v, "value", v) for k, v in (page.geotiff_tags or {}).items() if k.endswith("GeoKey")}
            assert page.is_tiled
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert {k: keys.get(k) for k in GEOKEYS[name]} == GEOKEYS[name]
        if name == "goes":
            assert keys == REAL_GOES_GEOKEYS
        gdal = gdal_view(path)
        props, asset = item["properties"], item["assets"][twin.asset]
        assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
        assert gdal.transform is not None
        assert tuple(props["proj:shape"]) == gdal.shape
        assert props["proj:transform"] == list(gdal.transform)[:6]
        stated = stated_crs(item)
        assert stated is not None
        assert places_differ(stated.to_wkt(), path) is None  # the catalog's CRS is the file's, as places
        assert difference(stated.to_wkt(), props["proj:transform"], gdal) is None
        with rasterio.Env(**quiet_gdal()), rasterio.open(path) as ds:
            assert ds.dtypes[0] == asset["raster:bands"][0]["data_type"]
            band_nodata = asset["raster:bands"][0].get("nodata")
            if band_nodata is not None:
                assert (ds.read(1) == band_nodata).any()  # missing pixels hold the stated nodata


def test_modis_lattice_reproduces_the_published_transforms() -> None:
    """The Planetary Computer's MOD10A1 h11v05 and MOD09A1 h19v10 items (full resolution) state these transforms:
    GDAL's HDF4 driver derives each tile's from its own HDF-EOS corners."""
    assert list(modis_transform(11, 5, 2400))[:6] == [
        463.3127165279169, 0.0, -7783653.637667, 0.0, -463.3127165279167, 4447802.078667
    ]  # fmt: skip
    assert list(modis_transform(19, 10, 2400))[:6] == [
        463.3127165274999, 0.0, 1111950.519667, 0.0, -463.3127165274999, -1111950.519667
    ]  # fmt: skip
    assert modis_transform(12, 5, 2400).a != modis_transform(11, 5, 2400).a  # neighbours differ in the last bits
    assert round(modis_transform(11, 5, 2400).c + 1111950.519667, 6) == modis_transform(12, 5, 2400).c


def test_goes_lattice_is_the_fixed_grid(tmp_path: Path) -> None:
    """goes-cmi full-disk items at 500 m state pixels of 501.0043288718853 m from -5434895.081637931: the twin is
    the 2 km grid (4 such pixels) scaled down 24 times from the same corner."""
    (item,) = PRODUCTS["goes"](tmp_path, tmp_path.as_uri()).items
    assert (GOES_ORIGIN, GOES_PIXEL_500M) == (-5434895.081637931, 501.0043288718853)
    size = 501.0043288718853 * 4 * 24
    assert item["properties"]["proj:transform"] == [size, 0.0, -5434895.081637931, 0.0, -size, 5434895.081637931]
    assert item["properties"]["proj:shape"] == [226, 226]


# --------------------------------------------------------------------------------------------------------------
# Cubes against rasterio


@pytest.mark.parametrize("name", NAMES)
def test_stac_and_files_agree_without_a_note(build: Callable[..., Built], name: str) -> None:
    """Every item states its file's CRS and grid (the projection extension as its catalog spells it): the plan,
    which compares the two, has nothing to say."""
    plan = build(name).cube.plan
    assert plan.notes == ()
    assert plan.failed == ()


@pytest.mark.parametrize("name", NAMES)
def test_each_array_has_rasterios_coordinates_and_crs(build: Callable[..., Built], name: str) -> None:
    built = build(name)
    assert built.cube.plan.arrays
    for array in built.cube.plan.arrays:
        (item_id,) = array.items[0]
        path = built.path_of(item_id)
        data = stackcube.open_dataarray(built.cube.repository, array.name)
        y, x = pixel_centres(path)
        np.testing.assert_array_equal(data.x.values, x)
        np.testing.assert_array_equal(data.y.values, y)
        wkt = str(data.spatial_ref.attrs["crs_wkt"])
        assert difference(wkt, geo_transform(data), gdal_view(path)) is None
        assert places_differ(wkt, path) is None


@pytest.mark.parametrize("name", NAMES)
def test_each_array_has_rasterios_values(build: Callable[..., Built], name: str) -> None:
    built = build(name)
    items = {i["id"]: i for i in built.twin.items}
    for array in built.cube.plan.arrays:
        (item_id,) = array.items[0]
        data = stackcube.open_dataarray(built.cube.repository, array.name)
        expected = read_physical(built.path_of(item_id), items[item_id], built.twin.asset, data.dtype)
        np.testing.assert_array_equal(data.isel(time=0).values, expected)


@pytest.mark.parametrize("lattice", ["hdf-eos", "shared"])
def test_two_modis_tiles_form_one_array(build: Callable[..., Built], lattice: str) -> None:
    """h11v05 and h12v05 side by side: one array (a union of the two tile grids, or one grid) whose x runs across
    both tiles, with each tile's values. ``hdf-eos``: each tile's transform as GDAL derives it from its HDF-EOS
    corners (the real COGs; the pixel sizes differ in the last bits); ``shared``: one pixel size."""
    built = build("modis", lattice=lattice)
    plan = built.cube.plan
    assert len(plan.array_names) == 1, plan.report()
    data = stackcube.open_dataarray(built.cube.repository, plan.array_names[0])
    (left, right) = built.twin.paths
    y_left, x_left = pixel_centres(left)
    y_right, x_right = pixel_centres(right)
    pixel = abs(geo_transform(data)[0])
    np.testing.assert_allclose(data.x.values, np.concatenate([x_left, x_right]), rtol=0, atol=1e-9 * pixel)
    np.testing.assert_allclose(data.y.values, y_left, rtol=0, atol=1e-9 * pixel)
    np.testing.assert_allclose(y_left, y_right, rtol=0, atol=1e-9 * pixel)
    assert places_differ(str(data.spatial_ref.attrs["crs_wkt"]), left) is None
    items = built.twin.items
    expected = np.concatenate(
        [read_physical(p, i, built.twin.asset, data.dtype) for p, i in zip((left, right), items, strict=True)],
        axis=-1,
    )
    np.testing.assert_array_equal(data.isel(time=0).values, expected)


@ignoring_warp_warnings
@pytest.mark.parametrize("name", NAMES)
def test_to_grid_matches_rasterio_reproject(build: Callable[..., Built], name: str) -> None:
    """``to_grid(crs="EPSG:4326")`` over the arrays' own extent (its default) equals ``rasterio.warp.reproject`` of
    the files onto the same grid (nearest, to_grid's default)."""
    built = build(name)
    ours = stackcube.to_grid(built.cube, crs="EPSG:4326", resolution=built.twin.resolution_deg)
    assert pyproj.CRS.from_wkt(str(ours.spatial_ref.attrs["crs_wkt"])).to_epsg() == 4326
    assert_warped_alike(ours.isel(time=0).values, warp_files(built, ours))


@ignoring_warp_warnings
def test_goes_full_disk_to_grid_over_a_bbox(build: Callable[..., Built]) -> None:
    """A full disk (whose corners are in space) warped onto longitude/latitude over an area on the Earth."""
    built = build("goes")
    ours = stackcube.to_grid(built.cube, crs="EPSG:4326", resolution=built.twin.resolution_deg, bbox=built.twin.bbox)
    values = ours.isel(time=0).values
    assert_warped_alike(values, warp_files(built, ours))
    assert np.isfinite(values).mean() > 0.5


def test_a_grid_in_us_feet_says_so(build: Callable[..., Built]) -> None:
    """The State Plane array is named and described in its unit, not in metres."""
    plan = build("state-plane").cube.plan
    (array,) = plan.arrays
    assert array.name == "EPSG2263_10ftUS"
    assert plan.report().startswith("1 array: EPSG:2263 10 ftUS x ")
