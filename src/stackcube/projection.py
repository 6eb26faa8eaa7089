"""Projection stage: what STAC's projection extension says of an asset's grid, a second witness of the file's.

Items state ``proj:code`` (or ``proj:epsg``), ``proj:wkt2``, ``proj:projjson``, ``proj:transform`` and
``proj:shape``, on the asset or (for every asset) on the item. The pixels are the file's, so its georeferencing
wins where it has one; STAC's is compared with it (CRSs as places: a lattice of points of the image through each,
within :data:`SAME_PLACE` metres; transforms and shapes as numbers) and every disagreement is said in the plan's
report. Where the file's GeoKeys give no CRS, STAC's is used, and where the file has no georeferencing at all,
STAC's CRS and transform, each said in the report too.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
from pyproj.crs import GeographicCRS

from stackcube._georef import Affine, crs_name, to_affine

__all__ = ["SAME_PLACE", "Stated", "disagreements", "stated"]

SAME_PLACE = 0.01
"""Metres: two CRSs that put points of the image no farther apart than this place pixels alike."""


@dataclass(frozen=True, slots=True)
class Stated:
    """What an item says of one asset's grid (asset fields before the item's)."""

    crs: str | None = None
    """``EPSG:<code>`` for an EPSG CRS, else WKT2; None when STAC states none (or one that cannot be read)."""
    field: str | None = None
    """The field the CRS came from: ``proj:code``, ``proj:epsg``, ``proj:wkt2`` or ``proj:projjson``."""
    transform: Affine | None = None
    """``proj:transform``, when stated."""
    shape: tuple[int, int] | None = None
    """``proj:shape`` (rows, columns), when stated."""
    unreadable: str | None = None
    """Why a stated CRS could not be read, for the report."""


CRS_FIELDS = ("proj:code", "proj:epsg", "proj:wkt2", "proj:projjson")
"""The projection extension's CRS fields, in the order they are believed."""


def stated(asset_fields: Mapping[str, Any], properties: Mapping[str, Any]) -> Stated:
    """What ``asset_fields`` (the asset's extra fields), else ``properties`` (the item's), state of the grid."""

    def field(name: str) -> Any:
        return asset_fields[name] if name in asset_fields else properties.get(name)

    crs, said, unreadable = None, None, None
    for where in (asset_fields, properties):  # every CRS field of the asset before any of the item's
        for name in CRS_FIELDS:
            value = where.get(name)
            if value is None or value == "":
                continue
            try:
                crs, said = _crs_text(name, json.dumps(value, sort_keys=True)), name
                break
            except (pyproj.exceptions.CRSError, TypeError, ValueError) as exc:
                unreadable = f"STAC's {name} cannot be read ({str(exc).splitlines()[0][:120]}); it is ignored"
        if crs is not None:
            break
    transform, shape = field("proj:transform"), field("proj:shape")
    return Stated(
        crs=crs,
        field=said,
        transform=_transform(transform),
        shape=(int(shape[0]), int(shape[1])) if _numbers(shape, 2) else None,
        unreadable=unreadable if crs is None else None,
    )


@functools.lru_cache(maxsize=256)
def _crs_text(name: str, value: str) -> str:
    """A stated CRS (``value``: the field's JSON) as ``EPSG:<code>`` when PROJ finds it exactly in the registry,
    else WKT2. Raises CRSError, TypeError or ValueError for one that cannot be read."""
    raw = json.loads(value)
    if name == "proj:epsg":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise TypeError(f"{raw!r} is not an integer EPSG code")
        crs = pyproj.CRS.from_epsg(raw)
    elif name == "proj:projjson":
        crs = pyproj.CRS.from_json_dict(raw)
    else:
        crs = pyproj.CRS.from_user_input(str(raw))
    code = crs.to_epsg(min_confidence=100)
    return f"EPSG:{code}" if code else str(crs.to_wkt())


def _numbers(value: Any, at_least: int) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) >= at_least
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value[:at_least])
    )


def _transform(value: Any) -> Affine | None:
    return to_affine(value) if _numbers(value, 6) else None


