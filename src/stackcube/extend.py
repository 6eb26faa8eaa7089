"""Planning new sources into the arrays a cube holds, without the sources it holds: a refresh's new time steps.

:func:`stackcube.cube.plan_sources` places every source of a cube, so a refresh that used it would cost what the
cube holds. What a stored array keeps of its plan (each level's GridKey and extent, its bands:
:class:`~stackcube.store.ArrayLayout`) is enough to place new sources in it exactly where a plan of all of them
would: the same grid, the same tile offsets, the same band slots. :func:`extend_arrays` does that for sources that
fit the stored arrays as they are - their grid, extent, bands and overview levels - and raises
:class:`~stackcube.plan.Misfit` for any that do not (a new grid, a scene beyond the array, a new band, fewer
overviews): the refresh then plans the whole cube. Whether the new steps may be appended at all (after the last
date, the same coordinates and attributes) is the writer's check (:mod:`stackcube.store.append`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stackcube.errors import NotGriddableError
from stackcube.grid import GridKey, grid_key, group_by_grid
from stackcube.options import CubeOptions
from stackcube.plan import ArrayPlan, Misfit, build_array, split_by_meaning
from stackcube.search import Query
from stackcube.sources import Source

__all__ = ["StoredArray", "extend_arrays"]


@dataclass(frozen=True, slots=True)
class StoredArray:
    """What a stored array keeps of its plan: enough to place new sources in it."""

    name: str
    grids: tuple[tuple[GridKey, tuple[float, float, int, int]], ...]
    """Per level (full resolution first), its GridKey and :attr:`~stackcube.plan.ArrayPlan.extent`."""
    bands: tuple[str, ...]
    """Its bands as assets give them (a multi-sample asset's name once)."""


def extend_arrays(
    query: Query, sources: Sequence[Source], options: CubeOptions, stored: Mapping[str, StoredArray]
) -> tuple[ArrayPlan, ...]:
    """The time steps ``sources`` add to the ``stored`` arrays, each planned in its array's grid with its
    overview levels: an ArrayPlan per array they add to, holding only their steps. Raises :class:`Misfit` when
    they do not fit the arrays as they are."""
    by_grid, rejected = group_by_grid(sources)
    if rejected:
        raise Misfit(f"{rejected[0][0].item_id}/{rejected[0][0].asset} has no usable grid")
    arrays = {array.grids[0][0]: array for array in stored.values() if array.grids}
    if len(arrays) != len(stored):
        raise Misfit("arrays that do not keep their grids, or two arrays on one grid")
    out = []
    for key, members in by_grid.items():
        array = arrays.get(key)
        if array is None:
            raise Misfit(f"sources on a new grid ({key.describe()})")
        if len(split_by_meaning(members)) > 1:
            raise Misfit(f"{array.name}: new sources of one date disagree on scale or offset")
        grid, *overviews = array.grids
        base = _place(array, grid, members, query, options)
        levels = []
        for n, level in enumerate(overviews, start=1):
            placed = [s.at_level(n) for s in members]
            if any(p is None for p in placed):
                raise Misfit(f"{array.name}: a new source without overview level {n}")
            plan = _place(array, level, [p for p in placed if p is not None], query, options)
            if plan.bands != base.bands or plan.time.shape != base.time.shape:
                raise Misfit(f"{array.name}: overview level {n} does not match the full resolution")
            levels.append(plan)
        out.append(dataclasses.replace(base, overviews=tuple(levels)))
    return tuple(out)


def _place(
    array: StoredArray,
    grid: tuple[GridKey, tuple[float, float, int, int]],
    sources: Sequence[Source],
    query: Query,
    options: CubeOptions,
) -> ArrayPlan:
    key, extent = grid
    try:
        if not all(key.matches(grid_key(s)) for s in sources):
            raise Misfit(f"{array.name}: new sources on another grid at level {sources[0].level}")
    except NotGriddableError as exc:
        raise Misfit(f"{array.name}: {exc}") from None
    plan = build_array(
        array.name, key, sources, options, bbox=query.bbox, overviews=False, extent=extent, bands=array.bands
    )
    if plan is None:
        raise Misfit(f"{array.name}: new sources outside the bbox")
    return plan
