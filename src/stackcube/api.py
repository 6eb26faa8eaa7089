"""The public entry points; the only module that knows the order of the stages.

search (``search``) -> asset selection (``assets``) -> header reads (``tiff``) -> grid grouping (``grid``) ->
placement (``plan``) -> the Icechunk writer (``icechunk``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pystac
import xarray as xr

from stackcube import _sync
from stackcube.assets import SelectedAsset, SkippedAsset, select_assets
from stackcube.errors import NothingFoundError, StackcubeError
from stackcube.grid import GridKey, Source, group_by_grid
from stackcube.plan import CubePlan, GroupBy, GroupPlan, Overlap, build_group, build_unions, check_groupby
from stackcube.search import CatalogLike, Query, require_items, search_items
from stackcube.tiff import TiffManifest, read_tiff_async

__all__ = ["Cube", "build_cube", "open_cube", "open_dataarray", "plan_cube", "plan_cube_async"]


def _datetime(item: pystac.Item) -> Any:
    if item.datetime is not None:
        return item.datetime
    start = item.common_metadata.start_datetime
    if start is None:
        msg = f"item {item.id} has neither datetime nor start_datetime"
        raise NothingFoundError(msg)
    return start


async def _read_all(chosen: Sequence[SelectedAsset], progress: bool) -> list[TiffManifest | StackcubeError]:
    bar = None
    if progress and chosen:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chosen), desc="reading TIFF headers", unit="header", leave=False)

    async def one(asset: SelectedAsset) -> TiffManifest | StackcubeError:
        try:
            return await read_tiff_async(asset.href)
        except StackcubeError as exc:
            return exc
        finally:
            if bar is not None:
                bar.update()

    try:
        return await asyncio.gather(*(one(a) for a in chosen))
    finally:
        if bar is not None:
            bar.close()


def _group_name(key: GridKey, taken: set[str]) -> str:
    crs = re.sub(r"[^A-Za-z0-9]", "", key.crs) if key.crs.startswith("EPSG:") else "custom"
    res = f"{abs(key.resolution[0]):g}".replace(".", "p")
    name = f"{crs}_{res}{'m' if key.crs.startswith('EPSG:') else ''}"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


async def plan_cube_async(
    catalog: CatalogLike,
    bbox: Any = None,
    datetime: Any = None,
    *,
    assets: Sequence[str] | None = None,
    overlap: Overlap = "first",
    sort_by: str | None = None,
    groupby: GroupBy = "datetime",
    on_error: str = "raise",
    progress: bool = True,
    **search: Any,
) -> CubePlan:
    """Async twin of :func:`plan_cube`; ``search`` takes the other arguments of ``search_items``."""
    _check_on_error(on_error)
    check_groupby(groupby)
    q, items = await asyncio.to_thread(search_items, catalog, bbox=bbox, datetime=datetime, **search)
    chosen, skipped = choose_assets(items, q, assets)
    sources, failed = await read_sources(chosen, on_error=on_error, progress=progress)
    options = {"assets": list(assets) if assets else None, "overlap": overlap, "sort_by": sort_by, "groupby": groupby}
    return plan_sources(q, sources, options=options, skipped=skipped, failed=failed)


def _check_on_error(on_error: str) -> None:
    if on_error not in {"raise", "skip"}:
        msg = f"on_error must be 'raise' or 'skip', not {on_error!r}"
        raise ValueError(msg)


def choose_assets(
    items: Sequence[pystac.Item], q: Query, assets: Sequence[str] | None
) -> tuple[list[SelectedAsset], list[SkippedAsset]]:
    """The assets of the found items that become bands; fails when none does."""
    require_items(list(items), q)
    chosen, skipped = select_assets(items, assets)
    if not chosen:
        reasons = "; ".join(str(s) for s in skipped[:5]) or "no item has a GeoTIFF data asset"
        msg = f"none of the {len(items)} items found has a usable asset ({reasons})"
        raise NothingFoundError(msg)
    return chosen, skipped


def make_source(asset: SelectedAsset, manifest: TiffManifest) -> Source:
    """The planner's view of one chosen asset and its manifest."""
    return Source(
        item_id=asset.item.id,
        asset=asset.key,
        band=asset.band,
        datetime=_datetime(asset.item),
        properties=dict(asset.item.properties),
        manifest=manifest,
    )


async def read_sources(
    chosen: Sequence[SelectedAsset], *, on_error: str = "raise", progress: bool = True
) -> tuple[list[Source], list[str]]:
    """Read the header of every chosen asset; unreadable ones raise, or with ``on_error="skip"`` are returned as
    ``item/asset: reason``."""
    manifests = await _read_all(chosen, progress)
    failed: list[str] = []
    sources: list[Source] = []
    for asset, manifest in zip(chosen, manifests, strict=True):
        if isinstance(manifest, StackcubeError):
            if on_error == "raise":
                raise manifest
            failed.append(f"{asset.item.id}/{asset.key}: {manifest}")
            continue
        sources.append(make_source(asset, manifest))
    return sources, failed


