"""STAC's projection extension as a second witness of a file's georeferencing: unit tests of what is read from
items and how disagreements are said, then plans of real files with items that agree, disagree, or stand in."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyproj
import pystac
import pytest

import stackcube
from stackcube._georef import Affine
from stackcube.errors import NothingFoundError, UnknownCrsError
from stackcube.projection import SAME_PLACE, Stated, disagreements, distance, stated
from tests.tiff.geokey_cases import HAND_MADE, PROJ_STRINGS, write_gdal, write_geokeys

UTM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)


def test_asset_fields_come_before_the_items() -> None:
    said = stated({"proj:code": "EPSG:32634", "proj:shape": [5, 6]}, {"proj:epsg": 32633, "proj:shape": [7, 8]})
    assert said == Stated(crs="EPSG:32634", field="proj:code", shape=(5, 6))
    # every CRS field of the asset, whatever its name, before any of the item's
    assert stated({"proj:epsg": 32634}, {"proj:code": "EPSG:32633"}).crs == "EPSG:32634"
    wkt = pyproj.CRS.from_epsg(3413).to_wkt()
    assert stated({"proj:wkt2": wkt}, {"proj:epsg": 32633}) == Stated(crs="EPSG:3413", field="proj:wkt2")


@pytest.mark.parametrize(
    ("fields", "crs", "field"),
    [
        ({"proj:epsg": 32633}, "EPSG:32633", "proj:epsg"),
        ({"proj:code": "EPSG:3413"}, "EPSG:3413", "proj:code"),
        ({"proj:wkt2": pyproj.CRS.from_epsg(5070).to_wkt()}, "EPSG:5070", "proj:wkt2"),
        ({"proj:projjson": pyproj.CRS.from_epsg(6933).to_json_dict()}, "EPSG:6933", "proj:projjson"),
        ({"proj:epsg": None, "proj:wkt2": pyproj.CRS(PROJ_STRINGS["modis-sinusoidal"]).to_wkt()}, "WKT", "proj:wkt2"),
        ({"proj:epsg": None}, None, None),
    ],
)
def test_every_crs_field_is_read(fields: dict[str, Any], crs: str | None, field: str | None) -> None:
    said = stated(fields, {})
    assert said.field == field
    if crs == "WKT":
        assert said.crs is not None
        assert pyproj.CRS(said.crs).equals(pyproj.CRS(PROJ_STRINGS["modis-sinusoidal"]))
    else:
        assert said.crs == crs


@pytest.mark.parametrize("value", [0, "32633", True, 32633.9])
def test_a_proj_epsg_that_is_no_integer_code_is_unreadable(value: object) -> None:
    said = stated({"proj:epsg": value}, {})
    assert said.crs is None
    assert said.unreadable is not None


def test_an_unreadable_crs_is_said_and_ignored() -> None:
    said = stated({"proj:code": "EPSG:999999"}, {})
    assert said.crs is None
    assert said.unreadable is not None
    assert said.unreadable.startswith("STAC's proj:code cannot be read")
    assert disagreements(said, "EPSG:32633", UTM, (10, 10)) == (said.unreadable,)


def test_the_same_places_by_other_names_agree() -> None:
    """EPSG:32633 renamed and without its code (a WKT), and the file's EPSG:32633: compared as places, the same."""
    doc = pyproj.CRS.from_epsg(32633).to_json_dict()
    doc.pop("id")
    doc["name"] = "UTM 33 north on WGS 84, as a producer's tool names it"
    said = stated({"proj:projjson": doc, "proj:transform": list(UTM)[:6], "proj:shape": [10, 10]}, {})
    assert said.crs is not None
    assert not said.crs.startswith("EPSG:")
    assert distance("EPSG:32633", said.crs, UTM, (10, 10)) <= SAME_PLACE
    assert disagreements(said, "EPSG:32633", UTM, (10, 10)) == ()


