"""The public entry points; the only module that knows the order of the stages.

search (``search``) -> bands (``assets``) -> header reads (``sources``) -> grids (``grid``) -> one array per grid
(``plan``) -> unions (``union``) -> the cube's plan (``cube``) -> a commit to Icechunk (``store``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import xarray as xr

from stackcube import _sync
from stackcube._keywords import check_keywords, keywords_of
from stackcube._workers import Workers, resolve_workers
from stackcube.assets import check_asked, choose_assets, item_assets
from stackcube.cube import CubePlan, plan_sources
from stackcube.options import CubeOptions, GroupBy, Harmonize, OnError, Overlap
from stackcube.search import CatalogLike, SearchArgs, search_items
from stackcube.settings import Credentials, current, with_credentials
from stackcube.sources import read_sources
from stackcube.store import (
    OpenArgs,
    OpenOptions,
    ReadArgs,
    RepoLike,
    check_target,
    open_datatree,
    open_level,
    searched_now,
    write_plan,
)

if TYPE_CHECKING:
    import icechunk

__all__ = [
    "Cube",
    "PlanArgs",
    "SourceArgs",
    "build_cube",
    "open_cube",
    "open_dataarray",
    "plan_cube",
    "plan_cube_async",
]


class SourceArgs(TypedDict, total=False):
    """How each source's values count: where sources of one time step overlap, which band metadata is used, what is
    harmonized, and what happens to unreadable sources."""

    overlap: Overlap
    """``"first"`` (default) or ``"last"``: which source of one time step keeps a chunk or pixel several claim."""
    sort_by: str | None
    """An item property ordering those sources (least first), e.g. ``"eo:cloud_cover"``."""
    on_error: OnError
    """``"raise"`` (default) fails on the first unreadable source; ``"skip"`` leaves it out and lists it."""
    stac_metadata: bool
    """True (default): STAC's nodata, scale, offset and unit win over the file's; False: the file's alone."""
    harmonize: Harmonize
    """``"sentinel-2"``: ESA's offset of -1000 DN for items from processing baseline 04.00 on whose catalog states
    no offset (default None: values as the catalog describes them)."""


class PlanArgs(SearchArgs, SourceArgs, total=False):
    """The keywords of :func:`plan_cube` and :func:`build_cube`: the search (:class:`~stackcube.search.SearchArgs`),
    how assets become arrays (:class:`~stackcube.options.CubeOptions`), and ``progress``."""

    assets: Sequence[str] | None
    """Asset keys or ``eo:bands`` common names, in band order (default: every GeoTIFF data asset)."""
    groupby: GroupBy
    """A union's time steps: per ``"datetime"`` (default), per ``"solar_day"``, or None (one per item)."""
    progress: bool
    """Progress bars for header reads and reference writes (default True)."""
    credentials: Credentials | None
    """What the sources' hosts want, per URL prefix, for this call (:attr:`stackcube.settings.Settings.credentials`):
    request headers for an http(s) prefix (a bearer token). Never stored in the cube."""
    client: Any
    """A ``dask.distributed.Client``: headers are read and references written on its workers (planning and the one
    commit stay here)."""
    executor: Any
    """A ``concurrent.futures.Executor`` (a process or thread pool) doing the same work as ``client`` would."""


PLAN_KEYWORDS = keywords_of(PlanArgs)
"""The names :class:`PlanArgs` declares."""
_OPTIONS = ("assets", "overlap", "sort_by", "groupby", "on_error", "stac_metadata", "harmonize")


def _plan_args(kwargs: Mapping[str, Any], where: str) -> tuple[CubeOptions, SearchArgs, bool]:
    """Split a call's keywords into the options, the search and ``progress``; refuse unknown ones."""
    check_keywords(kwargs, PLAN_KEYWORDS, where)
    options = CubeOptions(**{k: kwargs[k] for k in _OPTIONS if k in kwargs})
    search: Any = {
        k: v
        for k, v in kwargs.items()
        if k not in _OPTIONS and k not in {"progress", "credentials", "client", "executor"}
    }
    return options, search, bool(kwargs.get("progress", True))


def _workers_of(kwargs: Mapping[str, Any]) -> Workers | None:
    return resolve_workers(kwargs.get("client"), kwargs.get("executor"))


