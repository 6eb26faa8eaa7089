"""GeoTIFF and GDAL metadata of one IFD: CRS, affine transform, nodata, per-band scale/offset. Pure.

tifffile decodes the GeoKeyDirectory into named keys. Turning GeoKeys into a CRS is GDAL's GeoTIFF driver's work
(``GTiffDatasetReadProjection`` and libgeotiff's normalization: dozens of coordinate transformations, each with its
own parameter keys, unit keys that override a code's unit, ESRI PE strings and WKT in citations, user-defined
datums, ellipsoids and prime meridians), and GDAL is what every reader of the corpus is checked against: so GDAL
itself (through rasterio, a dependency for warping already) reads the GeoKey directory, given as a one-pixel TIFF
in memory, once per distinct directory in a process. A directory that only names an EPSG code, as GDAL and most
producers write it for UTM and geographic grids, is read without GDAL (:func:`_named_code`; the same answer,
checked against GDAL on every test file). The transform is each file's: computed here as GDAL computes it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import io
import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyproj

from stackcube.tiff._model import Geo, TiffManifest

__all__ = [
    "GEOKEY_TAGS",
    "crs_of_geokeys",
    "parse_gdal_metadata",
    "parse_geo",
    "parse_nodata",
    "transform_of",
    "with_current_crs",
]

USER_DEFINED = 32767
GEOKEY_TAGS = (34735, 34736, 34737)
"""GeoKeyDirectoryTag, GeoDoubleParamsTag, GeoAsciiParamsTag: what a CRS is read from."""

GeoKeyTags = tuple[tuple[int, Any], ...]
"""The GeoKey tags of an IFD as (tag code, value as tifffile decodes it) pairs: hashable, so a directory is read
once."""


def parse_geo(geotiff_tags: dict[str, Any] | None, raw: Mapping[int, Any] | None = None) -> Geo | None:
    """Return the CRS and transform described by tifffile's ``TiffPage.geotiff_tags`` and the raw GeoKey tags
    ``raw`` (tag code -> value, :data:`GEOKEY_TAGS`), or None. A CRS GDAL cannot read from the GeoKeys is None."""
    if not geotiff_tags:
        return None
    keys = {k: _plain(v) for k, v in geotiff_tags.items()}
    raster_type: Literal["area", "point"] = "point" if keys.get("GTRasterTypeGeoKey") == 2 else "area"
    transform = transform_of(keys, raster_type)
    geokeys = {k: v for k, v in keys.items() if isinstance(k, str) and k.endswith("GeoKey")}  # not unknown ids
    crs = _named_code(geokeys)
    if crs is None and raw:
        crs = crs_of_geokeys(tuple((code, _hashable(raw[code])) for code in GEOKEY_TAGS if code in raw))
    return Geo(crs=crs, transform=transform, raster_type=raster_type, geokeys=geokeys)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, list):
        return tuple(value)
    return value


def transform_of(keys: dict[str, Any], raster_type: str) -> tuple[float, float, float, float, float, float] | None:
    """The affine transform of pixel corners from the model tags in ``keys`` (as ``geotiff_tags`` names them), as
    GDAL's GeoTIFF driver derives it: a pixel scale and one tie point first (the y scale's sign dropped: a positive
    scale means north-up), else ModelTransformation; PixelIsPoint moves the origin half a pixel
    (GTIFF_POINT_GEO_IGNORE=NO, GDAL's default) whichever gave it."""
    scale, tie = keys.get("ModelPixelScale"), keys.get("ModelTiepoint")
    if scale is not None and tie is not None and len(scale) >= 2 and scale[0] != 0 and scale[1] != 0:
        tie = np.asarray(tie, dtype=float).reshape(-1)
        if tie.size != 6:
            return None  # several tie points are GCPs, not an affine grid
        sx, sy = float(scale[0]), float(scale[1])
        i, j, x, y = tie[0], tie[1], tie[3], tie[4]
        a, b, d, e = sx, 0.0, 0.0, -abs(sy)  # GTIFF_HONOUR_NEGATIVE_SCALEY=NO, GDAL's default
        c, f = x - i * a, y - j * e
    elif "ModelTransformation" in keys:
        m = np.asarray(keys["ModelTransformation"], dtype=float).reshape(4, 4)
        a, b, c, d, e, f = m[0, 0], m[0, 1], m[0, 3], m[1, 0], m[1, 1], m[1, 3]
    else:
        return None
    if raster_type == "point":
        # GDAL (GTIFF_POINT_GEO_IGNORE=NO, the default) moves the origin from the first pixel's centre to its corner
        c -= 0.5 * a + 0.5 * b
        f -= 0.5 * d + 0.5 * e
    return (float(a), float(b), float(c), float(d), float(e), float(f))


_NAMING_KEYS = frozenset(
    {
        "GTModelTypeGeoKey",
        "GTRasterTypeGeoKey",
        "GTCitationGeoKey",
        "GeogCitationGeoKey",
        "PCSCitationGeoKey",
        "ProjectedCSTypeGeoKey",
        "GeographicTypeGeoKey",
        "GeogAngularUnitsGeoKey",
        "ProjLinearUnitsGeoKey",
    }
)
"""Keys of a directory that only names an EPSG code (vertical keys aside: GDAL reports the horizontal CRS)."""
_ELLIPSOID_KEYS = {"GeogSemiMajorAxisGeoKey": 0, "GeogInvFlatteningGeoKey": 1, "GeogSemiMinorAxisGeoKey": 2}
"""Keys GDAL writes beside a geographic code (its ellipsoid's axes): naming, when they are the code's own."""


def _named_code(keys: Mapping[str, Any]) -> str | None:
    """``EPSG:<code>`` for a directory that names a current EPSG code and nothing GDAL would read differently (no
    parameter keys, no unit key other than the code's own, no PE string); None for every other directory, which
    GDAL reads."""
    if any(k not in _NAMING_KEYS and k not in _ELLIPSOID_KEYS and not k.startswith("Vertical") for k in keys):
        return None
    if "ESRI PE String" in str(keys.get("PCSCitationGeoKey", "")):
        return None
    model, projected, geographic = (keys.get(k) for k in ("GTModelTypeGeoKey", "ProjectedCSTypeGeoKey",
                                                          "GeographicTypeGeoKey"))  # fmt: skip
    if projected is not None:
        if model not in {None, 1} or geographic is not None:
            return None
        code = projected
    elif model == 2 and geographic is not None:
        code = geographic
    else:
        return None
    units = _code_units(code) if isinstance(code, int) and 0 < code < USER_DEFINED else None
    if units is None:
        return None
    kind, linear, angular = units
    if (kind == "projected") != (projected is not None):
        return None
    if keys.get("ProjLinearUnitsGeoKey", linear) != linear or keys.get("GeogAngularUnitsGeoKey", angular) != angular:
        return None
    axes = _code_ellipsoid(code)
    for key, n in _ELLIPSOID_KEYS.items():
        if key in keys and not (axes and isinstance(keys[key], int | float) and math.isclose(keys[key], axes[n])):
            return None
    return f"EPSG:{code}"


@functools.lru_cache(maxsize=256)
def _code_ellipsoid(code: int) -> tuple[float, float, float] | None:
    """(semi-major axis, inverse flattening, semi-minor axis) of an EPSG CRS's ellipsoid (0 flattening: a sphere)."""
    ellipsoid = pyproj.CRS.from_epsg(code).ellipsoid
    if ellipsoid is None:
        return None
    return ellipsoid.semi_major_metre, ellipsoid.inverse_flattening, ellipsoid.semi_minor_metre


@functools.lru_cache(maxsize=256)
def _code_units(code: int) -> tuple[str, int | None, int | None] | None:
    """(kind, linear unit code, angular unit code) of a current 2D EPSG CRS; None for a deprecated code (GDAL reads
    its replacement), a code PROJ does not know, or a CRS of another kind."""
    try:
        crs = pyproj.CRS.from_epsg(code)
    except pyproj.exceptions.CRSError:
        return None
    if crs.is_deprecated or len(crs.axis_info) != 2 or not (crs.is_projected or crs.is_geographic):
        return None
    base = crs.geodetic_crs
    angular = base.axis_info[0].unit_code if base is not None and base.axis_info else None
    linear = crs.axis_info[0].unit_code if crs.is_projected else None
    return (
        "projected" if crs.is_projected else "geographic",
        int(linear) if linear and linear.isdigit() else None,
        # EPSG's axes count in "degree (supplier to define representation)", 9122; GeoTIFF says degree, 9102
        9102 if angular == "9122" else int(angular) if angular and angular.isdigit() else None,
    )


@functools.lru_cache(maxsize=256)
def crs_of_geokeys(tags: GeoKeyTags) -> str | None:
    """The CRS GDAL reads from a GeoKey directory (``tags``: :data:`GeoKeyTags`), as ``EPSG:<code>`` when it is
    exactly a registry CRS, else WKT2; None when GDAL reads no CRS, or only a LOCAL_CS (a name and a unit) or a
    geocentric CRS (X/Y/Z from the Earth's centre), neither of which places a pixel on a map."""
    import rasterio
    import rasterio.io
    import tifffile

    types = {34735: "H", 34736: "d"}
    extratags: list[tuple[Any, ...]] = [
        (33550, "d", 3, (1.0, 1.0, 0.0), True),  # a grid, so GDAL does not warn that there is none
        (33922, "d", 6, (0.0,) * 6, True),
    ]
    for code, value in tags:
        if code == 34737:  # GeoAsciiParams as stored, byte for byte (keys address it by offset)
            text = value if isinstance(value, bytes) else str(value).encode() + b"\0"
            extratags.append((code, 2, len(text), text, True))
            continue
        values = value if isinstance(value, tuple) else (value,)
        extratags.append((code, types[code], len(values), value, True))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((1, 1), np.uint8), extratags=extratags, metadata=None)
    with (
        rasterio.Env(GDAL_PAM_ENABLED="NO", GTIFF_REPORT_COMPD_CS="NO", GTIFF_POINT_GEO_IGNORE="NO"),
        rasterio.io.MemoryFile(buffer.getvalue()) as memory,
        memory.open() as dataset,
    ):
        read = dataset.crs
    if read is None:
        return None
    crs = pyproj.CRS.from_wkt(read.to_wkt(version="WKT2_2019"))
    if crs.type_name in {"Engineering CRS", "Geocentric CRS"}:  # a name and a unit, or X/Y/Z: no map position
        return None
    doc = crs.to_json_dict()
    named = doc.get("id") or {}
    if named.get("authority") == "EPSG":
        code = int(named["code"])
        if pyproj.CRS.from_epsg(code).equals(crs):
            return f"EPSG:{code}"
        doc.pop("id")  # GDAL keeps the code of a CRS whose GeoKeys change it: the code would name another CRS
        crs = pyproj.CRS.from_json_dict(doc)
    return str(crs.to_wkt())


