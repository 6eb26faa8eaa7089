"""Grid stage: which sources can stand side by side in one Zarr array without resampling.

A Zarr array has one chunk grid, one dtype, one fill value and one codec chain. Sources can share an array when
their :class:`GridKey` is equal: same CRS, same resolution, same grid phase modulo one tile (so their tiles line
up: origins differ by whole tiles), same tile shape and samples per tile, same dtype and nodata, and the same
encoding (compression, predictor, JPEG tables, ...). ``group_by_grid`` is then a dict.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyproj
from affine import Affine

from stackcube.errors import NotGriddableError
from stackcube.sources import Source
from stackcube.tiff import Recipe

__all__ = [
    "GridKey",
    "describe_resolution",
    "distinct_keys",
    "grid_key",
    "group_by_grid",
    "normalize_crs",
    "tile_offset",
    "unit_suffix",
]

PHASE_DECIMALS = 6
"""Phases (in pixels) equal to this many decimals are the same phase."""
SAME_SIZE = 1e-11
"""Relative difference under which two pixel sizes are one: a pixel 1e-11 off lands 1e-7 pixels off 10,000 pixels
away."""
RESOLUTION_DIGITS = 12
"""Pixel sizes equal to this many significant digits are the same size: GDAL derives a MODIS tile's from its own
corners, so neighbours differ in the last bits (463.3127165279169 and 463.3127165279165 m) and still share one
lattice (a 1e-15 difference moves a pixel 10,000 tiles away by nanometres)."""


@dataclass(frozen=True, slots=True)
class GridKey:
    """What sources must share to be chunks of one array. Hashable: grouping is a dict."""

    crs: str
    """``EPSG:<code>`` when the CRS has one, else WKT2."""
    resolution: tuple[float, float]
    """Pixel size (x, y) in CRS units; y is negative for north-up images."""
    phase: tuple[float, float]
    """The grid origin in pixels, modulo one tile (x, y)."""
    chunk: tuple[int, int, int]
    """(samples, rows, columns) of one stored segment."""
    dtype: str
    """Sample dtype."""
    fill_value: str
    """Nodata (STAC's, else the file's) as text (so NaN equals NaN), or ``"none"``."""
    encoding: str
    """The decoding recipe without the image size, as canonical JSON."""
    samples: int = 1
    """Samples (bands) per image: one asset contributes this many bands."""
    strip_rows: int = 0
    """For stripped images, the image height (the last strip's size depends on it); 0 for tiles."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (a cube keeps each array's, so a refresh can place new sources without the old)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GridKey:
        """Inverse of :meth:`to_dict` (a pixel size an older cube stored in full is rounded as keys are now)."""
        values: dict[str, Any] = {f.name: tuple(v) if isinstance(v := d[f.name], list) else v for f in fields(cls)}
        values["resolution"] = tuple(_size(v) for v in values["resolution"])
        return cls(**values)

    def matches(self, other: GridKey) -> bool:
        """The same grid: equal but for pixel sizes that differ by rounding only (relatively, :data:`SAME_SIZE`: two
        sizes either side of a :data:`RESOLUTION_DIGITS` rounding boundary still match)."""
        if self == other:
            return True
        pairs = zip(self.resolution, other.resolution, strict=True)
        close = all(math.isclose(a, b, rel_tol=SAME_SIZE, abs_tol=0.0) for a, b in pairs)
        return close and dataclasses.replace(other, resolution=self.resolution) == self

    def describe(self) -> str:
        """A short human description: ``EPSG:32635 10 m, 1024x1024 tiles, uint16``."""
        bands = f", {self.chunk[0]} samples per tile" if self.chunk[0] > 1 else ""
        return f"{self.describe_resolution()}, {self.chunk[1]}x{self.chunk[2]} tiles{bands}, {self.dtype}"

    def describe_resolution(self) -> str:
        """``EPSG:32635 10 m``, ``EPSG:4326 0.0001``, or ``a custom CRS 30 m`` for a CRS without a code."""
        return describe_resolution(self.crs, self.resolution[0])


def describe_resolution(crs: str, pixel: float) -> str:
    """A CRS and pixel size for people: ``EPSG:32635 10 m``, ``EPSG:2263 10 ftUS``, ``EPSG:4326 0.0001``, ``a custom
    CRS 30 m``."""
    name = crs if crs.startswith("EPSG:") else "a custom CRS"
    unit = unit_suffix(crs)
    return f"{name} {abs(pixel):g}" + (f" {unit}" if unit else "")


