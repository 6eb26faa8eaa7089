"""``stackcube.stack``: the stackstac-shaped entry point, for notebooks that used ``stackstac.stack(items, ...)``.

It builds a virtual cube of the items (in memory unless a repository is named) and returns its one array with
the coordinates stackstac users look for: ``time``, ``id``, ``band``, ``x``, ``y`` (pixel centres), ``epsg``,
``common_name`` per band, and the items' properties along ``time``. Unlike stackstac nothing is resampled: the
items must share a pixel grid (one array, or one union of grids on one pixel lattice).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

import xarray as xr

from stackcube._keywords import check_keywords, keywords_of
from stackcube.api import SourceArgs, build_cube, open_dataarray
from stackcube.options import GroupBy
from stackcube.search import SEARCH_KEYWORDS, CatalogLike, SearchArgs, search_items
from stackcube.store import RepoLike, memory_repository

__all__ = ["StackArgs", "stack"]


class StackArgs(SearchArgs, SourceArgs, total=False):
    """The keywords of :func:`stack` besides its own: the search and how each source's values count."""


def _common_names(items: Sequence[Any], bands: Sequence[str]) -> list[str]:
    """The ``eo:bands`` (STAC 1.0) or ``bands`` (1.1) common name of each band, as stackstac reports it."""
    names = dict.fromkeys(bands, "")
    for item in items:
        for key, asset in item.assets.items():
            fields = asset.extra_fields
            entries = fields.get("eo:bands") or fields.get("bands") or []
            for entry in entries[:1]:
                common = entry.get("common_name") or entry.get("eo:common_name")
                for band in (key, common):
                    if band in names and common and not names[band]:
                        names[band] = common
    return list(names.values())


def stack(
    items: CatalogLike,
    assets: Sequence[str] | None = None,
    *,
    bbox: Any = None,
    datetime: Any = None,
    repo: RepoLike | None = None,
    array: str | None = None,
    groupby: GroupBy = None,
    mask_and_scale: bool = True,
    progress: bool = False,
    **kwargs: Unpack[StackArgs],
) -> xr.DataArray:
    """Stack items into one lazy (time, band, y, x) DataArray, like ``stackstac.stack``, without resampling.

    Parameters
    ----------
    items
        pystac Items or item dicts, an ItemCollection, a static catalog or a STAC API URL (with ``**kwargs`` as
        :func:`stackcube.plan_cube` takes them: collections, query, filter, ..., overlap, sort_by).
    assets
        Asset keys or common names, in band order (default: every GeoTIFF data asset).
    bbox, datetime
        Optional filters; the array is clipped to the tiles the bbox touches.
    repo
        Where the virtual cube is committed; by default an in-memory Icechunk repository.
    array
        Which array when the items span several grids (the error lists them).
    groupby
        ``None`` (default, as stackstac): one time step per item; ``"datetime"`` or ``"solar_day"`` merge items of
        one acquisition or day that lie side by side (grids on one pixel lattice).
    """
    check_keywords(kwargs, keywords_of(StackArgs), "stack")
    search: Any = {k: v for k, v in kwargs.items() if k in SEARCH_KEYWORDS}
    placement: Any = {k: v for k, v in kwargs.items() if k not in SEARCH_KEYWORDS}
    _, found = search_items(items, bbox=bbox, datetime=datetime, **search)  # once; the cube is built from these
    cube = build_cube(
        found,
        bbox,
        assets=assets,
        repo=memory_repository() if repo is None else repo,
        groupby=groupby,
        progress=progress,
        **placement,
    )
    names = cube.plan.array_names
    if array is None and len(names) > 1:
        msg = (
            f"the items lie on {len(names)} grids ({', '.join(names)}); stackcube does not resample: pass "
            "array= one of them, or narrow the search (assets=, bbox=)"
        )
        raise ValueError(msg)
    chosen = array or names[0]
    data = open_dataarray(cube.repository, chosen, mask_and_scale=mask_and_scale)
    crss = {u.name: u.crs for u in cube.plan.unions} | {a.name: a.crs for a in cube.plan.arrays}
    crs = crss[chosen]
    epsg = int(crs.split(":")[1]) if crs.startswith("EPSG:") else None
    data = data.assign_coords(
        epsg=epsg,
        common_name=("band", _common_names(found, [str(b) for b in data.band.values])),
    )
    data.attrs["stackcube_snapshot"] = cube.snapshot_id
    return data
