"""GeoTIFFs over the projections real products use, written the way producers write them, for comparing
stackcube's georeferencing with GDAL's (rasterio's) reading of the same files.

Three kinds of writer, as in the world:

- GDAL (through rasterio) writes each CRS in its **EPSG-coded** form (``ProjectedCSTypeGeoKey``), its
  **user-defined** form (the same CRS without its code: GDAL writes ``ProjCoordTransGeoKey`` and parameter keys, or
  finds the code itself) and, for some, the **ESRI** flavour (``GEOTIFF_KEYS_FLAVOR=ESRI_PE``: a PE string in
  ``PCSCitationGeoKey``). CRSs that have no EPSG code (MODIS sinusoidal, GOES geostationary, ...) come from PROJ
  strings, as their producers' tools define them.
- Hand-made GeoKey directories (:data:`HAND_MADE`) written with tifffile, for what GDAL does not write itself but
  other producers and libgeotiff's test files do: legacy polar stereographic keys, a unit key overriding an EPSG
  code's unit, US survey feet and user-defined ellipsoids and prime meridians, vertical keys, WKT in a citation,
  PixelIsPoint with a rotated ModelTransformation.

GDAL writes a CRS it cannot put into GeoKeys into a ``.aux.xml`` sidecar; the sidecar is deleted, so the
expectation is what GDAL reads from the TIFF alone (what a COG on object storage gives a reader).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
import tifffile
from affine import Affine
from rasterio.crs import CRS

SIZE = 8
"""Rows and columns of every test image."""

EPSG_CODES: dict[int, str] = {
    32633: "UTM zone 33N (transverse Mercator)",
    32735: "UTM zone 35S",
    26915: "NAD83 / UTM zone 15N",
    4326: "WGS 84 (geographic)",
    4269: "NAD83 (geographic)",
    4807: "NTF (Paris) geographic in grads",
    3857: "Web Mercator",
    3395: "World Mercator (Mercator 1SP)",
    3994: "Mercator 41 (Mercator 2SP)",
    3413: "NSIDC Sea Ice Polar Stereographic North (variant B)",
    3976: "NSIDC Sea Ice Polar Stereographic South (variant B)",
    3031: "Antarctic Polar Stereographic (variant B)",
    5041: "UPS North (polar stereographic variant A)",
    3032: "Australian Antarctic Polar Stereographic (variant B)",
    6933: "EASE-Grid 2.0 Global (cylindrical equal area)",
    6931: "EASE-Grid 2.0 North (Lambert azimuthal equal area)",
    3408: "NSIDC EASE-Grid North (spherical LAEA)",
    3410: "NSIDC EASE-Grid Global (spherical CEA)",
    5070: "NAD83 / Conus Albers (Landsat ARD, NLCD)",
    3577: "GDA94 / Australian Albers",
    3035: "ETRS89 / LAEA Europe",
    2263: "NAD83 / New York Long Island (ftUS, LCC 2SP)",
    2272: "NAD83 / Pennsylvania South (ftUS)",
    2154: "RGF93 / Lambert-93 (LCC 2SP)",
    31300: "BD72 / Belge Lambert 72 (LCC 2SP Belgium)",
    27572: "NTF (Paris) / Lambert zone II (LCC 1SP, Paris meridian)",
    27700: "OSGB36 / British National Grid",
    2193: "NZGD2000 / NZTM",
    27200: "NZGD49 / New Zealand Map Grid",
    28992: "Amersfoort / RD New (oblique stereographic)",
    2056: "CH1903+ / LV95 (Hotine oblique Mercator B)",
    3375: "GDM2000 / Peninsula RSO (Hotine oblique Mercator A)",
    3078: "NAD83 / Michigan Oblique Mercator",
    29101: "SAD69 / Brazil Polyconic",
    30200: "Trinidad 1903 / Trinidad Grid (Cassini-Soldner, Clarke's links)",
    8441: "Tananarive / Laborde Grid",
    2053: "Hartebeesthoek94 / Lo29 (transverse Mercator south-oriented)",
    5514: "S-JTSK / Krovak East North",
    4087: "WGS 84 / World Equidistant Cylindrical",
    3347: "NAD83 / Statistics Canada Lambert",
}
"""CRSs by EPSG code, each written in its EPSG-coded, user-defined (and some in ESRI) forms."""

PROJ_STRINGS: dict[str, str] = {
    "modis-sinusoidal": "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs",
    "goes-east-geostationary": "+proj=geos +h=35786023 +lon_0=-75 +sweep=x +a=6378137 +rf=298.257222101 +units=m",
    "nsidc-polar-stereographic": "+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +k=1 +x_0=0 +y_0=0 +datum=WGS84",
    "azimuthal-equidistant": "+proj=aeqd +lat_0=40 +lon_0=-100 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "transverse-mercator-intl-1924": "+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=500000 +y_0=0 +ellps=intl",
    "transverse-mercator-custom-ellipsoid": "+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=500000 +a=6378000 +rf=300",
    "cylindrical-equal-area-30": "+proj=cea +lat_ts=30 +lon_0=0 +datum=WGS84",
    "equidistant-cylindrical-30": "+proj=eqc +lat_ts=30 +lon_0=0 +datum=WGS84",
    "lambert-conformal-1sp-scaled": "+proj=lcc +lat_1=45 +lat_0=45 +lon_0=10 +k_0=0.9998 +x_0=1000000 +datum=WGS84",
    "lambert-azimuthal-south-pole": "+proj=laea +lat_0=-90 +lon_0=0 +datum=WGS84",
    "oblique-mercator-gamma": "+proj=omerc +lat_0=4 +lonc=102.25 +alpha=323.0257905 +gamma=323.1301023611 "
    "+k=0.99984 +x_0=804671 +y_0=0 +ellps=GRS80",
    "equidistant-conic": "+proj=eqdc +lat_0=40 +lon_0=-96 +lat_1=20 +lat_2=60 +datum=NAD83",
    "miller": "+proj=mill +lon_0=0 +datum=WGS84",
    "van-der-grinten": "+proj=vandg +lon_0=0 +R=6371000",
    "gnomonic": "+proj=gnom +lat_0=45 +lon_0=10 +datum=WGS84",
    "orthographic": "+proj=ortho +lat_0=45 +lon_0=10 +R=6371000",
    "mollweide": "+proj=moll +lon_0=0 +datum=WGS84",
    "robinson": "+proj=robin +lon_0=0 +datum=WGS84",
    "equal-earth": "+proj=eqearth +lon_0=0 +datum=WGS84",
    "state-plane-us-feet-custom": "+proj=tmerc +lat_0=31 +lon_0=-110.1666666666667 +k=0.9999 +x_0=213360 +y_0=0 "
    "+datum=NAD83 +units=us-ft",
}
"""CRSs without an EPSG code (or written as their producers' tools define them), by name."""

ESRI_FLAVOURED = (5514, 3413, 2056, "modis-sinusoidal", "goes-east-geostationary", "mollweide", "robinson")
"""Also written with ``GEOTIFF_KEYS_FLAVOR=ESRI_PE``."""


@dataclass(frozen=True)
class Case:
    """One file to write: its name and how."""

    name: str
    write: Callable[[Path], None]

    def __repr__(self) -> str:
        return self.name


def _crs_input(spec: int | str) -> pyproj.CRS:
    return pyproj.CRS.from_epsg(spec) if isinstance(spec, int) else pyproj.CRS.from_proj4(PROJ_STRINGS[spec])


def _without_code(crs: pyproj.CRS) -> CRS:
    """The CRS with its identifiers removed: what a tool writes for a CRS it holds as parameters."""
    doc = crs.to_json_dict()
    doc.pop("id", None)
    doc.pop("ids", None)
    return CRS.from_wkt(pyproj.CRS.from_json_dict(doc).to_wkt())


def grid_of(crs: pyproj.CRS) -> Affine:
    """A north-up transform of pixels 30 units wide (0.001 of a degree, grad or other angle) placed near the
    middle of the CRS's area of use (or near its origin when it has none), where every projection is defined."""
    area = crs.area_of_use
    if area is not None:
        lon, lat = (area.west + area.east) / 2, (area.south + area.north) / 2
    else:
        names = {p.name: p.value for p in (crs.coordinate_operation.params if crs.coordinate_operation else [])}
        lon = names.get("Longitude of natural origin", names.get("Longitude of projection centre", 0.0)) + 1.0
        lat = names.get("Latitude of natural origin", names.get("Latitude of projection centre", 0.0))
        lat = lat - np.sign(lat) * 10 if abs(lat) > 80 else max(min(lat + 0.5, 60.0), -60.0)
    try:
        to = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    except pyproj.exceptions.ProjError:  # no transformation known between the datums: the CRS's own lon/lat
        to = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    x, y = to.transform(lon, lat)
    if crs.is_geographic:
        return Affine(0.001, 0, round(x, 3), 0, -0.001, round(y, 3))
    return Affine(30, 0, round(x, -1), 0, -30, round(y, -1))


def write_gdal(path: Path, crs: CRS, transform: Affine, **options: Any) -> None:
    """A small GDAL GeoTIFF (tiled, as a COG's full resolution) with ``crs`` and ``transform``; no sidecar."""
    data = np.arange(SIZE * SIZE, dtype=np.uint8).reshape(1, SIZE, SIZE)
    with rasterio.open(
        path, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8", crs=crs,
        transform=transform, **options,
    ) as ds:  # fmt: skip
        ds.write(data)
    sidecar = Path(f"{path}.aux.xml")
    if sidecar.exists():
        sidecar.unlink()


def _gdal_case(spec: int | str, form: str) -> Case:
    def write(path: Path) -> None:
        crs = _crs_input(spec)
        transform = grid_of(crs)
        if form == "epsg":
            write_gdal(path, CRS.from_epsg(spec), transform)
        elif form == "user":
            write_gdal(path, _without_code(crs), transform)
        else:
            write_gdal(path, _without_code(crs), transform, GEOTIFF_KEYS_FLAVOR="ESRI_PE")

    return Case(f"{form}-{spec}", write)


def gdal_cases() -> list[Case]:
    """Every GDAL-written case: EPSG-coded and user-defined forms of each code, user-defined forms of each PROJ
    string, and the ESRI flavour of :data:`ESRI_FLAVOURED`."""
    cases = [_gdal_case(code, form) for code in EPSG_CODES for form in ("epsg", "user")]
    cases += [_gdal_case(name, "user") for name in PROJ_STRINGS]
    cases += [_gdal_case(spec, "esri") for spec in ESRI_FLAVOURED]
    return cases


# --------------------------------------------------------------------------------------------------------------
# Hand-made GeoKey directories (libgeotiff's and other producers' ways of saying things)

_SHORT, _DOUBLE, _ASCII = 0, 34736, 34737


def write_geokeys(
    path: Path,
    keys: dict[int, int | float | str],
    *,
    scale: Sequence[float] | None = (30.0, 30.0, 0.0),
    tiepoint: Sequence[float] | None = (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0),
    matrix: Sequence[float] | None = None,
) -> None:
    """A GeoTIFF whose GeoKey directory holds exactly ``keys`` (GeoKey id -> SHORT, DOUBLE or ASCII value), as
    libgeotiff encodes them (version 1.1.0, keys sorted, doubles in GeoDoubleParams, text '|'-terminated in
    GeoAsciiParams), with the given model tags."""
    directory: list[int] = [1, 1, 0, len(keys)]
    doubles: list[float] = []
    text = b""
    for key in sorted(keys):
        value = keys[key]
        if isinstance(value, str):  # UTF-8, as producers outside ASCII write it (GDAL reads bytes)
            encoded = value.encode()
            directory += [key, _ASCII, len(encoded) + 1, len(text)]
            text += encoded + b"|"
        elif isinstance(value, float):
            directory += [key, _DOUBLE, 1, len(doubles)]
            doubles.append(value)
        else:
            directory += [key, _SHORT, 1, int(value)]
    extratags: list[tuple[Any, ...]] = [(34735, "H", len(directory), directory, True)]
    if doubles:
        extratags.append((34736, "d", len(doubles), doubles, True))
    if text:
        extratags.append((34737, 2, len(text) + 1, text + b"\0", True))
    if scale is not None:
        extratags.append((33550, "d", 3, list(scale), True))
    if tiepoint is not None:
        extratags.append((33922, "d", len(tiepoint), list(tiepoint), True))
    if matrix is not None:
        extratags.append((34264, "d", 16, list(matrix), True))
    data = np.arange(SIZE * SIZE, dtype=np.uint8).reshape(SIZE, SIZE)
    tifffile.imwrite(path, data, tile=(16, 16), extratags=extratags, metadata=None)


# GeoKey ids (GeoTIFF 1.1, with libgeotiff's names)
GT_MODEL, GT_RASTER, GT_CITATION = 1024, 1025, 1026
GEOGRAPHIC, GEOG_CITATION, GEOG_DATUM, GEOG_PM, GEOG_ANGULAR_UNITS = 2048, 2049, 2050, 2051, 2054
GEOG_ELLIPSOID, GEOG_SEMI_MAJOR, GEOG_SEMI_MINOR, GEOG_INV_FLATTENING, GEOG_PM_LONG = 2056, 2057, 2058, 2059, 2061
PROJECTED, PCS_CITATION, PROJECTION, PROJ_CT = 3072, 3073, 3074, 3075
PROJ_LINEAR_UNITS, PROJ_LINEAR_UNIT_SIZE = 3076, 3077
STD_PARALLEL_1, STD_PARALLEL_2, NAT_ORIGIN_LONG, NAT_ORIGIN_LAT = 3078, 3079, 3080, 3081
FALSE_EASTING, FALSE_NORTHING, SCALE_AT_NAT_ORIGIN = 3082, 3083, 3092
STRAIGHT_VERT_POLE_LONG = 3095
VERTICAL, VERTICAL_CITATION, VERTICAL_DATUM, VERTICAL_UNITS = 4096, 4097, 4098, 4099
USER = 32767

_PROJECTED = {GT_MODEL: 1, GT_RASTER: 1}
_TM_15E = {
    GEOG_ANGULAR_UNITS: 9102,
    PROJECTED: USER,
    PROJECTION: USER,
    PROJ_CT: 1,
    PROJ_LINEAR_UNITS: 9001,
    NAT_ORIGIN_LAT: 0.0,
    NAT_ORIGIN_LONG: 15.0,
    SCALE_AT_NAT_ORIGIN: 0.9996,
    FALSE_EASTING: 500000.0,
    FALSE_NORTHING: 0.0,
}
"""A user-defined transverse Mercator (UTM zone 33's parameters), on whatever ellipsoid a case gives."""
_WGS84_USER = {GEOGRAPHIC: 4326, GEOG_ANGULAR_UNITS: 9102, PROJECTED: USER, PROJECTION: USER, PROJ_LINEAR_UNITS: 9001}

HAND_MADE: dict[str, tuple[dict[int, int | float | str], dict[str, Any]]] = {
    # NSIDC's legacy polar stereographic keys: the latitude of true scale in ProjStdParallel1GeoKey, Hughes 1980
    "nsidc-legacy-polar-stereographic-stdparallel": (
        {
            **_PROJECTED,
            GT_CITATION: "NSIDC Sea Ice Polar Stereographic North",
            GEOGRAPHIC: USER,
            GEOG_DATUM: USER,
            GEOG_ELLIPSOID: USER,
            GEOG_SEMI_MAJOR: 6378273.0,
            GEOG_SEMI_MINOR: 6356889.449,
            GEOG_ANGULAR_UNITS: 9102,
            PROJECTED: USER,
            PROJECTION: USER,
            PROJ_CT: 15,
            PROJ_LINEAR_UNITS: 9001,
            STD_PARALLEL_1: 70.0,
            STRAIGHT_VERT_POLE_LONG: -45.0,
            NAT_ORIGIN_LAT: 90.0,
            FALSE_EASTING: 0.0,
            FALSE_NORTHING: 0.0,
        },
        {"tiepoint": (0, 0, 0, -3850000.0, 5850000.0, 0), "scale": (25000.0, 25000.0, 0)},
    ),
    "polar-stereographic-natorigin-as-true-scale": (
        {
            **_PROJECTED,
            **_WGS84_USER,
            PROJ_CT: 15,
            NAT_ORIGIN_LAT: -71.0,
            STRAIGHT_VERT_POLE_LONG: 0.0,
            SCALE_AT_NAT_ORIGIN: 1.0,
            FALSE_EASTING: 0.0,
            FALSE_NORTHING: 0.0,
        },
        {"tiepoint": (0, 0, 0, -1000000.0, 1000000.0, 0)},
    ),
    "mercator-2sp-stdparallel": (
        {
            **_PROJECTED,
            **_WGS84_USER,
            PROJ_CT: 7,
            STD_PARALLEL_1: 41.0,
            NAT_ORIGIN_LONG: 100.0,
            FALSE_EASTING: 0.0,
            FALSE_NORTHING: 0.0,
        },
        {"tiepoint": (0, 0, 0, 100000.0, -3000000.0, 0)},
    ),
    "epsg-code-with-feet-unit-key": (
        {**_PROJECTED, PROJECTED: 32633, PROJ_LINEAR_UNITS: 9002},
        {"tiepoint": (0, 0, 0, 1640000.0, 13120000.0, 0), "scale": (100.0, 100.0, 0.0)},
    ),
    "epsg-code-with-its-own-unit-key": (
        {**_PROJECTED, PROJECTED: 32633, PROJ_LINEAR_UNITS: 9001, GT_CITATION: "WGS 84 / UTM zone 33N"},
        {},
    ),
    "user-defined-tm-us-survey-feet": (
        {
            **_PROJECTED,
            GEOGRAPHIC: 4269,
            GEOG_ANGULAR_UNITS: 9102,
            PROJECTED: USER,
            PROJECTION: USER,
            PROJ_CT: 1,
            PROJ_LINEAR_UNITS: 9003,
            NAT_ORIGIN_LAT: 31.0,
            NAT_ORIGIN_LONG: -110.1666666666667,
            SCALE_AT_NAT_ORIGIN: 0.9999,
            FALSE_EASTING: 700000.0,
            FALSE_NORTHING: 0.0,
        },
        {"tiepoint": (0, 0, 0, 700000.0, 400000.0, 0), "scale": (100.0, 100.0, 0.0)},
    ),
    "user-defined-unit-size": (
        {
            **_PROJECTED,
            GEOGRAPHIC: 4326,
            GEOG_ANGULAR_UNITS: 9102,
            PROJECTED: USER,
            PROJECTION: USER,
            PROJ_CT: 1,
            PROJ_LINEAR_UNITS: USER,
            PROJ_LINEAR_UNIT_SIZE: 0.3,
            NAT_ORIGIN_LAT: 0.0,
            NAT_ORIGIN_LONG: 15.0,
            SCALE_AT_NAT_ORIGIN: 0.9996,
            FALSE_EASTING: 500000.0,
            FALSE_NORTHING: 0.0,
        },
        {"tiepoint": (0, 0, 0, 1666666.0, 13333333.0, 0)},
    ),
    "user-defined-ellipsoid-inverse-flattening": (
        {
            **_PROJECTED,
            GEOGRAPHIC: USER,
            GEOG_DATUM: USER,
            GEOG_ELLIPSOID: USER,
            GEOG_SEMI_MAJOR: 6378388.0,
            GEOG_INV_FLATTENING: 297.0,
            **_TM_15E,
        },
        {},
    ),
    "user-defined-ellipsoid-semi-minor": (
        {
            **_PROJECTED,
            GEOGRAPHIC: USER,
            GEOG_DATUM: USER,
            GEOG_ELLIPSOID: USER,
            GEOG_SEMI_MAJOR: 6378000.0,
            GEOG_SEMI_MINOR: 6357000.0,
            **_TM_15E,
        },
        {},
    ),
    "user-defined-prime-meridian": (
        {
            GT_MODEL: 2,
            GT_RASTER: 1,
            GEOGRAPHIC: USER,
            GEOG_DATUM: 6275,
            GEOG_PM: USER,
            GEOG_PM_LONG: 2.33722917,
            GEOG_ANGULAR_UNITS: 9102,
        },
        {"tiepoint": (0, 0, 0, 1.0, 47.0, 0), "scale": (0.001, 0.001, 0.0)},
    ),
    "geographic-user-defined-grads": (
        {GT_MODEL: 2, GT_RASTER: 1, GEOGRAPHIC: USER, GEOG_DATUM: 6326, GEOG_ANGULAR_UNITS: 9105},
        {"tiepoint": (0, 0, 0, 2.0, 52.0, 0), "scale": (0.001, 0.001, 0.0)},
    ),
    "projection-code-utm": (
        {
            **_PROJECTED,
            GEOGRAPHIC: 4326,
            GEOG_ANGULAR_UNITS: 9102,
            PROJECTED: USER,
            PROJECTION: 16033,
            PROJ_LINEAR_UNITS: 9001,
        },
        {},
    ),
    "no-model-type-with-pcs-code": ({GT_RASTER: 1, PROJECTED: 32633}, {}),
    "vertical-keys-beside-pcs-code": (
        {**_PROJECTED, PROJECTED: 32633, VERTICAL: 5703, VERTICAL_UNITS: 9001, VERTICAL_CITATION: "NAVD88 height"},
        {},
    ),
    "vertical-user-defined-beside-pcs-code": (
        {**_PROJECTED, PROJECTED: 32633, VERTICAL: USER, VERTICAL_DATUM: USER, VERTICAL_UNITS: 9002},
        {},
    ),
    "esri-pe-string-user-model": (
        {
            GT_MODEL: USER,
            GT_RASTER: 1,
            PCS_CITATION: "ESRI PE String = "
            + pyproj.CRS.from_proj4(PROJ_STRINGS["modis-sinusoidal"]).to_wkt("WKT1_ESRI"),
        },
        {"tiepoint": (0, 0, 0, -20015109.354, 10007554.677, 0), "scale": (463.312716528, 463.312716528, 0)},
    ),
    "pe-string-after-a-citation-that-starts-with-a-space": (
        {
            GT_MODEL: USER,
            GT_RASTER: 1,
            GT_CITATION: " MODIS Sinusoidal",
            PCS_CITATION: "ESRI PE String = "
            + pyproj.CRS.from_proj4(PROJ_STRINGS["modis-sinusoidal"]).to_wkt("WKT1_ESRI"),
        },
        {"tiepoint": (0, 0, 0, -20015109.354, 10007554.677, 0), "scale": (463.312716528, 463.312716528, 0)},
    ),
    "citation-outside-ascii": (
        {
            **_PROJECTED,
            GT_CITATION: "Réseau géodésique, méridien central 15°E",
            GEOGRAPHIC: 4326,
            **_TM_15E,
        },
        {},
    ),
    "wkt-in-gt-citation": (
        {GT_MODEL: 1, GT_RASTER: 1, PROJECTED: USER, GT_CITATION: pyproj.CRS.from_epsg(3413).to_wkt("WKT1_GDAL")},
        {"tiepoint": (0, 0, 0, -3850000.0, 5850000.0, 0), "scale": (25000.0, 25000.0, 0)},
    ),
    "unknown-transformation-code": (
        {**_PROJECTED, **_WGS84_USER, PROJ_CT: 250, NAT_ORIGIN_LONG: 10.0},
        {},
    ),
    "geocentric-model": ({GT_MODEL: 3, GT_RASTER: 1, GT_CITATION: "geocentric"}, {}),
    "pixel-is-point-tiepoint": (
        {GT_MODEL: 1, GT_RASTER: 2, PROJECTED: 32633},
        {},
    ),
    "pixel-is-point-rotated-matrix": (
        {GT_MODEL: 1, GT_RASTER: 2, PROJECTED: 32633},
        {
            "scale": None,
            "tiepoint": None,
            "matrix": (25.98, -15.0, 0, 500000.0, -15.0, -25.98, 0, 4000000.0, 0, 0, 0, 0, 0, 0, 0, 1),
        },
    ),
    "rotated-matrix": (
        {GT_MODEL: 1, GT_RASTER: 1, PROJECTED: 32633},
        {
            "scale": None,
            "tiepoint": None,
            "matrix": (25.98, -15.0, 0, 500000.0, -15.0, -25.98, 0, 4000000.0, 0, 0, 0, 0, 0, 0, 0, 1),
        },
    ),
    "matrix-beside-scale-and-tiepoint": (
        {GT_MODEL: 1, GT_RASTER: 1, PROJECTED: 32633},
        {"matrix": (10.0, 0, 0, 600000.0, 0, -10.0, 0, 4100000.0, 0, 0, 0, 0, 0, 0, 0, 1)},
    ),
    "negative-y-pixel-scale": (
        {GT_MODEL: 2, GT_RASTER: 1, GEOGRAPHIC: 4326},
        {"tiepoint": (0, 0, 0, 10.0, -20.0, 0), "scale": (0.5, -0.5, 0.0)},
    ),
    "tiepoint-not-at-the-origin": (
        {GT_MODEL: 1, GT_RASTER: 1, PROJECTED: 32633},
        {"tiepoint": (3.0, 5.0, 0.0, 500000.0, 4000000.0, 0.0)},
    ),
}
"""Hand-made GeoKey directories: (keys, model tags for :func:`write_geokeys`)."""


def hand_made_cases() -> list[Case]:
    """A case per :data:`HAND_MADE` entry."""

    def case(name: str) -> Case:
        keys, model = HAND_MADE[name]
        return Case(f"keys-{name}", lambda path: write_geokeys(path, keys, **model))

    return [case(name) for name in HAND_MADE]


def all_cases() -> list[Case]:
    """Every generated case."""
    return gdal_cases() + hand_made_cases()


def quiet_gdal() -> dict[str, str]:
    """GDAL options for reading a file as it is (no sidecar), as the expectation of these tests."""
    return {"GDAL_PAM_ENABLED": "NO", "CPL_LOG": os.devnull}


# --------------------------------------------------------------------------------------------------------------
# Comparing with GDAL


@dataclass(frozen=True)
class GdalView:
    """What GDAL (rasterio) reads of a file's georeferencing."""

    crs: CRS | None
    transform: Affine | None
    shape: tuple[int, int]
    engineering: bool = False
    """GDAL's CRS places no pixel on a map: a LOCAL_CS (a name and a unit) or a geocentric CRS (X/Y/Z)."""


def gdal_view(path: Path) -> GdalView:
    """GDAL's reading of ``path`` (its first image), without sidecars."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.Env(**quiet_gdal()), rasterio.open(path) as ds:
            crs = ds.crs
            georeferenced = not ds.transform.is_identity and not ds.gcps[0]
            transform = ds.transform if georeferenced else None
            engineering = crs is not None and _wkt2(crs).type_name in {"Engineering CRS", "Geocentric CRS"}
            return GdalView(crs, transform, (ds.height, ds.width), engineering)


def _wkt2(crs: CRS) -> pyproj.CRS:
    """GDAL's CRS as PROJ reads it. WKT2: in GDAL's WKT1 a prime meridian's longitude is in degrees whatever the
    angular unit, which PROJ reads in the unit (a Paris meridian in grads would move)."""
    return pyproj.CRS.from_wkt(crs.to_wkt(version="WKT2_2019"))


def _lonlat(crs: pyproj.CRS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    to = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    return to.transform(x, y, errcheck=False)


def difference(ours: str | None, ours_transform: Sequence[float] | None, gdal: GdalView) -> str | None:
    """How stackcube's CRS and transform differ from GDAL's as places (a 5 x 5 lattice of the image's points, through
    each CRS to longitude and latitude on its own datum and through PROJ's transformation to WGS 84; the ellipsoids
    and prime meridians compared), or None.

    ``same places, not same names``: 1e-7 degree (about 1 cm) apart at most.
    """
    if gdal.transform is not None:
        if ours_transform is None:
            return "no transform (GDAL: one)"
        if not np.allclose(ours_transform, tuple(gdal.transform)[:6], rtol=1e-12, atol=1e-9):
            return f"transform {tuple(ours_transform)} != GDAL's {tuple(gdal.transform)[:6]}"
    elif ours_transform is not None:
        return f"transform {tuple(ours_transform)} where GDAL reads none"
    if gdal.crs is None or gdal.engineering:
        return None if ours is None else f"CRS {ours[:60]!r} where GDAL reads {'a LOCAL_CS' if gdal.crs else 'none'}"
    if ours is None:
        return "no CRS (GDAL: " + (gdal.crs.to_proj4() or gdal.crs.to_wkt()[:80]) + ")"
    mine, theirs = pyproj.CRS.from_user_input(ours), _wkt2(gdal.crs)
    if mine.is_geographic != theirs.is_geographic:
        return f"geographic {mine.is_geographic} != GDAL's {theirs.is_geographic}"
    e1, e2 = mine.ellipsoid, theirs.ellipsoid
    if (
        e1 is None
        or e2 is None
        or not np.isclose(e1.semi_major_metre, e2.semi_major_metre, rtol=0, atol=1e-3)
        or (not np.isclose(e1.semi_minor_metre, e2.semi_minor_metre, rtol=0, atol=1e-3))
    ):
        return f"ellipsoid {e1} != GDAL's {e2}"
    pm1, pm2 = mine.prime_meridian, theirs.prime_meridian
    if pm1 is None or pm2 is None or not np.isclose(_pm_degrees(pm1), _pm_degrees(pm2), atol=1e-9):
        return f"prime meridian {pm1} != GDAL's {pm2}"
    t = gdal.transform or Affine.identity()
    rows, cols = gdal.shape
    px, py = (v.ravel() for v in np.meshgrid(np.linspace(0, cols, 5), np.linspace(0, rows, 5)))
    x, y = t.c + t.a * px + t.b * py, t.f + t.d * px + t.e * py
    lon1, lat1 = _lonlat(mine, x, y)
    lon2, lat2 = _lonlat(theirs, x, y)
    defined = np.isfinite(lon2) & np.isfinite(lat2)
    if not np.array_equal(np.isfinite(lon1) & np.isfinite(lat1), defined):
        return "places defined at other points of the image than GDAL's"
    if not defined.any():
        return None  # (a grid wholly off its body: nothing to compare, and both say so)
    far = max(np.max(np.abs(lon1[defined] - lon2[defined])), np.max(np.abs(lat1[defined] - lat2[defined])))
    if far > 1e-7:
        return f"places up to {far:.3g} degree from GDAL's ({mine.to_proj4()} vs {theirs.to_proj4()})"
    try:  # the datums too: both through PROJ's transformation to WGS 84 (a lost datum shift is metres)
        to_wgs84 = [pyproj.Transformer.from_crs(c, "EPSG:4326", always_xy=True) for c in (mine, theirs)]
        (a_lon, a_lat), (b_lon, b_lat) = (f.transform(x[defined], y[defined], errcheck=True) for f in to_wgs84)
    except pyproj.exceptions.ProjError:
        return None  # another body than the Earth, or no transformation known: the ellipsoids were compared
    far = max(np.max(np.abs(np.asarray(a_lon) - b_lon)), np.max(np.abs(np.asarray(a_lat) - b_lat)))
    if far > 1e-7:
        return f"places up to {far:.3g} degree from GDAL's on WGS 84 (another datum: {mine.datum} vs {theirs.datum})"
    return None


def _pm_degrees(pm: Any) -> float:
    factor = {"degree": 1.0, "grad": 0.9, "radian": 180 / np.pi}.get(pm.unit_name, 1.0)
    return float(pm.longitude) * factor
