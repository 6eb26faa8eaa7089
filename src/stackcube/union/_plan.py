"""Union planning: arrays whose pixels line up but whose tiles do not become one logical array. Pure data.

Arrays share a pixel lattice when they have one CRS, one pixel size and one origin modulo a pixel (Landsat
path/rows a whole number of 30 m pixels apart, Sentinel-2 MGRS tiles of one UTM zone), and one dtype, nodata and
samples per tile. Each stays a virtual array on its own grid; the union describes where each lands on the union of
their grids and which of their time steps make each of its time steps. The cube stores that description
(:meth:`UnionPlan.to_dict`) and reading assembles it (:mod:`stackcube.union._array`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pyproj

from stackcube._georef import Affine, to_affine
from stackcube._text import counted
from stackcube.grid import describe_resolution
from stackcube.options import CubeOptions, GroupBy, Overlap
from stackcube.plan import ArrayPlan, agreed, by_band

__all__ = ["UnionLevel", "UnionPlan", "build_unions"]

Offset = tuple[int, int]
"""(row, column) of a member's first pixel on the union grid."""
Piece = tuple[int, int]
"""(member, member time index): one member time step laid on a union time step."""


@dataclass(frozen=True, slots=True)
class UnionLevel:
    """An overview level of a union: the members' level-n overviews placed on their own union grid."""

    offsets: tuple[Offset, ...]
    """(row, column) of each member's level-n array on this level's union grid."""
    transform: Affine
    """Affine transform of this level's union grid."""
    shape: tuple[int, int, int, int]
    """(time, band, y, x)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as the cube stores it."""
        return {
            "offsets": [list(o) for o in self.offsets],
            "transform": list(self.transform)[:6],
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The level :meth:`to_dict` stored."""
        return cls(
            offsets=tuple((int(r), int(c)) for r, c in data["offsets"]),
            transform=to_affine(data["transform"]),
            shape=_shape(data["shape"]),
        )


@dataclass(frozen=True, slots=True)
class UnionPlan:
    """Arrays on one pixel lattice presented as one logical (time, band, y, x) array on the union of their grids,
    each member placed at its whole-pixel offset.

    The members stay virtual arrays on their native grids; the union is assembled lazily when opened, so values
    are copied exactly and each member tile is still fetched with one GET.
    """

    name: str
    """Name of the logical array (``EPSG32735_10m_union``)."""
    members: tuple[str, ...]
    """Names of the member arrays."""
    offsets: tuple[Offset, ...]
    """(row, column) of each member's first pixel on the union grid."""
    transform: Affine
    """Affine transform of the union grid's pixel corners."""
    shape: tuple[int, int, int, int]
    """(time, band, y, x)."""
    time: tuple[np.datetime64, ...]
    """datetime64[ns] per time step (the earliest acquisition of the step), increasing."""
    steps: tuple[tuple[Piece, ...], ...]
    """Per time step, the (member, member time index) pieces laid over each other there, in member order."""
    bands: tuple[str, ...]
    """Band names (those of the members, in order of first appearance)."""
    crs: str
    """The common CRS."""
    fill_value: int | float | None
    """The common nodata (None: the dtype's zero, and every covered pixel is valid)."""
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
    scale: tuple[tuple[float, ...], ...] = ()
    """Per (time step, band), the multiplier from stored to physical values (empty for a cube written before
    stackcube stored them: the members' ``scale_factor`` attribute then applies)."""
    offset: tuple[tuple[float, ...], ...] = ()
    """Per (time step, band), added after scaling."""
    band_fields: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Per band, what every member says alike about it (as :attr:`ArrayPlan.band_fields`)."""

    @property
    def resolution(self) -> str:
        """``EPSG:32735 10 m``: the CRS and pixel size, for people."""
        return describe_resolution(self.crs, self.transform.a)

    @property
    def times(self) -> np.ndarray:
        """:attr:`time` as a datetime64[ns] array."""
        return np.array(self.time, dtype="datetime64[ns]")

    @property
    def n_levels(self) -> int:
        """Full resolution and the overview levels."""
        return 1 + len(self.overviews)

    def describe(self) -> str:
        """One line: ``EPSG:32735 10 m, 9 grids placed by pixel offset, 1 date x 1 band (98,980 x 10,980 px)``."""
        t, b, y, x = self.shape
        return (
            f"{self.resolution}, {counted(len(self.members), 'grid')} placed by pixel offset, "
            f"{counted(t, 'date')} x {counted(b, 'band')} ({y:,} x {x:,} px)"
        )

    def at_level(self, level: int) -> UnionPlan:
        """This union at overview ``level`` (0: itself): the level's member offsets, transform and shape."""
        if level == 0:
            return self
        view = self.overviews[level - 1]
        return dataclasses.replace(self, offsets=view.offsets, transform=view.transform, shape=view.shape, overviews=())

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as the cube stores it (its name is the key it is stored under)."""
        return {
            "members": list(self.members),
            "offsets": [list(o) for o in self.offsets],
            "transform": list(self.transform)[:6],
            "shape": list(self.shape),
            "time": [str(t) for t in self.times],
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
            "overviews": [v.to_dict() for v in self.overviews],
            "scale": [list(row) for row in self.scale],
            "offset": [list(row) for row in self.offset],
            "band_fields": {name: list(values) for name, values in self.band_fields.items()},
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> Self:
        """The union :meth:`to_dict` stored under ``name``."""
        return cls(
            name=name,
            members=tuple(data["members"]),
            offsets=tuple((int(r), int(c)) for r, c in data["offsets"]),
            transform=to_affine(data["transform"]),
            shape=_shape(data["shape"]),
            time=tuple(np.datetime64(t, "ns") for t in data["time"]),
            steps=tuple(tuple((int(m), int(t)) for m, t in step) for step in data["steps"]),
            bands=tuple(data["bands"]),
            crs=data["crs"],
            fill_value=data["fill_value"],
            overlap=data.get("overlap") or "first",
            sort_by=data.get("sort_by"),
            groupby=data.get("groupby", "datetime"),
            member_bands=tuple(tuple(b) for b in data.get("member_bands") or ()),
            member_ids=tuple(tuple(i) for i in data.get("member_ids") or ()),
            member_keys=tuple(tuple(k) for k in data.get("member_keys") or ()),
            overviews=tuple(UnionLevel.from_dict(v) for v in data.get("overviews") or ()),
            scale=tuple(tuple(float(v) for v in row) for row in data.get("scale") or ()),
            offset=tuple(tuple(float(v) for v in row) for row in data.get("offset") or ()),
            band_fields={name: tuple(values) for name, values in (data.get("band_fields") or {}).items()},
        )


def _shape(values: Sequence[int]) -> tuple[int, int, int, int]:
    t, b, y, x = (int(v) for v in values)
    return t, b, y, x


def _pixel_key(plan: ArrayPlan) -> tuple[Any, ...]:
    """What members of a union share: CRS, pixel size, origin modulo one pixel, dtype, nodata, samples per tile."""
    t = plan.transform
    phase = (round((t.c / t.a) % 1, 6) % 1, round((t.f / t.e) % 1, 6) % 1)
    return (
        plan.crs,
        plan.key.resolution,
        phase,
        plan.key.dtype,
        plan.key.fill_value,
        plan.key.samples,
        plan.key.chunk[0],
    )


def _solar_offset(member: ArrayPlan) -> np.timedelta64:
    """Local solar time minus UTC at the member's centre (longitude / 15 hours)."""
    t = member.transform
    _, _, height, width = member.shape
    to_lonlat = pyproj.Transformer.from_crs(member.crs, "EPSG:4326", always_xy=True)
    lon, _ = to_lonlat.transform(t.c + t.a * width / 2, t.f + t.e * height / 2)
    return np.timedelta64(round(lon / 15 * 3600), "s")


def _union_steps(
    members: Sequence[ArrayPlan], groupby: GroupBy
) -> tuple[tuple[np.datetime64, ...], tuple[tuple[Piece, ...], ...]]:
    """Time steps of a union: (step times, per step the (member, member time index) pieces), in time order."""
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
    times = tuple(np.datetime64(min(p[0] for p in pieces), "ns") for pieces in ordered)
    steps = tuple(tuple((m, t) for _, m, t in pieces) for pieces in ordered)
    return times, steps


def build_unions(
    arrays: Sequence[ArrayPlan], options: CubeOptions | None = None
) -> tuple[tuple[UnionPlan, ...], tuple[str, ...]]:
    """Unions of the arrays that share a pixel lattice (two or more per union), and notes on the ones not made.

    Arrays alone stay as they are; so do arrays whose pieces of one time step disagree on scale or offset (one
    union step has one scale and offset per band). ``options`` gives the overlap rule (``overlap``, ``sort_by``)
    and how time steps are formed (``groupby``).
    """
    options = options or CubeOptions()
    by_key: dict[tuple[Any, ...], list[ArrayPlan]] = {}
    for array in arrays:
        by_key.setdefault(_pixel_key(array), []).append(array)
    unions, notes = [], []
    for members in by_key.values():
        if len(members) < 2:
            continue
        offsets, transform, (height, width) = _union_geometry(members)
        times, steps = _union_steps(members, options.groupby)
        bands = tuple(dict.fromkeys(b for m in members for b in m.bands))
        meanings = _step_meanings(members, steps, bands)
        if meanings is None:
            names = ", ".join(m.name for m in members)
            notes.append(f"{names} share a pixel lattice but not one scale and offset per time step; no union")
            continue
        sort_by = options.sort_by
        unions.append(
            UnionPlan(
                name=f"{members[0].name}_union",
                members=tuple(m.name for m in members),
                offsets=offsets,
                transform=transform,
                shape=(len(times), len(bands), height, width),
                time=times,
                steps=steps,
                bands=bands,
                crs=members[0].crs,
                fill_value=members[0].fill_value,
                overlap=options.overlap,
                sort_by=sort_by,
                groupby=options.groupby,
                member_bands=tuple(m.bands for m in members),
                member_ids=tuple(tuple(",".join(ids) for ids in m.items) for m in members),
                member_keys=tuple(tuple(m.properties.get(sort_by, [])) if sort_by else () for m in members),
                overviews=_union_overviews(members, len(times), len(bands)),
                scale=meanings[0],
                offset=meanings[1],
                band_fields=_union_band_fields(members, bands),
            )
        )
    return tuple(unions), tuple(notes)


def _union_band_fields(members: Sequence[ArrayPlan], bands: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """Per band of the union, the fields every member with that band states alike."""

    def own(m: ArrayPlan, band: str) -> dict[str, Any]:
        k = m.bands.index(band)
        return {n: values[k] for n, values in m.band_fields.items() if values[k] is not None}

    return by_band([agreed(own(m, band) for m in members if band in m.bands) for band in bands])


def _step_meanings(
    members: Sequence[ArrayPlan], steps: Sequence[Sequence[Piece]], bands: Sequence[str]
) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]] | None:
    """Per (step, band), the scale and offset every piece there shares (1 and 0 without pieces); None if some differ."""
    scales, offsets = [], []
    for step in steps:
        row_scale, row_offset = [], []
        for band in bands:
            found = {
                (float(members[m].scale[t, b]), float(members[m].offset[t, b]))
                for m, t in step
                for b in [i for i, name in enumerate(members[m].bands) if name == band]
            }
            if len(found) > 1:
                return None
            scale, offset = found.pop() if found else (1.0, 0.0)
            row_scale.append(scale)
            row_offset.append(offset)
        scales.append(tuple(row_scale))
        offsets.append(tuple(row_offset))
    return tuple(scales), tuple(offsets)