async def plan_cube_async(
    catalog: CatalogLike, bbox: Any = None, datetime: Any = None, **kwargs: Unpack[PlanArgs]
) -> CubePlan:
    """Async twin of :func:`plan_cube`."""
    options, search, progress = _plan_args(kwargs, "plan_cube")
    settings = with_credentials(current(), kwargs.get("credentials"))
    if options.assets is not None:
        check_asked(options.assets)  # before the search
    each = None
    if isinstance(catalog, str | os.PathLike):
        # the items the search makes keep only their chosen assets as they arrive (a search of 100,000 Sentinel-2
        # items would otherwise hold their every asset until the headers are read); a caller's own are left whole
        each = functools.partial(item_assets, assets=options.assets, slim=True, shared={})
    q, items = await asyncio.to_thread(
        search_items, catalog, bbox=bbox, datetime=datetime, settings=settings, progress=progress, each=each, **search
    )
    chosen, skipped = choose_assets(items, q, options.assets)
    sources, failed = await read_sources(
        chosen, options, progress=progress, settings=settings, workers=_workers_of(kwargs)
    )
    # the sources keep what the plan needs of the items (about 15 kB each, a Sentinel-2 item cut to one asset)
    del items, chosen
    return plan_sources(q, sources, options, skipped=skipped, failed=failed)


def plan_cube(catalog: CatalogLike, bbox: Any = None, datetime: Any = None, **kwargs: Unpack[PlanArgs]) -> CubePlan:
    """Search a catalog, read the headers of the chosen assets, and plan one virtual array per grid.

    Parameters
    ----------
    catalog
        A STAC API URL, a static catalog/collection (path or URL), an ItemCollection file, or pystac Items. A URL's
        credential parameters (the Planetary Computer's ``?subscription-key=...``, and every parameter
        :data:`stackcube._hrefs.SECRET_PARAMS` lists) are sent with this search's requests but never stored nor
        printed, as ``headers`` are not: a refresh is given them again (:func:`stackcube.refresh_cube`'s
        ``catalog=`` and ``headers=``).
    bbox
        (west, south, east, north) in degrees; arrays are clipped to the chunks it touches.
    datetime
        A datetime or interval as pystac-client takes it (``"2020-06"``, ``"2020-06-01/2020-07-31"``).
    **kwargs
        :class:`PlanArgs`: the search (``collections``, ``ids``, ``intersects``, ``query``, ``filter``,
        ``filter_lang``, ``max_items``, ``limit``, ``headers``, ``modifier``); ``assets`` (keys or common names, in
        band order); ``overlap`` ("first" or "last") and ``sort_by`` (an item property) for sources of one time
        step that claim the same chunk or pixel; ``groupby`` for the time steps of arrays placed by pixel offset
        ("datetime", "solar_day", or None: one step per item); ``stac_metadata`` (True: STAC's nodata, scale,
        offset and unit win over the file's; see :mod:`stackcube.bands`) and ``harmonize`` ("sentinel-2": ESA's
        baseline offset where the catalog states none); ``on_error`` ("raise", or "skip" to list unreadable
        sources in the report); ``progress``; ``client`` (a ``dask.distributed.Client``: the headers are read on
        its workers, the result is the same) or ``executor`` (a ``concurrent.futures.Executor``, the same way).

    Returns
    -------
    CubePlan
        Plain data: one ArrayPlan per grid, the unions, and a human-readable ``report()``.

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

    repository: icechunk.Repository
    """The repository."""
    snapshot_id: str
    """The snapshot the build committed."""
    branch: str
    """The branch it was committed to."""
    plan: CubePlan
    """The plan that was written."""

    def open(self, **kwargs: Unpack[ReadArgs]) -> xr.DataTree:
        """Open this snapshot lazily (``mask_and_scale``, ``chunks``, ``allow``, ``members`` as :func:`open_cube`
        takes them)."""
        return open_cube(self.repository, snapshot=self.snapshot_id, **kwargs)

    def summary(self) -> str:
        """The snapshot id and the plan's report."""
        return f"snapshot {self.snapshot_id} on {self.branch}\n{self.plan.report()}"

    def quicklook(self, *, bands: Sequence[str] | None = None, time: int = 0, size: int = 512) -> Any:
        """A PNG of one date (shown inline in Jupyter; ``.save(path)`` writes it); see
        :func:`stackcube.quicklook.quicklook`."""
        from stackcube.quicklook import quicklook

        return quicklook(self.open(), bands=bands, time=time, size=size)

    def _repr_html_(self) -> str:
        from html import escape

        rows = [(u.name, u.describe(), len(u.members), "grids") for u in self.plan.unions]
        rows += [(a.name, a.describe(), len(a.sources), "sources") for a in self.plan.standalone]
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
        return f"<stackcube.Cube snapshot={self.snapshot_id} arrays={[a.name for a in self.plan.arrays]}>"


