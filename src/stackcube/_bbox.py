"""Bounding boxes checked once, where they come in (a search, a clip, a regrid), so a wrong one is caught with a
message that says which bound is wrong and what was probably meant, instead of "matched no items" or a PROJ error.

A bbox is ``(west, south, east, north)``, in longitude/latitude degrees (EPSG:4326) unless a CRS is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stackcube.errors import BboxError

__all__ = ["Bbox", "check_bbox", "latitude_first"]

Bbox = tuple[float, float, float, float]

ORDER = "(west, south, east, north)"


def _show(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def check_bbox(bbox: Any, *, crs: str | None = None, name: str = "bbox", other_crs: str = "") -> Bbox:
    """``bbox`` as four floats, or a :class:`BboxError` naming what is wrong with it.

    Without ``crs`` the bbox is in degrees: a projected-looking one (metres), latitude outside ±90 (often latitude
    given first) and longitude outside ±180 are refused with the corrected order where there is one. In any CRS a
    bound on the wrong side of its pair is refused saying which; a box crossing the antimeridian is refused (not
    supported yet). A point or a line (west == east) is allowed: it selects the items that touch it. ``other_crs``
    says how the caller takes a bbox in another CRS (added to the message for a projected-looking one).
    """
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        msg = f"{name} must be four numbers {ORDER}; got {bbox!r}"
        raise BboxError(msg) from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        msg = f"{name} must be four finite numbers {ORDER}; got {bbox!r}"
        raise BboxError(msg)
    west, south, east, north = values
    given = _show(values)
    if crs is None:
        if any(abs(v) > 360 for v in values):
            msg = (
                f"{name} {given} is not in degrees (it looks like projected coordinates, metres?); give it as "
                f"{ORDER} in longitude/latitude (EPSG:4326){other_crs}"
            )
            raise BboxError(msg)
        if abs(south) > 90 or abs(north) > 90:
            if abs(west) <= 90 and abs(east) <= 90 and abs(south) <= 180 and abs(north) <= 180:
                msg = (
                    f"{name} {given} has a latitude outside -90..90: it looks like latitude first; the order is "
                    f"{ORDER}: {_show((south, west, north, east))}"
                )
            else:
                msg = f"{name} {given} has a latitude outside -90..90; the order is {ORDER} in degrees"
            raise BboxError(msg)
        if abs(west) > 180 or abs(east) > 180:
            msg = f"{name} {given} has a longitude outside -180..180; the order is {ORDER} in degrees"
            raise BboxError(msg)
    if south > north:
        msg = (
            f"{name} {given}: south {south:g} is north of north {north:g}; the order is {ORDER}: "
            f"{_show((west, north, east, south))}"
        )
        raise BboxError(msg)
    if west > east:
        if crs is None and west > 0 > east and west - east > 180:
            msg = (
                f"{name} {given} crosses the antimeridian (west {west:g} > east {east:g}), which stackcube does "
                f"not support yet: build one cube each side, {_show((west, south, 180, north))} and "
                f"{_show((-180, south, east, north))}"
            )
        else:
            msg = (
                f"{name} {given}: west {west:g} is east of east {east:g}; the order is {ORDER}: "
                f"{_show((east, south, west, north))}"
            )
        raise BboxError(msg)
    return values


def latitude_first(bbox: Bbox) -> Bbox | None:
    """The bbox read the other way round, when that is a valid lon/lat bbox too (a hint when a search found
    nothing: latitude-first boxes inside ±90 cannot be told apart otherwise)."""
    west, south, east, north = bbox
    swapped = (south, west, north, east)
    return swapped if abs(west) <= 90 and abs(east) <= 90 and swapped != bbox else None
