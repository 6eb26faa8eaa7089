"""Georeferencing as GDAL reads it: stackcube's CRS (as places on the ground) and transform of GeoTIFFs over 40
EPSG-coded projections in their coded and user-defined forms, 20 CRSs without a code, ESRI-flavoured files and
hand-made GeoKey directories equal rasterio's reading of the same files (:mod:`tests.tiff.geokey_cases`)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pyproj
import pytest
import tifffile
from affine import Affine
from rasterio.crs import CRS

from stackcube.tiff import TiffManifest, read_tiff, with_current_crs
from stackcube.tiff._geo import GEOKEY_TAGS, _named_code, crs_of_geokeys
from stackcube.tiff._parse import _GEOS
from tests.tiff.geokey_cases import (
    EPSG_CODES,
    HAND_MADE,
    PROJ_STRINGS,
    Case,
    all_cases,
    difference,
    gdal_view,
    write_gdal,
    write_geokeys,
)

CASES = all_cases()


def _ours(path: Path) -> tuple[str | None, tuple[float, ...] | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geo = read_tiff(path).ifds[0].geo
    return (geo.crs, geo.transform) if geo is not None else (None, None)


def test_the_table_covers_what_the_issue_asks() -> None:
    assert len(EPSG_CODES) >= 35
    names = " ".join(EPSG_CODES.values()).lower() + " ".join(PROJ_STRINGS)
    for family in ("sinusoidal", "geostationary", "hotine", "oblique stereographic", "polyconic", "cassini",
                   "new zealand map grid", "laborde", "south-oriented", "krovak", "variant a", "variant b",
                   "mercator 2sp", "lcc 2sp belgium", "albers", "lambert azimuthal", "cylindrical equal area",
                   "equidistant cylindrical", "ftus"):  # fmt: skip
        assert family in names, family


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_crs_and_transform_are_gdals(tmp_path: Path, case: Case) -> None:
    path = tmp_path / f"{case.name}.tif"
    case.write(path)
    gdal = gdal_view(path)
    crs, transform = _ours(path)
    assert difference(crs, transform, gdal) is None
    if gdal.crs is not None and not gdal.engineering:
        assert crs is not None  # (difference() says so too; this names the case)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_a_directory_that_names_a_code_reads_as_gdal_reads_it(tmp_path: Path, case: Case) -> None:
    """The reading without GDAL (:func:`_named_code`) agrees with GDAL's reading of the same directory, wherever
    it answers."""
    path = tmp_path / f"{case.name}.tif"
    case.write(path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        keys = {k: v for k, v in (page.geotiff_tags or {}).items() if isinstance(k, str) and k.endswith("GeoKey")}
        keys = {k: getattr(v, "value", v) for k, v in keys.items()}
        raw = tuple((code, page.tags.valueof(code)) for code in GEOKEY_TAGS if code in page.tags)
    named = _named_code(keys)
    if named is None:
        return
    assert named == crs_of_geokeys(raw), case.name


def test_the_plain_utm_directory_gdal_writes_needs_no_gdal(tmp_path: Path) -> None:
    """Sentinel-2 and Landsat COGs name their EPSG code: reading them imports no rasterio (a second of start-up)."""
    path = tmp_path / "utm.tif"
    next(c for c in CASES if c.name == "epsg-32633").write(path)
    code = (
        "import sys; from stackcube.tiff import read_tiff; geo = read_tiff(sys.argv[1]).ifds[0].geo; "
        "print(geo.crs, 'rasterio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["EPSG:32633", "False"]


def test_gdals_reading_is_cached_per_directory(tmp_path: Path) -> None:
    keys, model = HAND_MADE["mercator-2sp-stdparallel"]
    for n in range(3):
        write_geokeys(tmp_path / f"{n}.tif", keys, **model)
    crs_of_geokeys.cache_clear()
    _GEOS.clear()  # (the manifest stage's cache of whole georeferencings by directory)
    crss = {_ours(tmp_path / f"{n}.tif")[0] for n in range(3)}
    assert len(crss) == 1
    assert crs_of_geokeys.cache_info().misses == 1


def test_a_code_gdal_changes_loses_its_name(tmp_path: Path) -> None:
    """EPSG:32633 with a foot unit key is not EPSG:32633: the CRS keeps no code that names another CRS."""
    keys, model = HAND_MADE["epsg-code-with-feet-unit-key"]
    write_geokeys(tmp_path / "feet.tif", keys, **model)
    crs, _ = _ours(tmp_path / "feet.tif")
    assert crs is not None
    parsed = pyproj.CRS.from_user_input(crs)
    assert parsed.to_epsg() != 32633
    assert parsed.axis_info[0].unit_name == "foot"


@pytest.mark.parametrize(("name", "gdal_reads"), [("unknown-transformation-code", "Engineering CRS"),
                                                   ("geocentric-model", "Geocentric CRS")])  # fmt: skip
def test_what_places_no_pixel_on_a_map_has_no_crs(tmp_path: Path, name: str, gdal_reads: str) -> None:
    """GDAL reads a LOCAL_CS (a name and a unit) or a geocentric CRS (X/Y/Z): no CRS a grid can be placed in."""
    keys, model = HAND_MADE[name]
    write_geokeys(tmp_path / "x.tif", keys, **model)
    gdal = gdal_view(tmp_path / "x.tif")
    assert gdal.crs is not None
    assert pyproj.CRS.from_wkt(gdal.crs.to_wkt(version="WKT2_2019")).type_name == gdal_reads
    crs, transform = _ours(tmp_path / "x.tif")
    assert crs is None
    assert transform is not None


def test_a_lost_datum_is_a_difference(tmp_path: Path) -> None:
    """The comparison itself: ED50 / UTM 33N read as UTM 33N on the same ellipsoid without ED50's shift (121 m)."""
    path = tmp_path / "ed50.tif"
    write_gdal(path, CRS.from_epsg(23033), Affine(30, 0, 500000, 0, -30, 4500000))
    lost = pyproj.CRS.from_proj4("+proj=utm +zone=33 +ellps=intl +units=m").to_wkt()
    gdal = gdal_view(path)
    assert difference("EPSG:23033", tuple(gdal.transform or ())[:6], gdal) is None
    found = difference(lost, tuple(gdal.transform or ())[:6], gdal)
    assert found is not None
    assert "another datum" in found