def with_current_crs(manifest: TiffManifest) -> TiffManifest:
    """A manifest stored before CRSs were read as GDAL reads them, with each IFD's CRS read so from its decoded
    GeoKeys (a cube built then and refreshed now keeps one CRS per grid, and a CRS read wrongly then is mended);
    ``manifest`` itself when it needs nothing."""
    if all(ifd.geo is None or ifd.geo.as_gdal for ifd in manifest.ifds):
        return manifest
    ifds = tuple(
        ifd if ifd.geo is None or ifd.geo.as_gdal else dataclasses.replace(ifd, geo=_current(ifd.geo))
        for ifd in manifest.ifds
    )
    return dataclasses.replace(manifest, ifds=ifds)


def _current(geo: Geo) -> Geo:
    crs = _named_code(geo.geokeys) if geo.geokeys else None
    if crs is None and geo.geokeys:
        crs = crs_of_geokeys(_encoded(geo.geokeys))
    return dataclasses.replace(geo, crs=crs, as_gdal=True)


def _encoded(geokeys: Mapping[str, Any]) -> GeoKeyTags:
    """The GeoKey tags of decoded keys, as libgeotiff writes them (keys by id, SHORTs in the directory, doubles in
    GeoDoubleParams, text '|'-terminated in GeoAsciiParams): tifffile decodes the directory but writes none."""
    import tifffile

    ids = {key.name: int(key.value) for key in tifffile.TIFF.GEO_KEYS}
    entries = sorted((ids[name], value) for name, value in geokeys.items() if name in ids)
    directory, doubles, text = [1, 1, 0, len(entries)], list[float](), b""
    for key, value in entries:
        if isinstance(value, str):
            encoded = value.encode()
            directory += [key, 34737, len(encoded) + 1, len(text)]
            text += encoded + b"|"
        elif isinstance(value, float) or (isinstance(value, list | tuple) and value):
            values = [float(v) for v in (value if isinstance(value, list | tuple) else [value])]
            directory += [key, 34736, len(values), len(doubles)]
            doubles += values
        else:
            directory += [key, 0, 1, int(value)]
    tags: list[tuple[int, Any]] = [(34735, tuple(directory))]
    if doubles:
        tags.append((34736, tuple(doubles)))
    if text:
        tags.append((34737, text + b"\0"))
    return tuple(tags)


