"""Plan stage: the sources of one grid placed chunk by chunk in one array. Pure data and pure functions.

One :class:`ArrayPlan` per grid: a (time, band, y, x) array whose chunks are source tiles. Its per-chunk tables
are NumPy arrays shaped (time, band chunk, tile row, tile column): ``source_index`` into the array's source table
(-1 where no source has that chunk, which then reads as the fill value), ``offsets`` and ``lengths``. They flow
straight into a virtual-reference writer without a Python object per chunk. A plan's ``overviews`` are
ArrayPlans of the same shape of data, made of the sources' internal overviews (levels 1, 2, ...).

Overlaps: when two sources of one time step claim the same chunk (tile-aligned mosaics whose footprints
overlap), :attr:`~stackcube.options.CubeOptions.overlap` decides: ``"first"`` keeps the chunk of the source that
comes first, ``"last"`` the one that comes last, in the order of the search results, or sorted by an item
property (``sort_by="eo:cloud_cover"``: least cloud first). A source's missing (sparse) tile never hides another
source's stored tile.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj

from stackcube._georef import Affine, pixel_centres
from stackcube._text import counted
from stackcube.errors import NotGriddableError
from stackcube.grid import GridKey, distinct_keys, grid_key, tile_offset
from stackcube.options import CubeOptions, sort_rank
from stackcube.sources import Source
from stackcube.tiff import Recipe

__all__ = [
    "DIMS",
    "ArrayPlan",
    "Misfit",
    "SourceTable",
    "agreed",
    "band_coords",
    "build_array",
    "build_overviews",
    "by_band",
    "clip_to_bbox",
    "split_by_meaning",
]

DIMS = ("time", "band", "y", "x")
"""The dimensions of every array, in this order."""


@dataclass(frozen=True, slots=True, eq=False)
class SourceTable:
    """The sources of one array, column-wise: row i describes source index i."""

    href: np.ndarray
    """URL of each source (str)."""
    etag: np.ndarray
    """ETag each source had when read (str; empty when the server gave none)."""
    last_modified: np.ndarray
    """Last-Modified as ISO text (str; empty when unknown)."""
    item_id: np.ndarray
    """STAC item id (str)."""
    asset: np.ndarray
    """Asset key (str)."""
    validator: np.ndarray
    """What reads of each source are checked against: ``etag``, ``last-modified``, or empty (unprotected)."""

    def __len__(self) -> int:
        return int(self.href.size)

    def __repr__(self) -> str:
        return f"<SourceTable of {counted(len(self), 'source')}>"

    @classmethod
    def of(cls, sources: Sequence[Source]) -> SourceTable:
        """The table of ``sources``, in their order."""

        def column(values: Sequence[str]) -> np.ndarray:
            return np.array(values, dtype=object)

        return cls(
            href=column([s.manifest.href for s in sources]),
            etag=column([s.manifest.etag or "" for s in sources]),
            last_modified=column(
                [s.manifest.last_modified.isoformat() if s.manifest.last_modified else "" for s in sources]
            ),
            item_id=column([s.item_id for s in sources]),
            asset=column([s.asset for s in sources]),
            validator=column([s.manifest.validator or "" for s in sources]),
        )


@dataclass(frozen=True, slots=True, eq=False)
class ArrayPlan:
    """One virtual (time, band, y, x) array on one grid: its coordinates and where every chunk comes from."""

    name: str
    """Name of the array in the cube (``EPSG32735_10m``)."""
    key: GridKey
    """What its sources share."""
    transform: Affine
    """Affine transform of the array's pixel corners."""
    shape: tuple[int, int, int, int]
    """(time, band, y, x)."""
    chunks: tuple[int, int, int, int]
    """(1, samples per tile, tile rows, tile columns)."""
    dtype: np.dtype[Any]
    """Sample dtype."""
    fill_value: int | float | None
    """Nodata of the sources, STAC's or the file's (None: the dtype's zero, and every pixel is valid)."""
    recipe: Recipe
    """How each chunk is decoded (the ``stackcube.tiff`` codec configuration)."""
    time: np.ndarray
    """datetime64[ns] per time step, increasing."""
    bands: tuple[str, ...]
    """Band names."""
    items: tuple[tuple[str, ...], ...]
    """Item ids per time step."""
    properties: dict[str, list[Any]]
    """Item properties per time step (those of the step's first item)."""
    sources: SourceTable
    """The sources, indexed by ``source_index``."""
    source_index: np.ndarray
    """int32 (time, band chunk, tile row, tile column): source of each chunk, -1 for none."""
    offsets: np.ndarray
    """uint64, same shape: byte offset of each chunk in its source."""
    lengths: np.ndarray
    """uint32 (uint64 if a segment is 4 GiB or more), same shape: byte length of each chunk (0 for none)."""
    scale: np.ndarray
    """float64 (time, band): the multiplier from stored to physical values of each band at each time step."""
    offset: np.ndarray
    """float64 (time, band): added after scaling."""
    unit: str | None = None
    """Unit of the physical values, when every band of every source states the same one."""
    extent: tuple[float, float, int, int] | None = None
    """(x, y) of the corner of the sources' tile grid and its (height, width) in pixels, before any bbox clipping:
    what the next sources placed on this grid must fit in for the array to stay as it is
    (:func:`build_array`'s ``extent``)."""
    window: tuple[int, int, int, int] | None = None
    """(row start, row stop, column start, column stop) of the exact bbox inside the array, for lazy trimming."""
    mosaic: bool = False
    """True when sources of one time step sit side by side at tile offsets."""
    level: int = 0
    """0 for full resolution; n when this array is made of the sources' n-th internal overviews."""
    overviews: tuple[ArrayPlan, ...] = ()
    """Overview levels 1, 2, ... that every source has on one shared tile grid (empty for an overview)."""
    band_fields: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Per band, what every source of that band says alike about it (title, gsd, common_name, wavelengths,
    proj:*): stackstac's band coordinates; a field the sources disagree on is left out (None for that band)."""

    @property
    def crs(self) -> str:
        """The array's CRS."""
        return self.key.crs

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates."""
        return pixel_centres(self.transform, self.shape[2], self.shape[3])[0]

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates."""
        return pixel_centres(self.transform, self.shape[2], self.shape[3])[1]

    @property
    def scale_offset(self) -> tuple[float, float] | None:
        """The one (scale, offset) of every band and time step, when there is one and it changes something."""
        pairs = set(zip(self.scale.ravel().tolist(), self.offset.ravel().tolist(), strict=True))
        if len(pairs) != 1:
            return None
        pair = pairs.pop()
        return None if pair == (1.0, 0.0) else pair

    @property
    def levels(self) -> tuple[ArrayPlan, ...]:
        """Every level, full resolution first: ``(self, *self.overviews)``."""
        return (self, *self.overviews)

    @property
    def n_chunks(self) -> int:
        """Chunks that reference a source."""
        return int((self.source_index >= 0).sum())

    @property
    def step_chunks(self) -> int:
        """Chunks in one time step (every band's tiles), at least 1: what manifest pieces and write blocks count."""
        return max(1, math.prod(self.source_index.shape[1:]))

    def __repr__(self) -> str:
        return f"<ArrayPlan {self.name}: {self.describe()}, {self.n_chunks} chunks from {len(self.sources)} sources>"

    def describe(self) -> str:
        """One line: ``EPSG:32735 10 m x 13 dates x 4 bands (1098 x 1098 px, 3 x 3 tiles of 512 x 512)``."""
        t, b, y, x = self.shape
        rows, cols = self.source_index.shape[2:]
        return (
            f"{self.key.describe_resolution()} x {counted(t, 'date')} x {counted(b, 'band')} "
            f"({y} x {x} px, {rows} x {cols} tiles of {self.chunks[2]} x {self.chunks[3]})"
        )