def test_another_zone_is_a_disagreement_with_its_distance() -> None:
    said = stated({"proj:code": "EPSG:32634"}, {})
    (line,) = disagreements(said, "EPSG:32633", UTM, (10, 10))
    assert line == (
        "the file's CRS (EPSG:32633) and STAC's proj:code (EPSG:32634) place points of the image more than 100 km "
        "apart; the file's is used"
    )


def test_another_datum_is_a_disagreement() -> None:
    """ED50 / UTM 33N against WGS 84 / UTM 33N: the same numbers, about a hundred metres apart on the ground."""
    apart = distance("EPSG:23033", "EPSG:32633", UTM, (100, 100))
    assert 50 < apart < 500
    (line,) = disagreements(stated({"proj:epsg": 32633}, {}), "EPSG:23033", UTM, (100, 100))
    assert line.endswith("place points of the image more than 1 m apart; the file's is used")


def test_transform_and_shape_disagreements() -> None:
    said = stated({"proj:transform": [10.0, 0.0, 500020.0, 0.0, -10.0, 4000000.0], "proj:shape": [10, 10]}, {})
    (line,) = disagreements(said, "EPSG:32633", UTM, (10, 10))
    assert line == "STAC's proj:transform is not the file's (origin 20 CRS units away, 2 pixels); the file's is used"
    said = stated({"proj:transform": [20.0, 0.0, 500000.0, 0.0, -20.0, 4000000.0]}, {})
    (line,) = disagreements(said, "EPSG:32633", UTM, (10, 10))
    assert line == "STAC's proj:transform is not the file's (pixels 20 x -20 against 10 x -10); the file's is used"
    (line,) = disagreements(stated({"proj:shape": [5, 5]}, {}), "EPSG:32633", UTM, (10, 10))
    assert line == "STAC's proj:shape [5, 5] is not the file's [10, 10] (rows, columns); the file's is used"
    same = stated({"proj:transform": [10.0, 0.0, 500000.0000001, 0.0, -10.0, 4000000.0], "proj:shape": [10, 10]}, {})
    assert disagreements(same, "EPSG:32633", UTM, (10, 10)) == ()


# --------------------------------------------------------------------------------------------------------------
# Plans of real files


def _item(path: Path, n: int, **proj: Any) -> pystac.Item:
    item = pystac.Item(
        id=f"scene-{n}",
        geometry=None,
        bbox=None,
        datetime=dt.datetime(2024, 1, 1 + n, tzinfo=dt.UTC),
        properties={},
    )
    asset = pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=["data"], extra_fields=dict(proj))
    item.add_asset("data", asset)
    return item


def _unknown(tmp_path: Path, n: int = 0) -> Path:
    keys, model = HAND_MADE["unknown-transformation-code"]
    path = tmp_path / f"unknown-{n}.tif"
    write_geokeys(path, keys, **model)
    return path


def test_geokeys_without_a_crs_fail_naming_the_file_and_the_keys(tmp_path: Path) -> None:
    path = _unknown(tmp_path)
    with pytest.raises(UnknownCrsError) as raised:
        stackcube.plan_cube([_item(path, 0)], progress=False)
    message = str(raised.value)
    assert message.startswith(f"{path.resolve().as_uri()}: its GeoKeys describe no CRS that GDAL can read (")
    assert "ProjCoordTransGeoKey=250" in message
    assert message.endswith(
        "state the CRS in the item's projection extension (proj:code, proj:wkt2 or proj:projjson), or pass "
        "on_error='skip' (CLI: --skip-failed) to build without it"
    )


def test_with_skip_such_a_source_is_listed_and_the_others_planned(tmp_path: Path) -> None:
    good = tmp_path / "good.tif"
    keys, model = HAND_MADE["epsg-code-with-its-own-unit-key"]
    write_geokeys(good, keys, **model)
    plan = stackcube.plan_cube([_item(_unknown(tmp_path), 0), _item(good, 1)], progress=False, on_error="skip")
    (failure,) = plan.failed
    assert failure.startswith("scene-0/data: ")
    assert "ProjCoordTransGeoKey=250" in failure
    assert [len(a.sources) for a in plan.arrays] == [1]