@pytest.mark.parametrize("code", list(EPSG_CODES))
def test_every_code_gdal_writes_is_read_without_gdal(tmp_path: Path, code: int) -> None:
    """A file GDAL writes for an EPSG code names that code: the reading without GDAL takes it (and agrees with
    GDAL's, by the test above), geographic codes with their ellipsoid keys included."""
    path = tmp_path / "coded.tif"
    next(c for c in CASES if c.name == f"epsg-{code}").write(path)
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.geotiff_tags or {}
    keys = {k: getattr(v, "value", v) for k, v in tags.items() if isinstance(k, str) and k.endswith("GeoKey")}
    assert _named_code(keys) == f"EPSG:{code}", keys


GARBLED = {"keys-pe-string-after-a-citation-that-starts-with-a-space"}
"""Directories whose text tifffile decodes shifted (it strips the leading space of the whole GeoAsciiParams, and
the keys address it by offset): the decoded keys a manifest stores cannot give the CRS back; a fresh read can."""


@pytest.mark.parametrize("case", [c for c in CASES if c.name not in GARBLED], ids=repr)
def test_a_manifest_stored_before_reads_its_crs_again_from_its_geokeys(tmp_path: Path, case: Case) -> None:
    """A cube built before CRSs were read as GDAL reads them stores manifests whose CRS may be wrong (or a WKT of
    the same CRS by another name): loaded now, their CRS is read again from the stored GeoKeys, as a fresh read."""
    path = tmp_path / f"{case.name}.tif"
    case.write(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = read_tiff(path)
    doc = fresh.to_dict()
    geo = doc["ifds"][0]["geo"]
    if geo is None or not geo["geokeys"]:
        return
    del geo["as_gdal"]  # as stored then
    geo["crs"] = "EPSG:4326"  # whatever was read then
    again = with_current_crs(TiffManifest.from_dict(doc)).ifds[0].geo
    assert again is not None
    assert again.as_gdal
    assert again.crs == fresh.ifds[0].geo.crs  # type: ignore[union-attr]