def _band_names(band: str, samples: int) -> list[str]:
    return [band] if samples == 1 else [f"{band}_{i + 1}" for i in range(samples)]


def _band_fields(sources: Sequence[Source], bands: Sequence[str], samples: int) -> dict[str, tuple[Any, ...]]:
    """Per band (each sample of each asset), the fields every source of it states alike."""

    def sample(s: Source, k: int) -> Mapping[str, Any]:
        return s.fields[k] if len(s.fields) == samples else (s.fields[0] if samples == 1 and s.fields else {})

    return by_band([agreed(sample(s, k) for s in sources if s.band == band) for band in bands for k in range(samples)])


def agreed(fields: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The entries every one of ``fields`` states, with the same value (none when there are no fields)."""
    common: dict[str, Any] | None = None
    for own in fields:
        common = dict(own) if common is None else {n: v for n, v in common.items() if own.get(n) == v}
    return common or {}


def by_band(per_band: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Fields per band as one tuple per field name, None where a band lacks it (:attr:`ArrayPlan.band_fields`)."""
    names = sorted({n for fields in per_band for n in fields})
    return {n: tuple(fields.get(n) for fields in per_band) for n in names}


def band_coords(band_fields: dict[str, tuple[Any, ...]]) -> dict[str, tuple[str, np.ndarray]]:
    """Band fields as coordinates along ``band`` that Zarr stores: numbers as float (NaN where a band has none),
    text as text ("" where none), lists as their JSON text."""
    coords = {}
    for name, values in band_fields.items():
        given = [v for v in values if v is not None]
        if given and all(isinstance(v, int | float) and not isinstance(v, bool) for v in given):
            array = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        elif all(isinstance(v, str) for v in given):
            array = np.array(["" if v is None else v for v in values], dtype=object)
        else:
            array = np.array(["" if v is None else json.dumps(v) for v in values], dtype=object)
        coords[name] = ("band", array)
    return coords


class Misfit(Exception):  # noqa: N818 - not an error: a reason to plan the whole cube again
    """New sources that do not fit a stored array as it is (:func:`build_array` with ``extent``)."""


def _time_of(source: Source) -> np.datetime64:
    return np.datetime64(source.datetime.replace(tzinfo=None), "ns")


def build_array(
    name: str,
    key: GridKey,
    sources: Sequence[Source],
    options: CubeOptions | None = None,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    overviews: bool = True,
    extent: tuple[float, float, int, int] | None = None,
    bands: Sequence[str] | None = None,
) -> ArrayPlan | None:
    """Place every source's tiles in one array; None when the bbox misses it entirely.

    ``options`` gives the band order (``assets``) and the overlap rule (``overlap``, ``sort_by``). With
    ``overviews``, the sources' internal overviews become the plan's ``overviews`` for as many levels as every
    source has one and they share one tile grid (see :func:`build_overviews`).

    ``extent`` and ``bands`` (an array's :attr:`ArrayPlan.extent` and asset bands) place the sources in that
    array's grid instead of the one they span: the new time steps of a stored array. Raises :class:`Misfit` when a
    source lies outside it or brings another band (the array would not stay as it is).
    """
    options = options or CubeOptions()
    first = sources[0].image
    samples = first.shape[0]
    band_chunk = key.chunk[0]
    per_asset = samples // band_chunk
    asked = list(dict.fromkeys(options.assets or []))
    present = list(dict.fromkeys(s.band for s in sources))
    if bands is None:
        bands = [b for b in asked if b in present] + [b for b in present if b not in asked]
    elif not set(present) <= set(bands):
        raise Misfit(f"new bands {sorted(set(present) - set(bands))}")
    band_slot = {b: i * per_asset for i, b in enumerate(bands)}
    # what each source is asked for below, worked out once (sources are many; these are not free)
    stamps = [_time_of(s) for s in sources]
    images = [s.image for s in sources]
    transforms = [s.transform for s in sources]
    times = sorted(set(stamps))
    time_slot = {t: i for i, t in enumerate(times)}

    base = transforms[0]
    _, rows, cols = key.chunk
    tops = [t.f for t in transforms]
    origin = (min(t.c for t in transforms), max(tops) if base.e < 0 else min(tops)) if extent is None else extent[:2]
    offsets_px = [tile_offset(t, origin, key) for t in transforms]
    height = max(r * rows + image.shape[1] for image, (r, _) in zip(images, offsets_px, strict=True))
    width = max(c * cols + image.shape[2] for image, (_, c) in zip(images, offsets_px, strict=True))
    if extent is not None:
        if min(min(offset) for offset in offsets_px) < 0 or height > extent[2] or width > extent[3]:
            raise Misfit("sources beyond the array's grid")
        height, width = extent[2], extent[3]
    ny, nx = -(-height // rows), -(-width // cols)  # whole tiles covering every source

    grid_shape = (len(times), len(bands) * per_asset, ny, nx)
    source_index = np.full(grid_shape, -1, np.int32)
    offsets = np.zeros(grid_shape, np.uint64)
    # byte counts fit 32 bits (a 4 GiB tile would be absurd, but is kept exact): a fifth less memory per reference
    longest = max(int(image.lengths.max(initial=0)) for image in images)
    lengths = np.zeros(grid_shape, np.uint32 if longest < 2**32 else np.uint64)
    position = {id(s): i for i, s in enumerate(sources)}
    sort_by = options.sort_by
    ordered = sources if sort_by is None else sorted(sources, key=lambda s: sort_rank(s.properties.get(sort_by)))
    mosaic = False
    for s in ordered:
        i = position[id(s)]
        row, col = offsets_px[i]
        b0 = band_slot[s.band]
        src_off, src_len = images[i].offsets, images[i].lengths
        nb, sy, sx = src_off.shape
        window = (time_slot[stamps[i]], slice(b0, b0 + nb), slice(row, row + sy), slice(col, col + sx))
        stored = src_len > 0
        held = source_index[window]
        taken = held >= 0
        mosaic = mosaic or (row, col) != offsets_px[0] or images[i].shape != first.shape
        if stored.all() and (options.overlap == "last" or not taken.any()):  # the usual case: the whole window
            held[...] = i
            offsets[window] = src_off
            lengths[window] = src_len
            continue
        claim = stored & (~taken if options.overlap == "first" else np.ones_like(taken))
        source_index[window] = np.where(claim, i, held)
        offsets[window] = np.where(claim, src_off, offsets[window])
        lengths[window] = np.where(claim, src_len, lengths[window])

    recipe = first.recipe
    if len({image.shape for image in images}) > 1:
        # edge segments of different images differ; a full-tile image size makes a short segment fail loudly
        recipe = Recipe.from_config({**recipe.to_config(), "image_length": ny * rows, "image_width": nx * cols})
    items_per_step: list[list[Source]] = [[] for _ in times]
    steps = [time_slot[stamp] for stamp in stamps]
    for s, step in zip(sources, steps, strict=True):
        items_per_step[step].append(s)
    step_ids = tuple(tuple(dict.fromkeys(s.item_id for s in step)) for step in items_per_step)
    scale, offset, unit = _meanings(sources, steps, bands, samples)
    prop_names = sorted({k for s in sources for k, v in s.properties.items() if isinstance(v, str | int | float)})
    properties = {k: [step[0].properties.get(k) for step in items_per_step] for k in prop_names}
    band_names = [n for b in bands for n in _band_names(b, samples)]
    band_fields = _band_fields(sources, bands, samples)

    plan = ArrayPlan(
        name=name,
        key=key,
        transform=Affine(base.a, 0.0, origin[0], 0.0, base.e, origin[1]),
        extent=(origin[0], origin[1], height, width),
        shape=(len(times), len(band_names), height, width),
        chunks=(1, band_chunk, rows, cols),
        dtype=first.dtype,
        fill_value=sources[0].nodata,
        recipe=recipe,
        time=np.array(times, dtype="datetime64[ns]"),
        bands=tuple(band_names),
        items=step_ids,
        properties=properties,
        sources=SourceTable.of(sources),
        source_index=source_index,
        offsets=offsets,
        lengths=lengths,
        scale=scale,
        offset=offset,
        unit=unit,
        mosaic=mosaic,
        level=sources[0].level,
        band_fields=band_fields,
    )
    clipped = plan if bbox is None else clip_to_bbox(plan, bbox)
    if clipped is None or not overviews or clipped.level:
        return clipped
    return dataclasses.replace(clipped, overviews=build_overviews(clipped, sources, options, bbox=bbox))


def build_overviews(
    base: ArrayPlan,
    sources: Sequence[Source],
    options: CubeOptions | None = None,
    *,
    bbox: tuple[float, float, float, float] | None = None,
) -> tuple[ArrayPlan, ...]:
    """Overview levels 1, 2, ... of ``base``, each from the sources' internal overviews of that level.

    A level is planned while every source has it and their overviews share one GridKey (CRS, pixel size, phase
    modulo a tile, encoding), so overview tiles stand side by side exactly as the full-resolution ones do. What
    the values mean (nodata, scale, offset) is the full-resolution image's, as :class:`Source` gives it.
    """
    levels: list[ArrayPlan] = []
    level = 1
    while True:
        members = [s.at_level(level) for s in sources]
        placed = [m for m in members if m is not None]
        if len(placed) != len(members):
            break
        try:
            keys = distinct_keys(grid_key(m) for m in placed)
        except NotGriddableError:
            break
        if len(keys) != 1:
            break
        plan = build_array(base.name, keys[0], placed, options, bbox=bbox, overviews=False)
        if plan is None or plan.bands != base.bands or plan.time.shape != base.time.shape:
            break
        levels.append(plan)
        level += 1
    return tuple(levels)


def _meanings(
    sources: Sequence[Source], times: Sequence[int], bands: Sequence[str], samples: int
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Per (time, band), the scale and offset of the source there (1 and 0 where none), and the one common unit.

    Sources of one time step that disagree cannot share an array (:func:`split_by_meaning` keeps them apart).
    """
    shape = (1 + max(times), len(bands) * samples)
    scale, offset = np.full(shape, np.nan), np.full(shape, np.nan)
    units = set()
    for s, t in zip(sources, times, strict=True):
        first = bands.index(s.band) * samples
        for k, meaning in enumerate(s.metadata()):
            for table, value in ((scale, meaning.scale), (offset, meaning.offset)):
                if not (np.isnan(table[t, first + k]) or table[t, first + k] == value):
                    msg = f"sources of one time step disagree on scale or offset ({s.item_id}/{s.asset})"
                    raise ValueError(msg)
                table[t, first + k] = value
            units.add(meaning.unit)
    unit = units.pop() if len(units) == 1 else None
    return np.nan_to_num(scale, nan=1.0), np.nan_to_num(offset, nan=0.0), unit


def split_by_meaning(sources: Sequence[Source]) -> list[list[Source]]:
    """The sources of one grid in groups that can each be one array: all of them, unless sources of one time step
    and band disagree on scale or offset; then one group per (scale, offset) of their bands."""
    seen: dict[tuple[np.datetime64, str], set[tuple[tuple[float, float], ...]]] = {}
    signature = {id(s): tuple((m.scale, m.offset) for m in s.metadata()) for s in sources}
    for s in sources:
        seen.setdefault((_time_of(s), s.band), set()).add(signature[id(s)])
    if all(len(found) == 1 for found in seen.values()):
        return [list(sources)]
    groups: dict[tuple[tuple[float, float], ...], list[Source]] = {}
    for s in sources:
        groups.setdefault(signature[id(s)], []).append(s)
    return list(groups.values())


def clip_to_bbox(plan: ArrayPlan, bbox: tuple[float, float, float, float]) -> ArrayPlan | None:
    """Keep the chunks the bbox (lon/lat) touches; remember the exact bbox as a pixel window. None if it misses."""
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", plan.crs, always_xy=True)
    minx, miny, maxx, maxy = to_grid.transform_bounds(*bbox, densify_pts=21)
    t = plan.transform
    _, _, height, width = plan.shape
    _, _, rows, cols = plan.chunks
    col_lo, col_hi = sorted(((minx - t.c) / t.a, (maxx - t.c) / t.a))
    row_lo, row_hi = sorted(((maxy - t.f) / t.e, (miny - t.f) / t.e))
    col_lo, col_hi = max(0, math.floor(col_lo)), min(width, math.ceil(col_hi))
    row_lo, row_hi = max(0, math.floor(row_lo)), min(height, math.ceil(row_hi))
    if col_lo >= col_hi or row_lo >= row_hi:
        return None
    ty0, ty1 = row_lo // rows, -(-row_hi // rows)
    tx0, tx1 = col_lo // cols, -(-col_hi // cols)
    r0, c0 = ty0 * rows, tx0 * cols
    r1, c1 = min(height, ty1 * rows), min(width, tx1 * cols)
    tiles = (slice(None), slice(None), slice(ty0, ty1), slice(tx0, tx1))
    return dataclasses.replace(
        plan,
        transform=Affine(t.a, 0.0, t.c + t.a * c0, 0.0, t.e, t.f + t.e * r0),
        shape=(plan.shape[0], plan.shape[1], r1 - r0, c1 - c0),
        source_index=plan.source_index[tiles],
        offsets=plan.offsets[tiles],
        lengths=plan.lengths[tiles],
        window=(row_lo - r0, row_hi - r0, col_lo - c0, col_hi - c0),
    )