def test_stacs_crs_stands_in_for_geokeys_without_one_and_is_said(tmp_path: Path) -> None:
    items = [_item(_unknown(tmp_path, n), n, **{"proj:code": "EPSG:32633"}) for n in range(2)]
    plan = stackcube.plan_cube(items, progress=False)
    (array,) = plan.arrays
    assert array.crs == "EPSG:32633"
    assert "scene-0/data, scene-1/data: the file's GeoKeys give no CRS; STAC's proj:code is used" in plan.report()


def test_a_file_without_georeferencing_is_placed_by_stac(tmp_path: Path) -> None:
    import numpy as np
    import tifffile

    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.arange(64, dtype=np.uint8).reshape(8, 8), tile=(16, 16), metadata=None)
    transform = [30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0]
    plan = stackcube.plan_cube(
        [_item(path, 0, **{"proj:epsg": 32633, "proj:transform": transform, "proj:shape": [8, 8]})], progress=False
    )
    (array,) = plan.arrays
    assert (array.crs, tuple(array.transform)[:6]) == ("EPSG:32633", tuple(transform))
    assert "scene-0/data: the file has no georeferencing; STAC's proj:epsg and proj:transform are used" in str(plan)
    other = [_item(path, 0, **{"proj:epsg": 32633, "proj:transform": transform, "proj:shape": [4, 4]})]
    with pytest.raises(NothingFoundError, match="no CRS and affine transform"):  # a transform for another grid
        stackcube.plan_cube(other, progress=False)


def test_a_file_and_stac_that_disagree_keep_the_files_positions(tmp_path: Path) -> None:
    path = tmp_path / "utm.tif"
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0)
    write_gdal(path, pyproj.CRS.from_epsg(32633), transform)  # type: ignore[arg-type]
    fields = {"proj:code": "EPSG:32634", "proj:transform": [30.0, 0.0, 500030.0, 0.0, -30.0, 4000000.0]}
    plan = stackcube.plan_cube([_item(path, 0, **fields)], progress=False)
    (array,) = plan.arrays
    assert array.crs == "EPSG:32633"
    assert tuple(array.transform)[:6] == tuple(transform)[:6]
    report = plan.report()
    assert (
        "scene-0/data: the file's CRS (EPSG:32633) and STAC's proj:code (EPSG:32634) place points of the image more "
        "than 100 km apart; the file's is used" in report
    )
    assert "scene-0/data: STAC's proj:transform is not the file's (origin 30 CRS units away, 1 pixels)" in report


def test_agreeing_stac_says_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sinusoidal.tif"
    crs = pyproj.CRS(PROJ_STRINGS["modis-sinusoidal"])
    transform = Affine(463.312716528, 0.0, -7783653.637667, 0.0, -463.312716528, 4447802.078667)
    write_gdal(path, crs.to_wkt(), transform)  # type: ignore[arg-type]
    fields = {"proj:epsg": None, "proj:wkt2": crs.to_wkt(), "proj:shape": [8, 8], "proj:transform": list(transform)[:6]}
    plan = stackcube.plan_cube([_item(path, 0, **fields)], progress=False)
    assert "note:" not in plan.report()


def test_pixel_sizes_either_side_of_a_rounding_boundary_are_one_grid() -> None:
    """Two sizes 1.7e-13 apart that round to different 12-digit values (MODIS tiles: GDAL derives each tile's size
    from its own corners) still make one grid."""
    import dataclasses

    from stackcube.grid import GridKey, distinct_keys

    base = GridKey("EPSG:32633", (463.312716528, -463.312716528), (0.0, 0.0), (1, 512, 512), "int16", "none", "{}")
    other = dataclasses.replace(base, resolution=(463.312716529, -463.312716528))  # (rounded either side)
    assert base != other
    assert base.matches(other)
    assert distinct_keys([base, other]) == [base]
    far = dataclasses.replace(base, resolution=(463.3128, -463.312716528))
    assert not base.matches(far)
    assert not base.matches(dataclasses.replace(base, crs="EPSG:32634"))