def plan_sources(
    q: Query,
    sources: Sequence[Source],
    *,
    options: dict[str, Any],
    skipped: Sequence[SkippedAsset] = (),
    failed: Sequence[str] = (),
) -> CubePlan:
    """Group read sources by grid and place them: one GroupPlan per grid (``options``: assets, overlap, sort_by)."""
    groups, rejected = group_by_grid(sources)
    notes = [f"{s.item_id}/{s.asset} has {why}; skipped" for s, why in rejected]
    plans: list[GroupPlan] = []
    taken: set[str] = set()
    for key, members in sorted(groups.items(), key=lambda kv: (kv[0].crs, abs(kv[0].resolution[0]))):
        name = _group_name(key, taken)
        plan = build_group(
            name,
            key,
            members,
            band_order=options.get("assets"),
            bbox=q.bbox,
            overlap=options.get("overlap", "first"),
            sort_by=options.get("sort_by"),
        )
        if plan is None:
            notes.append(f"{name} ({key.describe()}) lies outside the bbox; dropped")
            continue
        plans.append(plan)
    if not plans:
        msg = "no source grid overlaps the bbox: " + "; ".join(notes[:5])
        raise NothingFoundError(msg)
    unions = build_unions(
        plans,
        overlap=options.get("overlap", "first"),
        sort_by=options.get("sort_by"),
        groupby=options.get("groupby", "datetime"),
    )
    return CubePlan(
        query=q,
        groups=tuple(plans),
        skipped=tuple(skipped),
        notes=tuple(notes),
        failed=tuple(failed),
        sources=tuple(sources),
        options=dict(options),
        unions=unions,
    )


def plan_cube(catalog: CatalogLike, bbox: Any = None, datetime: Any = None, **kwargs: Any) -> CubePlan:
    """Search a catalog, read the headers of the chosen assets, and plan one virtual array per grid.

    Parameters
    ----------
    catalog
        A STAC API URL, a static catalog/collection (path or URL), an ItemCollection file, or pystac Items.
    bbox
        (west, south, east, north) in degrees; arrays are clipped to the chunks it touches.
    datetime
        A datetime or interval as pystac-client takes it (``"2020-06"``, ``"2020-06-01/2020-07-31"``).
    **kwargs
        ``collections``, ``assets`` (keys or common names, in band order), ``ids``, ``intersects``, ``query``,
        ``filter``, ``filter_lang``, ``max_items``, ``limit``, ``headers``, ``modifier``; ``overlap`` ("first" or
        "last") and ``sort_by`` (an item property) for sources of one time step that claim the same chunk or pixel;
        ``groupby`` for the time steps of grids placed by pixel offset ("datetime", "solar_day", or None: one step
        per item);
        ``on_error`` ("raise", or "skip" to list unreadable sources in the report); ``progress``.

    Returns
    -------
    CubePlan
        Plain data: one GroupPlan per grid and a human-readable ``report()``.

    Examples
    --------
    >>> plan = plan_cube("http://localhost:8082", bbox=[27.0, -8.0, 27.5, -7.5], datetime="2020-06/2020-07",
    ...                  collections=["sentinel-2-l2a"], assets=["B02", "B03", "B04", "B08"])  # doctest: +SKIP
    >>> print(plan.report())  # doctest: +SKIP
    1 array: EPSG:32735 10 m x 13 dates x 4 bands (...)
    """
    return _sync.run(plan_cube_async(catalog, bbox, datetime, **kwargs))


@dataclass(frozen=True, slots=True, eq=False)
class Cube:
    """A committed cube: where it is, which snapshot, and the plan it was built from."""

    repository: Any
    """The ``icechunk.Repository``."""
    snapshot_id: str
    """The snapshot the build committed."""
    branch: str
    """The branch it was committed to."""
    plan: CubePlan
    """The plan that was written."""

    def open(self, *, mask_and_scale: bool = True) -> xr.DataTree:
        """Open this snapshot lazily (see :func:`open_cube`)."""
        return open_cube(self.repository, snapshot=self.snapshot_id, mask_and_scale=mask_and_scale)

    def summary(self) -> str:
        """The snapshot id and the plan's report."""
        return f"snapshot {self.snapshot_id} on {self.branch}\n{self.plan.report()}"

    def quicklook(self, *, bands: Sequence[str] | None = None, time: int = 0, size: int = 512) -> Any:
        """A PNG of one date (shown inline in Jupyter; ``.save(path)`` writes it); see :func:`stackcube.quicklook`."""
        from stackcube.quicklook import quicklook

        return quicklook(self.open(), bands=bands, time=time, size=size)

    def _repr_html_(self) -> str:
        from html import escape

        rows = [(u.name, u.describe(), len(u.members), "grids") for u in self.plan.unions]
        rows += [(g.name, g.describe(), len(g.sources), "sources") for g in self.plan.standalone]
        body = "".join(
            f"<tr><td><code>{escape(name)}</code></td><td>{escape(text)}</td><td>{n} {unit}</td></tr>"
            for name, text, n, unit in rows
        )
        return (
            f"<div><b>stackcube.Cube</b> snapshot <code>{escape(self.snapshot_id)}</code> on "
            f"<code>{escape(self.branch)}</code>, {len(self.plan.sources)} sources"
            f"<table><tr><th>array</th><th>grid</th><th>from</th></tr>{body}</table></div>"
        )

    def __repr__(self) -> str:
        return f"<stackcube.Cube snapshot={self.snapshot_id} groups={[g.name for g in self.plan.groups]}>"


