"""GeoTIFF and GDAL metadata of one IFD: CRS, affine transform, nodata, per-band scale/offset. Pure.

tifffile decodes the GeoKeyDirectory into named keys; what no library does for us is turn user-defined keys into a
CRS (GDAL does it in C inside ``GTiffDatasetReadProjection``), so that part is built here with pyproj's classes.
"""

from __future__ import annotations

import enum
import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pyproj
from pyproj.crs import CoordinateOperation, Datum, Ellipsoid, GeographicCRS, ProjectedCRS  # type: ignore[attr-defined]  # not in pyproj.crs.__all__
from pyproj.crs import coordinate_operation as ops
from pyproj.crs.datum import CustomDatum, CustomEllipsoid, CustomPrimeMeridian

from stackcube.tiff._model import Geo

__all__ = ["parse_gdal_metadata", "parse_geo", "parse_nodata", "transform_of"]

USER_DEFINED = 32767


def parse_geo(geotiff_tags: dict[str, Any] | None) -> Geo | None:
    """Return the CRS and transform described by tifffile's ``TiffPage.geotiff_tags``, or None."""
    if not geotiff_tags:
        return None
    keys = {k: _plain(v) for k, v in geotiff_tags.items()}
    raster_type: Literal["area", "point"] = "point" if keys.get("GTRasterTypeGeoKey") == 2 else "area"
    transform = transform_of(keys, raster_type)
    try:
        crs = _crs(keys)
    except (pyproj.exceptions.CRSError, KeyError, ValueError, TypeError) as exc:
        warnings.warn(f"GeoKeys do not describe a CRS that PROJ understands ({exc}); crs is None", stacklevel=2)
        crs = None
    geokeys = {k: v for k, v in keys.items() if isinstance(k, str) and k.endswith("GeoKey")}  # not unknown ids
    return Geo(crs=crs, transform=transform, raster_type=raster_type, geokeys=geokeys)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def transform_of(keys: dict[str, Any], raster_type: str) -> tuple[float, float, float, float, float, float] | None:
    """The affine transform of pixel corners from the model tags in ``keys`` (as ``geotiff_tags`` names them)."""
    if "ModelTransformation" in keys:
        m = np.asarray(keys["ModelTransformation"], dtype=float).reshape(4, 4)
        a, b, c, d, e, f = m[0, 0], m[0, 1], m[0, 3], m[1, 0], m[1, 1], m[1, 3]
    elif "ModelPixelScale" in keys and "ModelTiepoint" in keys:
        tie = np.asarray(keys["ModelTiepoint"], dtype=float).reshape(-1)
        if tie.size != 6:
            return None  # several tie points are GCPs, not an affine grid
        sx, sy = float(keys["ModelPixelScale"][0]), float(keys["ModelPixelScale"][1])
        i, j, x, y = tie[0], tie[1], tie[3], tie[4]
        a, b, c, d, e, f = sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy
    else:
        return None
    if raster_type == "point":
        # GDAL (GTIFF_POINT_GEO_IGNORE=NO, the default) moves the origin from the first pixel's centre to its corner
        c -= 0.5 * a + 0.5 * b
        f -= 0.5 * d + 0.5 * e
    return (float(a), float(b), float(c), float(d), float(e), float(f))


def _crs(keys: dict[str, Any]) -> str | None:
    model = keys.get("GTModelTypeGeoKey")
    projected = keys.get("ProjectedCSTypeGeoKey")
    if projected and projected != USER_DEFINED:
        return f"EPSG:{projected}"
    geographic = keys.get("GeographicTypeGeoKey")
    if model == 2 and geographic and geographic != USER_DEFINED:
        return f"EPSG:{geographic}"
    if model not in {1, 2}:
        return None
    base = _geographic(keys)
    if model == 2:
        return base.to_wkt()
    conversion = _conversion(keys)
    if conversion is None:
        return None
    crs = ProjectedCRS(conversion=conversion, geodetic_crs=base, name=keys.get("GTCitationGeoKey") or "unnamed")
    return crs.to_wkt()