def disagreements(said: Stated, crs: str | None, transform: Affine | None, shape: tuple[int, int]) -> tuple[str, ...]:
    """Where STAC and the file (its CRS, transform and full-resolution (rows, columns)) disagree, one phrase each,
    naming no source (the report groups sources by phrase); also a stated CRS that could not be read."""
    out = [said.unreadable] if said.unreadable else []
    if said.crs is not None and crs is not None and said.crs != crs and transform is not None:
        apart = distance(crs, said.crs, transform, shape)
        if not apart <= SAME_PLACE:
            if math.isnan(apart):
                far = "cannot be compared at any point of the image"
            elif math.isinf(apart):
                far = "disagree on which points of the image lie on the Earth"
            else:
                far = f"place points of the image more than {_floor(apart)} apart"
            out.append(
                f"the file's CRS ({crs_name(crs)}) and STAC's {said.field} ({crs_name(said.crs)}) {far}; "
                "the file's is used"
            )
    if said.shape is not None and said.shape != shape:
        out.append(
            f"STAC's proj:shape {list(said.shape)} is not the file's {list(shape)} (rows, columns); the file's is used"
        )
    elif said.transform is not None and transform is not None:
        off = _transform_off(said.transform, transform)
        if off:
            out.append(f"STAC's proj:transform is not the file's ({off}); the file's is used")
    return tuple(out)


def _transform_off(a: Affine, b: Affine) -> str | None:
    """How two transforms differ, or None when they place pixels within a thousandth of a pixel alike."""
    pixel = max(abs(b.a), abs(b.e), abs(b.b), abs(b.d))
    size = np.array([a.a, a.b, a.d, a.e])
    if not np.allclose(size, [b.a, b.b, b.d, b.e], rtol=1e-6, atol=1e-9 * pixel):
        return f"pixels {a.a:g} x {a.e:g} against {b.a:g} x {b.e:g}"
    dx, dy = a.c - b.c, a.f - b.f
    if max(abs(dx), abs(dy)) > 1e-3 * pixel:
        return f"origin {math.hypot(dx, dy):.4g} CRS units away, {math.hypot(dx, dy) / pixel:.3g} pixels"
    return None


def distance(crs: str, other: str, transform: Affine, shape: tuple[int, int]) -> float:
    """The farthest (metres, on ``crs``'s ellipsoid) that points of the image (a 5 x 5 lattice from corner to
    corner) land apart when read in ``crs`` and in ``other``, over the points ``crs`` puts on the body (a
    geostationary full disk's corners are in space); infinity when ``other`` puts one of them nowhere, NaN when
    none can be compared."""
    rows, cols = shape
    px, py = np.meshgrid(np.linspace(0.0, cols, 5), np.linspace(0.0, rows, 5))
    x = (transform.c + transform.a * px + transform.b * py).ravel()
    y = (transform.f + transform.d * px + transform.e * py).ravel()
    try:
        to_own, to_other, geod = _transformers(crs, other)
    except pyproj.exceptions.ProjError:
        return math.nan
    lon1, lat1 = (np.asarray(v, dtype=float) for v in to_own.transform(x, y, errcheck=False))
    placed = np.isfinite(lon1) & np.isfinite(lat1)
    if not placed.any():
        return math.nan
    lon2, lat2 = (np.asarray(v, dtype=float) for v in to_other.transform(x[placed], y[placed], errcheck=False))
    if not (np.isfinite(lon2).all() and np.isfinite(lat2).all()):
        return math.inf
    _, _, apart = geod.inv(lon1[placed], lat1[placed], lon2, lat2)
    return float(np.max(np.asarray(apart, dtype=float)))


@functools.lru_cache(maxsize=64)
def _transformers(crs: str, other: str) -> tuple[pyproj.Transformer, pyproj.Transformer, pyproj.Geod]:
    """From each CRS to ``crs``'s own longitude and latitude (``other``'s through a datum shift if it has another
    datum), and the geodesic of ``crs``'s ellipsoid."""
    own = pyproj.CRS.from_user_input(crs)
    geodetic = own.geodetic_crs
    if geodetic is None:
        raise pyproj.exceptions.ProjError(f"{crs} has no geodetic CRS")
    lonlat = GeographicCRS(datum=geodetic.datum.to_json_dict()) if geodetic.datum is not None else geodetic  # degrees
    return (
        pyproj.Transformer.from_crs(own, lonlat, always_xy=True),
        pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(other), lonlat, always_xy=True),
        lonlat.get_geod() or pyproj.Geod(ellps="WGS84"),
    )


def _floor(metres: float) -> str:
    """The largest of 1 cm, 1 m, 1 km, 100 km and 1,000 km that ``metres`` exceeds: sources whose CRSs disagree
    alike share a line of the report."""
    for limit, text in ((1e6, "1,000 km"), (1e5, "100 km"), (1e3, "1 km"), (1.0, "1 m")):
        if metres > limit:
            return text
    return "1 cm"
