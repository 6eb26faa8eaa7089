"""CubePlan: which source chunk lands at which chunk index of which array. Pure data and pure functions.

One :class:`GroupPlan` per grid group: a (time, band, y, x) array whose chunks are source tiles. Its per-chunk
tables are NumPy arrays shaped (time, band chunk, tile row, tile column): ``source_index`` into the group's
source table (-1 where no source has that chunk, which then reads as the fill value), ``offsets`` and
``lengths``. They flow straight into a virtual-reference writer without a Python object per chunk. A plan's
``overviews`` are GroupPlans of the same shape of data, made of the sources' internal overviews.

Overlaps: when two sources of one time step claim the same chunk (tile-aligned mosaics whose footprints
overlap), the rule decides: ``"first"`` keeps the chunk of the source that comes first, ``"last"`` the one that
comes last, in the order of the search results, or sorted by an item property (``sort_by="eo:cloud_cover"``:
least cloud first). A source's missing (sparse) tile never hides another source's stored tile.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyproj

from stackcube.assets import SkippedAsset
from stackcube.grid import GridKey, NotGriddableError, Source, grid_key, tile_offset
from stackcube.search import Query
from stackcube.tiff import Recipe

__all__ = [
    "CubePlan",
    "GroupBy",
    "GroupPlan",
    "SourceTable",
    "UnionLevel",
    "UnionPlan",
    "build_group",
    "build_overviews",
    "build_unions",
    "check_groupby",
]

Overlap = Literal["first", "last"]
GroupBy = Literal["datetime", "solar_day"] | None
"""How a union's time steps are formed: items of one acquisition datetime share a step (default), items of one
local solar day share a step, or (None) every item is its own step, as stackstac does."""


@dataclass(frozen=True, slots=True, eq=False)
class SourceTable:
    """The sources of one group, column-wise: row i describes source index i."""

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

    def __len__(self) -> int:
        return int(self.href.size)


@dataclass(frozen=True, slots=True, eq=False)
class GroupPlan:
    """One virtual (time, band, y, x) array: its grid, coordinates and where every chunk comes from."""

    name: str
    """Name of the array in the cube (``EPSG32735_10m``)."""
    key: GridKey
    """What its sources share."""
    transform: tuple[float, float, float, float, float, float]
    """Affine transform (a, b, c, d, e, f) of the array's pixel corners."""
    shape: tuple[int, int, int, int]
    """(time, band, y, x)."""
    chunks: tuple[int, int, int, int]
    """(1, samples per tile, tile rows, tile columns)."""
    dtype: np.dtype[Any]
    """Sample dtype."""
    fill_value: int | float | None
    """Nodata of the sources (None: the dtype's zero)."""
    recipe: Recipe
    """How each chunk is decoded (the ``stackcube.tiff`` codec configuration)."""
    time: np.ndarray
    """datetime64[ns] per time step, increasing."""
    bands: tuple[str, ...]
    """Band names."""
    y: np.ndarray
    """Pixel-centre y coordinates."""
    x: np.ndarray
    """Pixel-centre x coordinates."""
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
    """uint64, same shape: byte length of each chunk (0 for none)."""
    window: tuple[int, int, int, int] | None = None
    """(row start, row stop, column start, column stop) of the exact bbox inside the array, for lazy trimming."""
    mosaic: bool = False
    """True when sources of one time step sit side by side at tile offsets."""
    scale_offset: tuple[float, float] | None = None
    """(scale, offset) that turn stored values into physical ones, when every source and band agrees."""
    level: int = 0
    """0 for full resolution; n when this array is made of the sources' n-th internal overviews."""
    overviews: tuple[GroupPlan, ...] = ()
    """The overview levels 1, 2, ... that every source has on one shared tile grid (empty for an overview)."""

    @property
    def crs(self) -> str:
        """The array's CRS."""
        return self.key.crs

    @property
    def n_chunks(self) -> int:
        """Chunks that reference a source."""
        return int((self.source_index >= 0).sum())

    def describe(self) -> str:
        """One line: ``EPSG:32735 10 m x 13 dates x 4 bands (1098 x 1098 px, 3 x 3 tiles of 512 x 512)``."""
        t, b, y, x = self.shape
        rows, cols = self.source_index.shape[2:]
        return (
            f"{self.key.describe_resolution()} x {t} date{'s' * (t != 1)} x {b} band{'s' * (b != 1)} "
            f"({y} x {x} px, {rows} x {cols} tiles of {self.chunks[2]} x {self.chunks[3]})"
        )