@functools.lru_cache(maxsize=64)
def unit_suffix(crs: str) -> str:
    """The short name of a projected CRS's unit (``m``, ``ft``, ``ftUS``, or PROJ's name of another), "" for a
    geographic CRS (degrees go without)."""
    parsed = pyproj.CRS.from_user_input(crs)
    if parsed.is_geographic or not parsed.axis_info:
        return ""
    unit = parsed.axis_info[0].unit_name
    short = {"metre": "m", "meter": "m", "foot": "ft", "US survey foot": "ftUS"}.get(unit, unit)
    return re.sub(r"[^A-Za-z0-9]", "", short)


@functools.lru_cache(maxsize=1024)
def normalize_crs(crs: str) -> str:
    """``EPSG:<code>`` when pyproj finds an exact code, else WKT2 (so equal CRSs compare equal)."""
    parsed = pyproj.CRS.from_user_input(crs)
    code = parsed.to_epsg(min_confidence=100)
    return f"EPSG:{code}" if code else parsed.to_wkt()


def grid_key(source: Source) -> GridKey:
    """The GridKey of a source; raises :class:`~stackcube.errors.NotGriddableError` when it has no usable grid."""
    image = source.image
    if source.base_transform is None or source.crs is None:
        msg = "no CRS and affine transform (not georeferenced, or only ground control points)"
        raise NotGriddableError(msg)
    t = source.transform
    if t.b != 0 or t.d != 0:
        msg = f"a rotated or sheared grid (transform {tuple(t)[:6]}) cannot be stacked without resampling"
        raise NotGriddableError(msg)
    _, rows, cols = image.chunk_shape
    phase = (
        round((t.c / t.a) % cols, PHASE_DECIMALS) % cols,
        round((t.f / t.e) % rows, PHASE_DECIMALS) % rows,
    )
    fill = source.nodata
    return GridKey(
        crs=normalize_crs(source.crs),
        resolution=(_size(t.a), _size(t.e)),
        phase=phase,
        chunk=image.chunk_shape,
        dtype=image.dtype.name,
        fill_value="none" if fill is None else ("nan" if isinstance(fill, float) and math.isnan(fill) else repr(fill)),
        encoding=_encoding(image.recipe),
        samples=image.shape[0],
        strip_rows=0 if image.recipe.tiled else image.shape[1],
    )


def _size(value: float) -> float:
    """A pixel size to :data:`RESOLUTION_DIGITS` significant digits."""
    return float(f"{value:.{RESOLUTION_DIGITS}g}")


@functools.lru_cache(maxsize=1024)
def _encoding(recipe: Recipe) -> str:
    """How segments are encoded, whatever the image size (recipes are equal values: sources share the entry)."""
    config = recipe.to_config()
    for size in ("image_length", "image_width"):
        config.pop(size)
    return json.dumps(config, sort_keys=True)


def group_by_grid(sources: Iterable[Source]) -> tuple[dict[GridKey, list[Source]], list[tuple[Source, str]]]:
    """Group sources by GridKey (each keeps the order sources came in); also return ungriddable ones with why."""
    by_key: dict[GridKey, list[Source]] = defaultdict(list)
    alike: dict[GridKey, list[GridKey]] = {}
    rejected: list[tuple[Source, str]] = []
    for source in sources:
        try:
            key = grid_key(source)
        except NotGriddableError as exc:
            rejected.append((source, str(exc)))
            continue
        if key not in by_key:
            key = _seen_match(key, alike) or key
        by_key[key].append(source)
    return dict(by_key), rejected


def distinct_keys(keys: Iterable[GridKey]) -> list[GridKey]:
    """``keys`` without those that match (:meth:`GridKey.matches`) one before them."""
    alike: dict[GridKey, list[GridKey]] = {}
    return [key for key in keys if _seen_match(key, alike) is None]


def _seen_match(key: GridKey, alike: dict[GridKey, list[GridKey]]) -> GridKey | None:
    """The first key seen before that matches ``key`` (:meth:`GridKey.matches`); None if none does, and ``key`` is
    now seen.

    ``alike`` holds the keys seen, in order, under their key without the pixel size: keys that match are equal but
    for it, so only those under one entry are compared (a union of thousands of scenes has thousands of grids, and
    comparing each with every one before was most of its plan).
    """
    seen = alike.setdefault(dataclasses.replace(key, resolution=(0.0, 0.0)), [])
    found = next((k for k in seen if k.matches(key)), None)
    if found is None:
        seen.append(key)
    return found


def tile_offset(t: Affine, origin: tuple[float, float], key: GridKey) -> tuple[int, int]:
    """(row, column) of the first tile of a source whose transform is ``t`` in the tile grid whose corner is
    ``origin`` (x, y)."""
    _, rows, cols = key.chunk
    col = (t.c - origin[0]) / (t.a * cols)
    row = (t.f - origin[1]) / (t.e * rows)
    return int(np.rint(row)), int(np.rint(col))
