"""Georeferencing and GDAL metadata of every corpus GeoTIFF agree with rasterio (GDAL)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio

from stackcube.tiff import read_tiff
from stackcube.tiff._geo import parse_gdal_metadata, parse_nodata
from tests.conftest import CORPUS, corpus_files
from tests.tiff.geokey_cases import difference, gdal_view

GEOTIFFS = [p for p in corpus_files("tiff") if p.suffix in {".tif", ".tiff"}]


def _rasterio_view(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as ds:
            if ds.crs is None and ds.transform.is_identity and not ds.gcps[0]:
                return None
            return ds.crs, ds.transform, ds.nodata, ds.scales, ds.offsets, ds.descriptions, ds.dtypes[0], ds.gcps


@pytest.mark.corpus
@pytest.mark.parametrize("path", GEOTIFFS or [CORPUS], ids=lambda p: p.name)
def test_geo_matches_rasterio(path: Path) -> None:
    from tests.conftest import require

    require(path.is_file(), f"the corpus is missing at {CORPUS}")
    view = _rasterio_view(path)
    if view is None:
        # GDAL sees no georeference: stackcube must not invent one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ifd = read_tiff(path).ifds[0] if path.name != "logluv-3c-16b.tiff" else None
        assert ifd is None or ifd.geo is None or (ifd.geo.crs is None and ifd.geo.transform is None)
        return
    crs, transform, nodata, scales, offsets, descriptions, dtype, (gcps, _) = view
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ifd = read_tiff(path).ifds[0]
    if gcps:
        # ground control points are not an affine grid: no transform, and the CRS is the GCPs' CRS
        with rasterio.open(path) as ds:
            _, gcp_crs = ds.gcps
        assert ifd.geo is not None
        assert ifd.geo.transform is None
        assert pyproj.CRS(ifd.geo.crs).equals(pyproj.CRS.from_wkt(gcp_crs.to_wkt()))
        return
    assert ifd.geo is not None
    assert ifd.geo.transform is not None
    np.testing.assert_allclose(ifd.geo.transform, tuple(transform)[:6], rtol=0, atol=1e-9 * max(1, abs(transform.c)))
    if crs is not None:
        assert ifd.geo.crs is not None
        assert difference(ifd.geo.crs, ifd.geo.transform, gdal_view(path)) is None  # the same places
    if nodata is None:
        assert ifd.fill_value is None
    elif np.isnan(nodata):
        assert ifd.fill_value is not None
        assert np.isnan(ifd.fill_value)
    else:
        assert ifd.fill_value == np.dtype(dtype).type(nodata)
    if any(s != 1.0 for s in scales) or any(o != 0.0 for o in offsets):
        assert ifd.attrs["scale_factor"] == list(scales)
        assert ifd.attrs["add_offset"] == list(offsets)
    if any(descriptions):
        assert ifd.attrs["descriptions"] == [d or None for d in descriptions]


def test_pixel_is_point_moves_the_origin_half_a_pixel() -> None:
    from stackcube.tiff._geo import parse_geo

    keys = {
        "GTModelTypeGeoKey": 1,
        "GTRasterTypeGeoKey": 2,
        "ProjectedCSTypeGeoKey": 32621,
        "ModelPixelScale": [100.0, 100.0, 0.0],
        "ModelTiepoint": [0, 0, 0, 1000.0, 5000.0, 0],
    }
    geo = parse_geo(keys, {})
    assert geo is not None
    assert geo.transform == (100.0, 0.0, 950.0, 0.0, -100.0, 5050.0)
    assert geo.crs == "EPSG:32621"


@pytest.mark.parametrize(
    ("text", "dtype", "expected"),
    [
        ("-9999", "int16", -9999),
        ("0", "uint8", 0),
        ("nan", "float32", "nan"),
        ("-3.40282265508890445e+38", "float32", float(np.float32(-3.40282265508890445e38))),
        ("300", "uint8", None),
        ("1.5", "int16", None),
        ("", "int16", None),
        (None, "int16", None),
        ("1.#QNAN", "float64", "nan"),
    ],
)
def test_nodata_parses_like_gdal(text, dtype, expected) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = parse_nodata(text, np.dtype(dtype))
    if expected == "nan":
        assert value is not None
        assert np.isnan(value)
    else:
        assert value == expected


def test_gdal_metadata_per_band() -> None:
    xml = (
        '<GDALMetadata><Item name="AREA_OR_POINT">Area</Item>'
        '<Item name="SCALE" sample="1" role="scale">0.5</Item>'
        '<Item name="DESCRIPTION" sample="0" role="description">red</Item></GDALMetadata>'
    )
    out = parse_gdal_metadata(xml, 2)
    assert out == {
        "gdal_metadata": {"AREA_OR_POINT": "Area"},
        "scale_factor": [1.0, 0.5],
        "add_offset": [0.0, 0.0],
        "descriptions": ["red", None],
    }