def _union_geometry(members: Sequence[ArrayPlan]) -> tuple[tuple[Offset, ...], Affine, tuple[int, int]]:
    """Each member's (row, column) on the union grid, the union's transform and its (height, width)."""
    a, e = members[0].transform.a, members[0].transform.e
    x0 = min(m.transform.c for m in members)
    tops = [m.transform.f for m in members]
    y0 = max(tops) if e < 0 else min(tops)
    offsets = tuple((round((m.transform.f - y0) / e), round((m.transform.c - x0) / a)) for m in members)
    height = max(r + m.shape[2] for m, (r, _) in zip(members, offsets, strict=True))
    width = max(c + m.shape[3] for m, (_, c) in zip(members, offsets, strict=True))
    return offsets, Affine(a, 0.0, x0, 0.0, e, y0), (height, width)


def _union_overviews(members: Sequence[ArrayPlan], steps: int, bands: int) -> tuple[UnionLevel, ...]:
    """The overview levels the members share on one pixel lattice (each member has it, same pixel size and phase)."""
    levels = []
    for n in range(1, 1 + min(len(m.overviews) for m in members)):
        level = [m.overviews[n - 1] for m in members]
        if len({_pixel_key(g) for g in level}) != 1:
            break
        offsets, transform, (height, width) = _union_geometry(level)
        levels.append(UnionLevel(offsets=offsets, transform=transform, shape=(steps, bands, height, width)))
    return tuple(levels)
