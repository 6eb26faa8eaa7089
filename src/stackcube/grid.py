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
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyproj

from stackcube.tiff import IfdManifest, TiffManifest

__all__ = ["GridKey", "Source", "grid_key", "group_by_grid"]

PHASE_DECIMALS = 6
"""Phases (in pixels) equal to this many decimals are the same phase."""


@dataclass(frozen=True, slots=True)
class Source:
    """One (item, asset) with the manifest of its full-resolution image: a candidate for one band of one time step."""

    item_id: str
    """The STAC item's id."""
    asset: str
    """The asset key."""
    band: str
    """The band name it becomes."""
    datetime: datetime
    """Acquisition time (the item's ``datetime``, else ``start_datetime``)."""
    properties: dict[str, Any]
    """The item's properties."""
    manifest: TiffManifest
    """The asset's TIFF manifest (href, ETag, every IFD)."""
    level: int = 0
    """0 for the full-resolution image, n for its n-th internal overview."""

    @property
    def image(self) -> IfdManifest:
        """The IFD of this level: the first full-resolution image, or its ``level``-th overview."""
        full = self.manifest.images[0]
        if self.level == 0:
            return full
        start = self.manifest.ifds.index(full)
        for entry in self.manifest.ifds[start + 1 :]:
            if entry.role == "image":
                break
            if entry.role == "overview" and entry.level == self.level:
                return entry
        msg = f"{self.manifest.href} has no overview level {self.level}"
        raise NotGriddableError(msg)

    def at_level(self, level: int) -> Source | None:
        """This source's internal overview ``level`` as a source of its own, or None when the file has none."""
        other = dataclasses.replace(self, level=level)
        try:
            _ = other.image
        except NotGriddableError:
            return None
        return other

    @property
    def crs(self) -> str | None:
        """The full-resolution image's CRS (overviews carry no GeoTIFF tags of their own)."""
        geo = self.manifest.images[0].geo
        return None if geo is None else geo.crs

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """This level's affine transform; only sources that passed :func:`grid_key` are planned, and they have one.

        An overview has the full-resolution origin and pixels larger by the ratio of the image sizes, as GDAL
        and rasterio (``overview_level``) derive it.
        """
        full = self.manifest.images[0]
        geo = full.geo
        if geo is None or geo.transform is None:
            msg = f"{self.manifest.href} has no affine transform"
            raise NotGriddableError(msg)
        if self.level == 0:
            return geo.transform
        a, b, c, d, e, f = geo.transform
        image = self.image
        sx, sy = full.shape[2] / image.shape[2], full.shape[1] / image.shape[1]
        return (a * sx, b * sy, c, d * sx, e * sy, f)


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
    """Nodata as text (so NaN equals NaN), or ``"none"``."""
    encoding: str
    """The decoding recipe without the image size, as canonical JSON."""
    samples: int = 1
    """Samples (bands) per image: one asset contributes this many bands."""
    strip_rows: int = 0
    """For stripped images, the image height (the last strip's size depends on it); 0 for tiles."""

    def describe(self) -> str:
        """A short human description: ``EPSG:32635 10 m, 1024x1024 tiles, uint16``."""
        bands = f", {self.chunk[0]} samples per tile" if self.chunk[0] > 1 else ""
        return f"{self.describe_resolution()}, {self.chunk[1]}x{self.chunk[2]} tiles{bands}, {self.dtype}"

    def describe_resolution(self) -> str:
        """``EPSG:32635 10 m``, ``EPSG:4326 0.0001``, or ``a custom CRS 30`` for a CRS without a code."""
        crs = self.crs if self.crs.startswith("EPSG:") else "a custom CRS"
        res = f"{abs(self.resolution[0]):g}"
        return f"{crs} {res}" + ("" if _is_geographic(self.crs) else " m")


@functools.lru_cache(maxsize=1024)
def normalize_crs(crs: str) -> str:
    """``EPSG:<code>`` when pyproj finds an exact code, else WKT2 (so equal CRSs compare equal)."""
    parsed = pyproj.CRS.from_user_input(crs)
    code = parsed.to_epsg(min_confidence=100)
    return f"EPSG:{code}" if code else parsed.to_wkt()


@functools.lru_cache(maxsize=64)
def _is_geographic(crs: str) -> bool:
    return pyproj.CRS.from_user_input(crs).is_geographic


class NotGriddableError(ValueError):
    """A source has no north-up affine grid (no georeference, rotation, or ground control points)."""


def grid_key(source: Source) -> GridKey:
    """The GridKey of a source; raises NotGriddable when it has no usable grid."""
    image = source.image
    geo = source.manifest.images[0].geo
    if geo is None or geo.transform is None or source.crs is None:
        msg = "no CRS and affine transform (not georeferenced, or only ground control points)"
        raise NotGriddableError(msg)
    transform = source.transform
    a, b, c, d, e, f = transform
    if b != 0 or d != 0:
        msg = f"a rotated or sheared grid (transform {transform}) cannot be stacked without resampling"
        raise NotGriddableError(msg)
    _, rows, cols = image.chunk_shape
    phase = (round((c / a) % cols, PHASE_DECIMALS) % cols, round((f / e) % rows, PHASE_DECIMALS) % rows)
    recipe = image.recipe.to_config()
    for size in ("image_length", "image_width"):
        recipe.pop(size)
    fill = image.fill_value
    return GridKey(
        crs=normalize_crs(source.crs),
        resolution=(float(a), float(e)),
        phase=phase,
        chunk=image.chunk_shape,
        dtype=image.dtype.name,
        fill_value="none" if fill is None else ("nan" if isinstance(fill, float) and math.isnan(fill) else repr(fill)),
        encoding=json.dumps(recipe, sort_keys=True),
        samples=image.shape[0],
        strip_rows=0 if image.recipe.tiled else image.shape[1],
    )


def group_by_grid(sources: Iterable[Source]) -> tuple[dict[GridKey, list[Source]], list[tuple[Source, str]]]:
    """Group sources by GridKey (groups keep the order sources came in); also return ungriddable ones with why."""
    groups: dict[GridKey, list[Source]] = defaultdict(list)
    rejected: list[tuple[Source, str]] = []
    for source in sources:
        try:
            groups[grid_key(source)].append(source)
        except NotGriddableError as exc:
            rejected.append((source, str(exc)))
    return dict(groups), rejected


def tile_offset(source: Source, origin: tuple[float, float], key: GridKey) -> tuple[int, int]:
    """(row, column) of the source's first tile in the tile grid whose corner is ``origin`` (x, y)."""
    a, _, c, _, e, f = source.transform
    _, rows, cols = key.chunk
    col = (c - origin[0]) / (a * cols)
    row = (f - origin[1]) / (e * rows)
    return int(np.rint(row)), int(np.rint(col))