def parse_nodata(text: str | None, dtype: np.dtype[Any]) -> int | float | None:
    """Parse GDAL_NODATA as GDAL does (a double, then cast to the band type); None when absent or unusable."""
    if text is None:
        return None
    text = str(text).strip().strip("\x00")
    if not text:
        return None
    replacements = {"1.#INF": "inf", "-1.#INF": "-inf", "1.#QNAN": "nan", "-1.#QNAN": "nan", "1.#IND": "nan"}
    try:
        value = float(replacements.get(text, text))
    except ValueError:
        warnings.warn(f"GDAL_NODATA {text!r} is not a number; ignored", stacklevel=2)
        return None
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            return float(dtype.type(value))
    if not math.isfinite(value) or value != math.floor(value):
        return None
    info = np.iinfo(dtype)
    if not info.min <= value <= info.max:
        return None
    return int(value)


def parse_gdal_metadata(xml: str | None, samples: int) -> dict[str, Any]:
    """Dataset items, and per-band scale, offset and description lists, from the GDAL_METADATA XML tag."""
    if not xml:
        return {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        warnings.warn("GDAL_METADATA is not valid XML; ignored", stacklevel=2)
        return {}
    items: dict[str, Any] = {}
    bands: dict[str, list[Any]] = {
        "scale": [None] * samples,
        "offset": [None] * samples,
        "description": [None] * samples,
    }
    for item in root.iter("Item"):
        name, sample, role = item.get("name"), item.get("sample"), item.get("role")
        text = item.text or ""
        if sample is not None and role in bands and sample.isdigit() and int(sample) < samples:
            bands[role][int(sample)] = float(text) if role in {"scale", "offset"} else text
        elif sample is None and name:
            items[name] = text
    out: dict[str, Any] = {}
    if items:
        out["gdal_metadata"] = items
    if any(v is not None for v in bands["scale"]) or any(v is not None for v in bands["offset"]):
        out["scale_factor"] = [1.0 if v is None else v for v in bands["scale"]]
        out["add_offset"] = [0.0 if v is None else v for v in bands["offset"]]
    if any(v is not None for v in bands["description"]):
        out["descriptions"] = bands["description"]
    return out
