"""What band values mean (bands.py): STAC 1.0 and 1.1 band metadata over the file's, conflicts, bad values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine

from stackcube.bands import BandMetadata, Conflict, band_metadata, baseline
from stackcube.errors import MetadataError
from stackcube.tiff import read_tiff


def write_tiff(path, *, dtype: str = "uint16", nodata=None, scale: float = 1.0, offset: float = 0.0, count: int = 1):
    """A small GeoTIFF, and the manifest of its first image."""
    profile = {
        "driver": "GTiff",
        "width": 32,
        "height": 32,
        "count": count,
        "dtype": dtype,
        "crs": "EPSG:32633",
        "transform": Affine(30.0, 0.0, 600_000.0, 0.0, -30.0, 5_000_000.0),
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.ones((count, 32, 32), dtype=dtype))
        if (scale, offset) != (1.0, 0.0):
            ds.scales, ds.offsets = [scale] * count, [offset] * count
    return read_tiff(path).images[0]


def item_with(asset_fields: dict, **properties) -> pystac.Item:
    item = pystac.Item("ITEM", None, None, datetime(2022, 2, 1, 10, tzinfo=UTC), dict(properties))
    item.add_asset("red", pystac.Asset("red.tif", media_type=pystac.MediaType.COG, extra_fields=asset_fields))
    return item


def test_stac_1_0_raster_bands_win_over_the_file_and_conflicts_are_kept(tmp_path) -> None:
    image = write_tiff(tmp_path / "a.tif", nodata=0, scale=0.5)
    stac = {"raster:bands": [{"nodata": 1, "scale": 2.75e-05, "offset": -0.2, "unit": "1", "data_type": "uint16"}]}
    bands, conflicts = band_metadata(item_with(stac), "red", image)
    assert bands == (BandMetadata(nodata=1, scale=2.75e-05, offset=-0.2, unit="1"),)
    # GDAL writes an offset with a scale: the file's offset 0 disagrees too
    assert set(conflicts) == {Conflict("nodata", 1, 0), Conflict("scale", 2.75e-05, 0.5), Conflict("offset", -0.2, 0.0)}
    assert str(Conflict("nodata", 1, 0)) == "nodata: STAC 1, the file 0"


def test_the_file_fills_what_stac_does_not_say(tmp_path) -> None:
    image = write_tiff(tmp_path / "a.tif", nodata=0, scale=0.01, offset=5.0)
    bands, conflicts = band_metadata(item_with({"raster:bands": [{"data_type": "uint16"}]}), "red", image)
    assert bands == (BandMetadata(nodata=0, scale=0.01, offset=5.0),)
    assert conflicts == ()
    assert band_metadata(item_with({}), "red", image)[0] == bands
    ignored, _ = band_metadata(item_with({"raster:bands": [{"nodata": 7, "scale": 3.0}]}), "red", image, stac=False)
    assert ignored == bands  # stac_metadata=False: the file's alone


def test_stac_1_1_bands_and_nodata_on_the_asset(tmp_path) -> None:
    image = write_tiff(tmp_path / "a.tif", dtype="int16", count=2)
    stac = {
        "nodata": -9999,
        "unit": "kelvin",
        "bands": [{"raster:scale": 0.01, "raster:offset": 149.0}, {"raster:scale": 0.02, "nodata": -1}],
    }
    bands, _ = band_metadata(item_with(stac), "red", image)
    assert bands == (BandMetadata(-9999, 0.01, 149.0, "kelvin"), BandMetadata(-1, 0.02, 0.0, "kelvin"))
    floats = write_tiff(tmp_path / "f.tif", dtype="float32")
    (band,), _ = band_metadata(item_with({"bands": [{"nodata": "nan"}]}), "red", floats)
    assert math.isnan(band.nodata)
    assert BandMetadata.from_dict(band.to_dict()).to_dict() == {
        "nodata": "nan",
        "scale": 1.0,
        "offset": 0.0,
        "unit": None,
    }


def test_a_data_type_the_file_contradicts_is_reported_not_trusted(tmp_path) -> None:
    image = write_tiff(tmp_path / "a.tif", dtype="int16")
    _, conflicts = band_metadata(item_with({"raster:bands": [{"data_type": "uint16"}]}), "red", image)
    assert conflicts == (Conflict("data_type", "uint16", "int16"),)


@pytest.mark.parametrize(
    ("stated", "message"),
    [
        ({"scale": 0}, r"ITEM/red: a scale of 0 would turn every value into the offset"),
        ({"offset": "minus two"}, r"ITEM/red: offset 'minus two' is not a number"),
        ({"scale": None, "offset": [1]}, r"ITEM/red: offset \[1\] is not a number"),
        ({"nodata": -9999}, r"ITEM/red: nodata -9999 cannot occur in uint16 data \(values 0 to 65535\)"),
        ({"nodata": "nan"}, r"ITEM/red: nodata 'nan' cannot occur in uint16 data"),
        ({"nodata": 0.5}, r"ITEM/red: nodata 0.5 cannot occur in uint16 data"),
        ({"nodata": "none"}, r"ITEM/red: nodata 'none' is not a number"),
    ],
)
def test_values_that_cannot_be_right_name_the_item_and_asset(tmp_path, stated, message) -> None:
    image = write_tiff(tmp_path / "a.tif")
    with pytest.raises(MetadataError, match=message):
        band_metadata(item_with({"raster:bands": [stated]}), "red", image)
    assert band_metadata(item_with({"raster:bands": [stated]}), "red", image, stac=False)[0] == (BandMetadata(),)


def test_sentinel_2_baseline_offset_only_when_asked_and_not_stated(tmp_path) -> None:
    image = write_tiff(tmp_path / "a.tif", nodata=0)
    later = item_with({"eo:bands": [{"name": "B04", "common_name": "red"}]}, **{"s2:processing_baseline": "04.00"})
    earlier = item_with({}, **{"s2:processing_baseline": "02.14"})
    assert baseline(later.properties) == (4, 0)
    assert band_metadata(later, "red", image)[0][0].offset == 0.0  # not asked: as the catalog describes it
    assert band_metadata(later, "red", image, harmonize="sentinel-2")[0][0].offset == -1000.0
    assert band_metadata(earlier, "red", image, harmonize="sentinel-2")[0][0].offset == 0.0
    scaled = item_with({"raster:bands": [{"scale": 1e-4}]}, **{"s2:processing_baseline": "05.10"})
    (band,), _ = band_metadata(scaled, "red", image, harmonize="sentinel-2")
    assert band.offset == pytest.approx(-0.1)  # the offset in physical units: -1000 DN x the scale
    stated = item_with({"raster:bands": [{"scale": 1e-4, "offset": -0.1}]}, **{"s2:processing_baseline": "05.10"})
    assert band_metadata(stated, "red", image, harmonize="sentinel-2")[0][0].offset == -0.1  # STAC says it already
    scl = item_with({}, **{"s2:processing_baseline": "05.10"})
    scl.add_asset("SCL", pystac.Asset("scl.tif", media_type=pystac.MediaType.COG))
    assert band_metadata(scl, "SCL", image, harmonize="sentinel-2")[0][0].offset == 0.0  # a class map, not DNs