def build_cube(
    catalog: CatalogLike,
    bbox: Any = None,
    datetime: Any = None,
    *,
    repo: Any = "cube.icechunk",
    branch: str = "main",
    message: str | None = None,
    tag: str | None = None,
    **kwargs: Any,
) -> Cube:
    """Search, plan and commit a virtual (time, band, y, x) cube to an Icechunk repository.

    Parameters
    ----------
    catalog, bbox, datetime, **kwargs
        As :func:`plan_cube` (collections, assets, query, filter, ... and progress).
    repo
        A local path, an ``s3://bucket/prefix`` URL, an ``icechunk.Storage`` or an ``icechunk.Repository``;
        created when it does not exist.
    branch, message, tag
        Where to commit, the commit message (default: a summary), and an optional tag for the snapshot.

    Returns
    -------
    Cube
        The snapshot id, the plan, and ``open()``.

    Examples
    --------
    >>> from stackcube.demo import write_demo_catalog
    >>> cube = build_cube(write_demo_catalog("demo-output"), repo="demo-output/cube.icechunk")  # doctest: +SKIP
    >>> cube.open()["EPSG32735_10m/0"]["data"]  # doctest: +SKIP
    """
    from stackcube.icechunk import write_plan

    plan = plan_cube(catalog, bbox, datetime, **kwargs)
    repository, snapshot = write_plan(
        plan,
        repo,
        branch=branch,
        message=message,
        tag=tag,
        progress=kwargs.get("progress", True),
        metadata={"stackcube": "build", "failed": list(plan.failed)},
    )
    return Cube(repository=repository, snapshot_id=snapshot, branch=branch, plan=plan)


def open_cube(
    repo: Any,
    *,
    branch: str | None = None,
    tag: str | None = None,
    snapshot: str | None = None,
    mask_and_scale: bool = True,
    allow: Sequence[str] | None = None,
    chunks: Any = None,
) -> xr.DataTree:
    """Open a cube lazily as a DataTree: one child per grid group, dask chunks aligned with source tiles.

    Group ``G``'s levels are its children: ``tree["G/0"]["data"]`` is full resolution, ``G/1``, ``G/2``, ... the
    sources' internal overviews (``tree["G"].attrs["multiscales"]`` describes them).

    Each read fetches exactly the bytes of the touched tiles, one ranged GET each, and no TIFF header. A source
    that changed since the cube was built raises :class:`~stackcube.errors.SourceChangedError` naming it.
    ``mask_and_scale=False`` gives the stored values (no nodata masking, no scale/offset).

    Reading authorizes exactly the source prefixes the cube declares. ``allow`` (URL prefixes) refuses, with
    :class:`~stackcube.errors.UntrustedSourceError`, a cube that declares any prefix outside them, before anything
    is read: give it when opening cubes made by others. ``chunks`` as ``xarray.open_zarr`` takes it: by default
    one dask chunk per source tile; ``{"y": 2048, "x": 2048}`` for larger tasks that fetch their tiles
    concurrently; ``False`` for no dask at all: each read is one Zarr call that fetches every touched tile
    concurrently and decodes straight into the result (fastest for reads that fit in memory).
    """
    from stackcube.icechunk import open_datatree

    return open_datatree(repo, branch=branch, tag=tag, snapshot=snapshot, mask_and_scale=mask_and_scale, allow=allow)


def open_dataarray(
    repo: Any,
    group: str | None = None,
    level: int = 0,
    *,
    branch: str | None = None,
    tag: str | None = None,
    snapshot: str | None = None,
    mask_and_scale: bool = True,
    allow: Sequence[str] | None = None,
    chunks: Any = None,
) -> xr.DataArray:
    """Open one grid group of a cube as a lazy (time, band, y, x) DataArray.

    ``group`` may be left out when the cube has one grid; ``level`` 0 is full resolution, n the n-th overview
    level. Other arguments as :func:`open_cube`.
    """
    from stackcube.icechunk import open_level

    ds = open_level(
        repo,
        group,
        level,
        branch=branch,
        tag=tag,
        snapshot=snapshot,
        mask_and_scale=mask_and_scale,
        chunks=chunks,
        allow=allow,
    )
    return ds["data"].rename(ds.attrs["grid"])