@dataclass(frozen=True, slots=True)
class UnionLevel:
    """An overview level of a union: the members' level-n overviews placed on their own union grid."""

    offsets: tuple[tuple[int, int], ...]
    """(row, column) of each member's level-n array on this level's union grid."""
    transform: tuple[float, float, float, float, float, float]
    """Affine transform of this level's union grid."""
    shape: tuple[int, int, int, int]
    """(time, band, y, x)."""


@dataclass(frozen=True, slots=True, eq=False)
class UnionPlan:
    """Stored groups whose pixels line up (same CRS, pixel size and phase modulo one pixel) but whose tiles do not:
    one logical (time, band, y, x) array on the union of their grids, each placed at its whole-pixel offset.

    The members stay virtual arrays on their native grids; the union is assembled lazily when opened, so values
    are copied exactly and each member tile is still fetched with one GET.
    """

    name: str
    """Name of the logical array (``EPSG32735_10m_union``)."""
    members: tuple[str, ...]
    """Names of the member groups."""
    offsets: tuple[tuple[int, int], ...]
    """(row, column) of each member's first pixel in the union grid."""
    transform: tuple[float, float, float, float, float, float]
    """Affine transform of the union grid's pixel corners."""
    shape: tuple[int, int, int, int]
    """(time, band, y, x)."""
    time: np.ndarray
    """datetime64[ns] per time step (the earliest acquisition of the step)."""
    steps: tuple[tuple[tuple[int, int], ...], ...]
    """Per time step, the (member, member time index) pieces laid over each other there."""
    bands: tuple[str, ...]
    """Band names (those of the members, in order of first appearance)."""
    crs: str
    """The common CRS."""
    fill_value: int | float | None
    """The common nodata."""
    resolution: str = ""
    """``EPSG:32735 10 m``: the CRS and pixel size, for people."""
    overlap: Overlap = "first"
    """Where members overlap within one time step: the first or last valid pixel in member order."""
    sort_by: str | None = None
    """An item property that orders the members of each time step (least first); None keeps search order."""
    groupby: GroupBy = "datetime"
    """How the time steps were formed."""
    member_bands: tuple[tuple[str, ...], ...] = ()
    """Band names of each member."""
    member_ids: tuple[tuple[str, ...], ...] = ()
    """Item ids of each member time step (comma-joined where a step holds several)."""
    member_keys: tuple[tuple[Any, ...], ...] = ()
    """The ``sort_by`` property of each member time step (empty without ``sort_by``)."""
    overviews: tuple[UnionLevel, ...] = ()
    """Levels 1, 2, ...: where every member has that overview level and they share a pixel lattice there."""

    def describe(self) -> str:
        """One line: ``EPSG:32735 10 m, 9 grids placed by pixel offset, 1 date x 1 band (98,980 x 10,980 px)``."""
        t, b, y, x = self.shape
        return (
            f"{self.resolution}, {len(self.members)} grids placed by pixel offset, "
            f"{t} date{'s' * (t != 1)} x {b} band{'s' * (b != 1)} ({y:,} x {x:,} px)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as the cube stores it."""
        return {
            "members": list(self.members),
            "offsets": [list(o) for o in self.offsets],
            "transform": list(self.transform),
            "shape": list(self.shape),
            "time": [str(t) for t in self.time.astype("datetime64[ns]")],
            "steps": [[list(piece) for piece in step] for step in self.steps],
            "bands": list(self.bands),
            "crs": self.crs,
            "fill_value": self.fill_value,
            "overlap": self.overlap,
            "sort_by": self.sort_by,
            "groupby": self.groupby,
            "member_bands": [list(b) for b in self.member_bands],
            "member_ids": [list(i) for i in self.member_ids],
            "member_keys": [list(k) for k in self.member_keys],
            "overviews": [
                {"offsets": [list(o) for o in v.offsets], "transform": list(v.transform), "shape": list(v.shape)}
                for v in self.overviews
            ],
        }


def _pixel_key(plan: GroupPlan) -> tuple[Any, ...]:
    """What members of a union share: CRS, pixel size, origin modulo one pixel, dtype, nodata, samples per tile."""
    a, _, c, _, e, f = plan.transform
    phase = (round((c / a) % 1, 6) % 1, round((f / e) % 1, 6) % 1)
    fill = plan.key.fill_value
    return (plan.crs, plan.key.resolution, phase, plan.key.dtype, fill, plan.key.samples, plan.key.chunk[0])


def _solar_offset(member: GroupPlan) -> np.timedelta64:
    """Local solar time minus UTC at the member's centre (longitude / 15 hours)."""
    a, _, c, _, e, f = member.transform
    _, _, height, width = member.shape
    to_lonlat = pyproj.Transformer.from_crs(member.crs, "EPSG:4326", always_xy=True)
    lon, _ = to_lonlat.transform(c + a * width / 2, f + e * height / 2)
    return np.timedelta64(round(lon / 15 * 3600), "s")


def check_groupby(groupby: Any) -> None:
    """Refuse a ``groupby`` that is not one of :data:`GroupBy`."""
    if groupby not in {"datetime", "solar_day", None}:
        msg = f"groupby must be 'datetime', 'solar_day' or None, not {groupby!r}"
        raise ValueError(msg)


def _union_steps(
    members: Sequence[GroupPlan], groupby: GroupBy
) -> tuple[np.ndarray, tuple[tuple[tuple[int, int], ...], ...]]:
    """Time steps of a union: (step times, per step the (member, member time index) pieces), in time order."""
    check_groupby(groupby)
    keyed: dict[Any, list[tuple[np.datetime64, int, int]]] = {}
    for m, member in enumerate(members):
        shift = _solar_offset(member) if groupby == "solar_day" else None
        for t, when in enumerate(member.time):
            if groupby == "datetime":
                key: Any = when
            elif shift is not None:
                key = (when + shift).astype("datetime64[D]")
            else:
                key = (when, m, t)
            keyed.setdefault(key, []).append((when, m, t))
    ordered = sorted(keyed.values(), key=lambda pieces: (min(p[0] for p in pieces), pieces[0][1], pieces[0][2]))
    times = np.array([min(p[0] for p in pieces) for pieces in ordered], dtype="datetime64[ns]")
    steps = tuple(tuple((m, t) for _, m, t in pieces) for pieces in ordered)
    return times, steps


def build_unions(
    groups: Sequence[GroupPlan],
    *,
    overlap: Overlap = "first",
    sort_by: str | None = None,
    groupby: GroupBy = "datetime",
) -> tuple[UnionPlan, ...]:
    """Unions of the groups that share a pixel lattice (two or more per union); groups alone stay as they are."""
    by_key: dict[tuple[Any, ...], list[GroupPlan]] = {}
    for group in groups:
        by_key.setdefault(_pixel_key(group), []).append(group)
    unions = []
    for members in by_key.values():
        if len(members) < 2:
            continue
        offsets, transform, (height, width) = _union_geometry(members)
        times, steps = _union_steps(members, groupby)
        bands = tuple(dict.fromkeys(b for m in members for b in m.bands))
        base = members[0].name
        unions.append(
            UnionPlan(
                name=f"{base}_union",
                members=tuple(m.name for m in members),
                offsets=offsets,
                transform=transform,
                shape=(times.size, len(bands), height, width),
                time=times,
                steps=steps,
                bands=bands,
                crs=members[0].crs,
                fill_value=members[0].fill_value,
                resolution=members[0].key.describe_resolution(),
                overlap=overlap,
                sort_by=sort_by,
                groupby=groupby,
                member_bands=tuple(m.bands for m in members),
                member_ids=tuple(tuple(",".join(ids) for ids in m.items) for m in members),
                member_keys=tuple(tuple(m.properties.get(sort_by, [])) if sort_by else () for m in members),
                overviews=_union_overviews(members, times.size, len(bands)),
            )
        )
    return tuple(unions)


def _union_geometry(
    members: Sequence[GroupPlan],
) -> tuple[tuple[tuple[int, int], ...], tuple[float, float, float, float, float, float], tuple[int, int]]:
    """Each member's (row, column) on the union grid, the union's transform and its (height, width)."""
    a, _, _, _, e, _ = members[0].transform
    x0 = min(m.transform[2] for m in members)
    tops = [m.transform[5] for m in members]
    y0 = max(tops) if e < 0 else min(tops)
    offsets = tuple((round((m.transform[5] - y0) / e), round((m.transform[2] - x0) / a)) for m in members)
    height = max(r + m.shape[2] for m, (r, _) in zip(members, offsets, strict=True))
    width = max(c + m.shape[3] for m, (_, c) in zip(members, offsets, strict=True))
    return offsets, (a, 0.0, x0, 0.0, e, y0), (height, width)


def _union_overviews(members: Sequence[GroupPlan], steps: int, bands: int) -> tuple[UnionLevel, ...]:
    """The overview levels the members share on one pixel lattice (each member has it, same pixel size and phase)."""
    levels = []
    for n in range(1, 1 + min(len(m.overviews) for m in members)):
        level = [m.overviews[n - 1] for m in members]
        if len({_pixel_key(g) for g in level}) != 1:
            break
        offsets, transform, (height, width) = _union_geometry(level)
        levels.append(UnionLevel(offsets=offsets, transform=transform, shape=(steps, bands, height, width)))
    return tuple(levels)


@dataclass(frozen=True, slots=True, eq=False)
class CubePlan:
    """Everything the writer needs, and a report of every decision."""

    query: Query
    """The search the plan came from."""
    groups: tuple[GroupPlan, ...]
    """One array per grid."""
    skipped: tuple[SkippedAsset, ...] = ()
    """Assets asked for (or looking like data) that do not become bands, with reasons."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Other decisions worth telling (sources that could not be gridded or read, groups outside the bbox)."""
    failed: tuple[str, ...] = ()
    """``item/asset: reason`` for each source that could not be read and was left out (``on_error="skip"``)."""
    sources: tuple[Source, ...] = ()
    """Every source that was read, with its manifest: stored in the cube so a refresh rereads no header."""
    options: dict[str, Any] = field(default_factory=dict)
    """How sources were chosen and placed (``assets``, ``overlap``, ``sort_by``): stored for refreshes."""
    unions: tuple[UnionPlan, ...] = ()
    """Groups on one pixel lattice presented as one array each (see :class:`UnionPlan`)."""

    def report(self) -> str:
        """A human-readable account of the grouping: the arrays a user opens first, then how each was made."""
        member_of = {m: u for u in self.unions for m in u.members}
        alone = self.standalone
        arrays = [u.describe() for u in self.unions] + [g.describe() for g in alone]
        n = len(arrays)
        lines = [f"{n} array{'s' * (n != 1)}: " + "; ".join(arrays)]
        crss = {g.crs for g in self.groups}
        if len(crss) > 1:
            lines.append(f"the sources are on {len(crss)} CRSs; each grid is its own array")
        for u in self.unions:
            lines.append(f"  {u.name}: {u.describe()}, members:")
            lines.extend(self._group_lines([g for g in self.groups if member_of.get(g.name) is u], "    "))
        lines.extend(self._group_lines(alone, "  "))
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.extend(f"  could not be read: {failure}" for failure in self.failed)
        if self.skipped:
            lines.append(f"{len(self.skipped)} asset(s) skipped:")
            lines.extend(f"  {s}" for s in self.skipped[:20])
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    @property
    def standalone(self) -> tuple[GroupPlan, ...]:
        """The groups that are not members of a union: with the unions, the arrays a user opens."""
        members = {m for u in self.unions for m in u.members}
        return tuple(g for g in self.groups if g.name not in members)

    @property
    def array_names(self) -> list[str]:
        """Names of the arrays a user opens: unions first, then the groups on their own."""
        return [u.name for u in self.unions] + [g.name for g in self.standalone]

    @staticmethod
    def _group_lines(groups: Sequence[GroupPlan], indent: str) -> list[str]:
        lines = []
        for g in groups:
            placed = f", {len(g.sources)} sources placed side by side at tile offsets" if g.mosaic else ""
            n = len(g.sources)
            made = f"{g.n_chunks} chunks from {n} source{'s' * (n != 1)}{placed}"
            lines.append(f"{indent}{g.name}: {g.describe()}, {made}")
            if g.overviews:
                sizes = ", ".join(f"{o.shape[2]} x {o.shape[3]}" for o in g.overviews)
                lines.append(f"{indent}  {len(g.overviews)} overview level{'s' * (len(g.overviews) != 1)}: {sizes} px")
        return lines


def _band_names(band: str, samples: int) -> list[str]:
    return [band] if samples == 1 else [f"{band}_{i + 1}" for i in range(samples)]


def _order(sources: Sequence[Source], sort_by: str | None) -> list[Source]:
    if sort_by is None:
        return list(sources)

    def key(s: Source) -> tuple[int, Any]:
        value = s.properties.get(sort_by)
        return (value is None, value if value is not None else 0)

    return sorted(sources, key=key)


def build_group(
    name: str,
    key: GridKey,
    sources: Sequence[Source],
    *,
    band_order: Sequence[str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    overlap: Overlap = "first",
    sort_by: str | None = None,
    overviews: bool = True,
) -> GroupPlan | None:
    """Place every source's tiles in one array; None when the bbox misses the group entirely.

    With ``overviews``, the sources' internal overviews become the plan's ``overviews`` for as many levels as
    every source has one and they share one tile grid (see :func:`build_overviews`).
    """
    if overlap not in {"first", "last"}:
        msg = f"overlap must be 'first' or 'last', not {overlap!r}"
        raise ValueError(msg)
    first = sources[0].image
    samples = first.shape[0]
    band_chunk = key.chunk[0]
    per_asset = samples // band_chunk
    asked = list(dict.fromkeys(band_order or []))
    present = list(dict.fromkeys(s.band for s in sources))
    bands = [b for b in asked if b in present] + [b for b in present if b not in asked]
    band_slot = {b: i * per_asset for i, b in enumerate(bands)}
    times = sorted({np.datetime64(s.datetime.replace(tzinfo=None), "ns") for s in sources})
    time_slot = {t: i for i, t in enumerate(times)}

    a, _, _, _, e, _ = sources[0].transform
    _, rows, cols = key.chunk
    tops = [s.transform[5] for s in sources]
    origin = (min(s.transform[2] for s in sources), max(tops) if e < 0 else min(tops))
    offsets_px = [tile_offset(s, origin, key) for s in sources]
    ny = max(r + s.image.offsets.shape[1] for s, (r, _) in zip(sources, offsets_px, strict=True))
    nx = max(c + s.image.offsets.shape[2] for s, (_, c) in zip(sources, offsets_px, strict=True))
    height = max(r * rows + s.image.shape[1] for s, (r, _) in zip(sources, offsets_px, strict=True))
    width = max(c * cols + s.image.shape[2] for s, (_, c) in zip(sources, offsets_px, strict=True))

    grid_shape = (len(times), len(bands) * per_asset, ny, nx)
    source_index = np.full(grid_shape, -1, np.int32)
    offsets = np.zeros(grid_shape, np.uint64)
    lengths = np.zeros(grid_shape, np.uint64)
    ordered = _order(sources, sort_by)
    position = {id(s): i for i, s in enumerate(sources)}
    mosaic = False
    for s in ordered:
        i = position[id(s)]
        row, col = offsets_px[i]
        t = time_slot[np.datetime64(s.datetime.replace(tzinfo=None), "ns")]
        b0 = band_slot[s.band]
        src_off, src_len = s.image.offsets, s.image.lengths
        nb, sy, sx = src_off.shape
        window = (t, slice(b0, b0 + nb), slice(row, row + sy), slice(col, col + sx))
        stored = src_len > 0
        taken = source_index[window] >= 0
        mosaic = mosaic or (row, col) != offsets_px[0] or s.image.shape != first.shape
        claim = stored & (~taken if overlap == "first" else np.ones_like(taken))
        source_index[window] = np.where(claim, i, source_index[window])
        offsets[window] = np.where(claim, src_off, offsets[window])
        lengths[window] = np.where(claim, src_len, lengths[window])

    transform = (a, 0.0, origin[0], 0.0, e, origin[1])
    recipe = first.recipe
    if len({s.image.shape for s in sources}) > 1:
        # edge segments of different images differ; a full-tile image size makes a short segment fail loudly
        recipe = Recipe.from_config({**recipe.to_config(), "image_length": ny * rows, "image_width": nx * cols})
    table = SourceTable(
        href=np.array([s.manifest.href for s in sources], dtype=object),
        etag=np.array([s.manifest.etag or "" for s in sources], dtype=object),
        last_modified=np.array(
            [s.manifest.last_modified.isoformat() if s.manifest.last_modified else "" for s in sources], dtype=object
        ),
        item_id=np.array([s.item_id for s in sources], dtype=object),
        asset=np.array([s.asset for s in sources], dtype=object),
    )
    items_per_step: list[list[Source]] = [[] for _ in times]
    for s in sources:
        items_per_step[time_slot[np.datetime64(s.datetime.replace(tzinfo=None), "ns")]].append(s)
    step_ids = tuple(tuple(dict.fromkeys(s.item_id for s in step)) for step in items_per_step)
    prop_names = sorted({k for s in sources for k, v in s.properties.items() if isinstance(v, str | int | float)})
    properties = {k: [step[0].properties.get(k) for step in items_per_step] for k in prop_names}
    band_names = [n for b in bands for n in _band_names(b, samples)]

    plan = GroupPlan(
        name=name,
        key=key,
        transform=transform,
        shape=(len(times), len(band_names), height, width),
        chunks=(1, band_chunk, rows, cols),
        dtype=first.dtype,
        fill_value=first.fill_value,
        recipe=recipe,
        time=np.array(times, dtype="datetime64[ns]"),
        bands=tuple(band_names),
        y=origin[1] + e * (np.arange(height) + 0.5),
        x=origin[0] + a * (np.arange(width) + 0.5),
        items=step_ids,
        properties=properties,
        sources=table,
        source_index=source_index,
        offsets=offsets,
        lengths=lengths,
        mosaic=mosaic,
        scale_offset=_scale_offset(sources),
        level=sources[0].level,
    )
    clipped = plan if bbox is None else clip_to_bbox(plan, bbox)
    if clipped is None or not overviews or clipped.level:
        return clipped
    levels = build_overviews(clipped, sources, band_order=band_order, bbox=bbox, overlap=overlap, sort_by=sort_by)
    return dataclasses.replace(clipped, overviews=levels)


def build_overviews(
    base: GroupPlan,
    sources: Sequence[Source],
    *,
    band_order: Sequence[str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    overlap: Overlap = "first",
    sort_by: str | None = None,
) -> tuple[GroupPlan, ...]:
    """Overview levels 1, 2, ... of ``base``, each from the sources' internal overviews of that level.

    A level is planned while every source has it and their overviews share one GridKey (CRS, pixel size, phase
    modulo a tile, encoding), so overview tiles stand side by side exactly as the full-resolution ones do. Nodata
    and scale/offset are the full-resolution image's.
    """
    levels: list[GroupPlan] = []
    level = 1
    while True:
        members = [s.at_level(level) for s in sources]
        if any(m is None for m in members):
            break
        placed = [m for m in members if m is not None]
        try:
            keys = {grid_key(m) for m in placed}
        except NotGriddableError:
            break
        if len(keys) != 1:
            break
        plan = build_group(
            base.name,
            keys.pop(),
            placed,
            band_order=band_order,
            bbox=bbox,
            overlap=overlap,
            sort_by=sort_by,
            overviews=False,
        )
        if plan is None or plan.bands != base.bands or plan.time.shape != base.time.shape:
            break
        levels.append(dataclasses.replace(plan, fill_value=base.fill_value, scale_offset=base.scale_offset))
        level += 1
    return tuple(levels)


def _scale_offset(sources: Sequence[Source]) -> tuple[float, float] | None:
    """The sources' common (scale, offset) from GDAL metadata, or None when absent or not the same for all."""
    pairs: set[tuple[float, float]] = set()
    for s in sources:
        attrs = s.image.attrs
        scales: list[float] = list(attrs.get("scale_factor") or [])
        offsets: list[float] = list(attrs.get("add_offset") or [])
        count = max(len(scales), len(offsets), 1)
        pairs.update(zip(scales or [1.0] * count, offsets or [0.0] * count, strict=True))
    if len(pairs) != 1:
        return None
    pair = pairs.pop()
    return None if pair == (1.0, 0.0) else (float(pair[0]), float(pair[1]))


def clip_to_bbox(plan: GroupPlan, bbox: tuple[float, float, float, float]) -> GroupPlan | None:
    """Keep the chunks the bbox (lon/lat) touches; remember the exact bbox as a pixel window. None if it misses."""
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", plan.crs, always_xy=True)
    minx, miny, maxx, maxy = to_grid.transform_bounds(*bbox, densify_pts=21)
    a, _, x0, _, e, y0 = plan.transform
    _, _, height, width = plan.shape
    _, _, rows, cols = plan.chunks
    col_lo, col_hi = sorted(((minx - x0) / a, (maxx - x0) / a))
    row_lo, row_hi = sorted(((maxy - y0) / e, (miny - y0) / e))
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
        transform=(a, 0.0, x0 + a * c0, 0.0, e, y0 + e * r0),
        shape=(plan.shape[0], plan.shape[1], r1 - r0, c1 - c0),
        y=plan.y[r0:r1],
        x=plan.x[c0:c1],
        source_index=plan.source_index[tiles],
        offsets=plan.offsets[tiles],
        lengths=plan.lengths[tiles],
        window=(row_lo - r0, row_hi - r0, col_lo - c0, col_hi - c0),
    )
