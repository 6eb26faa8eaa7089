"""Georeferencing of arrays, written once: pixel-centre coordinates and the ``spatial_ref`` coordinate.

Every array stackcube presents (a stored level, a union, one IFD of a TIFF) carries x/y at pixel centres and a
``spatial_ref`` scalar whose ``crs_wkt`` (CF) and ``GeoTransform`` (GDAL) attributes rioxarray and odc-geo read.
Transforms are :class:`affine.Affine` (the type rasterio, odc-geo and stackstac use) from the planner on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pyproj
import xarray as xr
from affine import Affine

__all__ = ["Affine", "crs_name", "pixel_centres", "pixel_size", "spatial_coords", "to_affine"]


def to_affine(values: Sequence[float]) -> Affine:
    """An Affine from its first six coefficients (a, b, c, d, e, f), as GeoTIFF, STAC ``proj:transform`` and JSON
    give them."""
    a, b, c, d, e, f = (float(v) for v in values[:6])
    return Affine(a, b, c, d, e, f)


def pixel_centres(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the pixel centres of a north-up grid."""
    y = transform.f + transform.e * (np.arange(height) + 0.5)
    x = transform.c + transform.a * (np.arange(width) + 0.5)
    return y, x


@functools.lru_cache(maxsize=64)
def crs_name(crs: str) -> str:
    """A CRS for people: ``EPSG:32633``, ``"NSIDC Sea Ice Polar Stereographic North" (WKT2)``, or for a CRS without
    a name, its method: ``an unnamed Sinusoidal CRS (WKT2)``."""
    if crs.startswith("EPSG:"):
        return crs
    try:
        parsed = pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError:
        return "a WKT"
    if parsed.name not in {"", "unnamed", "unknown"}:
        return f'"{parsed.name}" (WKT2)'
    method = parsed.coordinate_operation.method_name if parsed.coordinate_operation else parsed.type_name
    return f"an unnamed {method} CRS (WKT2)"


@functools.lru_cache(maxsize=64)
def _wkt(crs: str) -> str:
    return str(pyproj.CRS.from_user_input(crs).to_wkt())


def spatial_coords(crs: str | None, transform: Affine, height: int, width: int) -> dict[str, xr.Variable]:
    """``y`` and ``x`` at pixel centres (only for a north-up grid) and ``spatial_ref`` (``crs_wkt``, ``GeoTransform``).

    Examples
    --------
    >>> coords = spatial_coords("EPSG:32735", Affine(10.0, 0.0, 499980.0, 0.0, -10.0, 9300040.0), 2, 3)
    >>> coords["x"].values.tolist(), coords["spatial_ref"].attrs["GeoTransform"]
    ([499985.0, 499995.0, 500005.0], '499980.0 10.0 0.0 9300040.0 0.0 -10.0')
    """
    t = transform
    coords: dict[str, xr.Variable] = {}
    if t.b == 0 and t.d == 0:
        y, x = pixel_centres(t, height, width)
        coords["y"] = xr.Variable("y", y, {"standard_name": "projection_y_coordinate", "axis": "Y"})
        coords["x"] = xr.Variable("x", x, {"standard_name": "projection_x_coordinate", "axis": "X"})
    attrs = {"GeoTransform": " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))}
    if crs is not None:
        wkt = _wkt(crs)
        attrs.update(crs_wkt=wkt, spatial_ref=wkt)
    coords["spatial_ref"] = xr.Variable((), np.int64(0), attrs)
    return coords


def pixel_size(data: xr.DataArray) -> tuple[float, float]:
    """(x, y) size of a pixel of an array :func:`spatial_coords` described, signed as the transform's ``a`` and
    ``e``: from its ``GeoTransform``, which stays true after slicing (its origin does not; x/y do)."""
    _, a, _, _, _, e = (float(v) for v in str(data["spatial_ref"].attrs["GeoTransform"]).split())
    return a, e