def build_cube(
    catalog: CatalogLike,
    bbox: Any = None,
    datetime: Any = None,
    *,
    repo: RepoLike = "cube.icechunk",
    branch: str = "main",
    message: str | None = None,
    tag: str | None = None,
    **kwargs: Unpack[PlanArgs],
) -> Cube:
    """Search, plan and commit a virtual (time, band, y, x) cube to an Icechunk repository.

    Parameters
    ----------
    catalog, bbox, datetime, **kwargs
        As :func:`plan_cube` (the search, ``assets``, ``overlap``, ``sort_by``, ``groupby``, ``on_error``,
        ``progress``).
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
    check_target(repo, tag=tag)
    searched = searched_now()  # a refresh asks a STAC API only for what can be new since then
    plan = plan_cube(catalog, bbox, datetime, **kwargs)
    repository, snapshot = write_plan(
        plan,
        repo,
        branch=branch,
        message=message,
        tag=tag,
        progress=kwargs.get("progress", True),
        metadata={"stackcube": "build", "failed": list(plan.failed), "searched": searched},
        workers=_workers_of(kwargs),
    )
    return Cube(repository=repository, snapshot_id=snapshot, branch=branch, plan=plan)


def open_cube(repo: RepoLike, **kwargs: Unpack[OpenArgs]) -> xr.DataTree:
    """Open a cube lazily as a DataTree: one child per array, dask chunks aligned with source tiles.

    Array ``A``'s levels are its children: ``tree["A/0"]["data"]`` is full resolution, ``A/1``, ``A/2``, ... the
    sources' internal overviews (``tree["A"].attrs["multiscales"]`` describes them). A union ``U`` adds
    ``tree["U/0"]`` (and its overview levels), and lists its members without opening them
    (``tree["U"].attrs["members"]``; ``open_dataarray(repo, member)`` opens one, and ``members=True`` puts every
    member's levels in the tree too, about 6 ms each: 18 s for 2,000 scenes against 0.6 s without).

    Each read fetches exactly the bytes of the touched tiles, one ranged GET each, and no TIFF header. A source
    that changed since the cube was built raises :class:`~stackcube.errors.SourceChangedError` naming it.

    Parameters
    ----------
    repo
        The cube: a local path, an ``s3://`` URL, an ``icechunk.Storage`` or an ``icechunk.Repository``.
    **kwargs
        :class:`~stackcube.store.OpenArgs`. Which snapshot: ``branch`` (default ``main``), ``tag`` or
        ``snapshot``. ``mask_and_scale=False`` gives the stored values (no nodata masking, no scale/offset).
        ``chunks`` as ``xarray.open_zarr`` takes it: by default dask chunks of whole source tiles, about 2048
        pixels square, one date and band each (each task fetches its tiles concurrently); ``{"y": 512, "x": 512}``
        for other sizes (along time and band one each unless given); ``False`` for no dask at all: each read is
        one Zarr call that fetches every touched tile concurrently and decodes straight into the result. Either
        way a tile is one GET and a selection reads only the tiles it touches. ``allow`` (URL prefixes) refuses, with
        :class:`~stackcube.errors.UntrustedSourceError`, a cube that declares any source prefix outside them,
        before anything is read: give it when opening cubes made by others (reading authorizes exactly the source
        prefixes the cube declares).

    Examples
    --------
    >>> tree = open_cube("demo-output/cube.icechunk", tag="june", chunks=False)  # doctest: +SKIP
    >>> tree["EPSG32735_10m/0"]["data"].sel(band="B04").isel(time=0).values  # doctest: +SKIP
    """
    return open_datatree(repo, OpenOptions.from_args(kwargs, "open_cube"))


def open_dataarray(
    repo: RepoLike, array: str | None = None, level: int = 0, *, group: str | None = None, **kwargs: Unpack[OpenArgs]
) -> xr.DataArray:
    """Open one array of a cube (a stored array or a union) as a lazy (time, band, y, x) DataArray.

    ``array`` may be left out when the cube has one; ``level`` 0 is full resolution, n the n-th overview level.
    Other keywords as :func:`open_cube`. ``group=`` is the deprecated name of ``array``.

    Examples
    --------
    >>> red = open_dataarray("demo-output/cube.icechunk", "EPSG32735_10m", level=1, tag="june")  # doctest: +SKIP
    """
    if group is not None:
        warnings.warn("open_dataarray(group=) is deprecated; use array=", DeprecationWarning, stacklevel=2)
        array = array or group
    return open_level(repo, array, level, OpenOptions.from_args(kwargs, "open_dataarray"))