def _geographic(keys: dict[str, Any]) -> pyproj.CRS:
    geographic = keys.get("GeographicTypeGeoKey")
    if geographic and geographic != USER_DEFINED:
        return pyproj.CRS.from_epsg(geographic)
    datum_code = keys.get("GeogGeodeticDatumGeoKey")
    if datum_code and datum_code != USER_DEFINED:
        return GeographicCRS(datum=Datum.from_epsg(datum_code))
    ellipsoid_code = keys.get("GeogEllipsoidGeoKey")
    if ellipsoid_code and ellipsoid_code != USER_DEFINED:
        ellipsoid: Any = Ellipsoid.from_epsg(ellipsoid_code)
    else:
        semi_major = float(keys["GeogSemiMajorAxisGeoKey"])
        inv_flat = keys.get("GeogInvFlatteningGeoKey")
        semi_minor = keys.get("GeogSemiMinorAxisGeoKey")
        if inv_flat:
            ellipsoid = CustomEllipsoid(semi_major_axis=semi_major, inverse_flattening=float(inv_flat))
        else:
            ellipsoid = CustomEllipsoid(semi_major_axis=semi_major, semi_minor_axis=float(semi_minor or semi_major))
    meridian = CustomPrimeMeridian(longitude=float(keys.get("GeogPrimeMeridianLongGeoKey", 0.0)))
    return GeographicCRS(datum=CustomDatum(ellipsoid=ellipsoid, prime_meridian=meridian))


def _p(keys: dict[str, Any], *names: str, default: float = 0.0) -> float:
    for name in names:
        if keys.get(name) is not None:
            return float(keys[name])
    return default


def _conversion(keys: dict[str, Any]) -> Any:
    projection = keys.get("ProjectionGeoKey")
    if projection and projection != USER_DEFINED:
        return CoordinateOperation.from_epsg(projection)
    ct = keys.get("ProjCoordTransGeoKey")
    lat0 = _p(keys, "ProjNatOriginLatGeoKey", "ProjCenterLatGeoKey", "ProjFalseOriginLatGeoKey")
    lon0 = _p(keys, "ProjNatOriginLongGeoKey", "ProjCenterLongGeoKey", "ProjFalseOriginLongGeoKey")
    fe = _p(keys, "ProjFalseEastingGeoKey", "ProjFalseOriginEastingGeoKey", "ProjCenterEastingGeoKey")
    fn = _p(keys, "ProjFalseNorthingGeoKey", "ProjFalseOriginNorthingGeoKey", "ProjCenterNorthingGeoKey")
    k0 = _p(keys, "ProjScaleAtNatOriginGeoKey", "ProjScaleAtCenterGeoKey", default=1.0)
    sp1 = _p(keys, "ProjStdParallel1GeoKey")
    sp2 = _p(keys, "ProjStdParallel2GeoKey")
    natural = {
        "latitude_natural_origin": lat0,
        "longitude_natural_origin": lon0,
        "false_easting": fe,
        "false_northing": fn,
    }
    scaled = {**natural, "scale_factor_natural_origin": k0}
    conic = {
        "latitude_first_parallel": sp1,
        "latitude_second_parallel": sp2,
        "latitude_false_origin": lat0,
        "longitude_false_origin": lon0,
        "easting_false_origin": fe,
        "northing_false_origin": fn,
    }
    builders: dict[
        int, Callable[[], Any]
    ] = {  # ProjCoordTransGeoKey -> pyproj conversion (GeoTIFF 1.1, table "Coordinate transformations")
        1: lambda: ops.TransverseMercatorConversion(**scaled),
        7: lambda: ops.MercatorAConversion(**scaled),
        8: lambda: ops.LambertConformalConic2SPConversion(**conic),
        9: lambda: ops.LambertConformalConic1SPConversion(**scaled),
        10: lambda: ops.LambertAzimuthalEqualAreaConversion(**natural),
        11: lambda: ops.AlbersEqualAreaConversion(**conic),
        12: lambda: ops.AzimuthalEquidistantConversion(**natural),
        15: lambda: ops.PolarStereographicAConversion(**scaled),
        17: lambda: ops.EquidistantCylindricalConversion(latitude_first_parallel=sp1, **natural),
        21: lambda: ops.SinusoidalConversion(longitude_natural_origin=lon0, false_easting=fe, false_northing=fn),
        28: lambda: ops.EquidistantCylindricalConversion(latitude_first_parallel=sp1, **natural),
    }
    if ct not in builders:
        return None
    return builders[ct]()


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
