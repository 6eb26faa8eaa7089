"""Map tiles of a cube: titiler-xarray's tile server, reading through stackcube's opener.

:func:`create_app` is a FastAPI app of titiler-xarray's ``TilerFactory`` for one cube (one repository, at one
branch, tag or snapshot). Its routes are titiler's (``/tiles/{tileMatrixSetId}/{z}/{x}/{y}``, ``/info``,
``/{tileMatrixSetId}/tilejson.json``, ``/{tileMatrixSetId}/map.html``, ...) with titiler-xarray's parameters:
``variable`` is the name of an array of the cube (``EPSG32735_10m``, or a union), ``sel=time=...`` picks the date
(``sel=time=nearest::2020-06-01`` the one nearest a day), ``sel=band=B04`` (repeated, in order, for RGB) or
``bidx`` the bands, ``rescale``, ``colormap_name``, ``nodata``, ``reproject`` and the rest as titiler takes them.
Nodata (NaN) is transparent.

Each request opens the cube's tree anew (a branch's new commits show at the next tile), and each tile is read from
the coarsest level of the array that is still at least as fine as the tile's pixels, as GDAL picks a COG's overview:
full resolution only where the map is zoomed in that far. What a cube opens to is kept per snapshot (the last
:data:`CACHED` arrays asked for): a request on a branch looks up its tip (one small read) and opens the cube again
only when it moved. Credentials stay in the server: no response holds them, and stackcube's own errors redact hrefs
wherever they are logged (the traceback the server logs for an unexpected error shows a library's message as it
was raised). ``stackcube.tiles`` needs titiler-xarray: without it, importing this module raises
:class:`~stackcube.errors.MissingExtraError` naming the ``tiles`` extra.

Example (the demo cube; one PNG tile of its red band at its second date, stretched as its quicklook is)::

    import stackcube
    from fastapi.testclient import TestClient
    from stackcube.demo import write_demo_catalog
    from stackcube.tiles import create_app

    stackcube.build_cube(write_demo_catalog("demo-output"), repo="demo-output/cube.icechunk", progress=False)
    app = create_app("demo-output/cube.icechunk")
    params = {"variable": "EPSG32735_10m", "sel": ["time=nearest::2020-06-06", "band=B04"], "rescale": "480,713"}
    with TestClient(app) as client:
        png = client.get("/tiles/WebMercatorQuad/14/9462/8399.png", params=params).content

A server: a file ``tiles_app.py`` holding ``app = create_app("s3://bucket/cube.icechunk")``, run with
``uvicorn tiles_app:app``; ``/WebMercatorQuad/map.html?variable=...&sel=...`` is a map of its tiles.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from stackcube._hrefs import redact
from stackcube._remedies import install_extra
from stackcube.errors import (
    ArrayNotFoundError,
    MissingExtraError,
    SelectionError,
    SourceError,
    StackcubeError,
    UntrustedSourceError,
    VersionNotFoundError,
)

try:  # the one place titiler is imported: ``import stackcube`` never imports this module
    import attr
    from fastapi import FastAPI
    from morecantile import Tile, TileMatrixSet
    from rasterio.warp import transform_bounds
    from rio_tiler.constants import WEB_MERCATOR_TMS
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io.xarray import Options, XarrayReader
    from rio_tiler.types import Indexes, NoData, WarpResampling
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from titiler.core.errors import DEFAULT_STATUS_CODES
    from titiler.xarray.dependencies import XarrayDsParams
    from titiler.xarray.factory import TilerFactory
    from titiler.xarray.io import get_variable
except ImportError as exc:  # pragma: no cover - tested in a subprocess without titiler
    _msg = f"stackcube.tiles serves map tiles with titiler-xarray ({exc.name} is missing): {install_extra('tiles')}"
    raise MissingExtraError(_msg) from None

from stackcube.store import OpenOptions, Version, branch_tip, open_datatree, open_repository
from stackcube.store.layout import DATA, CubeMetadata, level_path

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr
    from rio_tiler.models import ImageData

    from stackcube.settings import Credentials
    from stackcube.store import RepoLike

__all__ = ["MAX_COARSER", "MAX_TILESIZE", "CubeReader", "CubeSource", "create_app"]

MAX_TILESIZE = 1024
"""The largest tile (pixels a side) a request may ask for: a map asks for 256 or 512."""
MAX_COARSER = 8
"""How many of a level's pixels a tile's pixel may cover, along each axis, at most: zoomed out further than that from
the coarsest level, a tile would read 64 times its size or more (a whole cube without overviews at zoom 0)."""
CACHED = 8
"""Opened (snapshot, array) pairs an app keeps: a map's tiles come from one or two arrays of one snapshot."""

STATUS_CODES: dict[type[Exception], int] = {
    **DEFAULT_STATUS_CODES,
    StackcubeError: 500,
    ArrayNotFoundError: 404,  # no such array (the ``variable``): the message lists the arrays there are
    SelectionError: 400,  # a ``sel`` the array cannot take: the message lists its dates or bands
    SourceError: 502,  # a source host failed or refused: the server's upstream, not the request
    UntrustedSourceError: 500,  # the server's allow= refuses its own cube: its configuration
    VersionNotFoundError: 500,  # likewise its branch, tag or snapshot
}
"""HTTP status per exception class (the nearest class in an exception's MRO wins): titiler's, then stackcube's."""


@dataclass(frozen=True, slots=True, repr=False)
class CubeSource:
    """The cube an app serves and how to open it; its repr names the repository and version, never credentials."""

    repo: RepoLike
    """The cube's repository (path, URL, ``icechunk.Storage`` or ``Repository``)."""
    options: OpenOptions
    """Which snapshot, ``allow``, credentials; no dask (a tile is one read of the tiles it touches)."""
    secrets: tuple[str, ...] = field(default=(), compare=False)
    """The strings of the credentials given, blanked out of every message the app sends."""
    opened: OrderedDict[tuple[str, str], tuple[xr.DataArray, ...]] = field(default_factory=OrderedDict, compare=False)
    """The levels of the arrays asked for last, by (snapshot, array): at most :data:`CACHED`."""
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False)
    """Guards :attr:`opened` (titiler answers requests on several threads)."""
    opening: dict[tuple[str, str], threading.Lock] = field(default_factory=dict, compare=False)
    """A lock per (snapshot, array) being opened: requests that come together wait for the first."""
    repository: list[RepoLike] = field(default_factory=list, compare=False)
    """The repository opened once, to look up a branch's tip in one small read per request (empty until then)."""

    def __repr__(self) -> str:
        return f"CubeSource({redact(str(self.repo))!r}, {self.options.version})"

    def open_levels(self, array: str) -> tuple[xr.DataArray, ...]:
        """The levels of ``array`` (full resolution first), each a lazy (time, band, y, x) DataArray named after it,
        as the version asked for holds them now (kept per snapshot: the cube is opened again when a branch moved;
        requests that come together for one snapshot open it once).

        Raises :class:`~stackcube.errors.ArrayNotFoundError` listing the arrays of the cube when it has no
        ``array``, and saying which union to ask for when ``array`` is a union's member.
        """
        options = self.pinned()
        if options.version.snapshot is None and options.version.tag is None:
            return self._open(array, options)  # a branch whose tip could not be looked up: never kept
        key = (str(options.version), array)
        with self.lock:
            levels = self.opened.get(key)
            if levels is not None:
                self.opened.move_to_end(key)
                return levels
            opening = self.opening.setdefault(key, threading.Lock())
        with opening:  # the first opens; the others wait for it, then find what it kept
            with self.lock:
                levels = self.opened.get(key)
            if levels is None:
                levels = self._open(array, options)
                with self.lock:
                    self.opened[key] = levels
                    while len(self.opened) > CACHED:
                        self.opened.popitem(last=False)
            with self.lock:
                self.opening.pop(key, None)
        return levels

    def pinned(self) -> OpenOptions:
        """The options with a branch's tip as its snapshot (a tag or snapshot id stays: neither moves); as given
        when the branch cannot be looked up (opening it then says why)."""
        version = self.options.version
        if version.tag is not None or version.snapshot is not None:
            return self.options
        with self.lock:
            repository = self.repository[0] if self.repository else None
        if repository is None:  # opened once, outside the lock: a slow or failing open holds no other request
            try:
                repository = open_repository(self.repo, reading=True)
            except StackcubeError:
                return self.options
            with self.lock:
                if not self.repository:
                    self.repository.append(repository)
        tip = branch_tip(repository, version.branch or "main")
        return self.options if tip is None else replace(self.options, version=Version(snapshot=tip))

    def _open(self, array: str, options: OpenOptions) -> tuple[xr.DataArray, ...]:
        tree = open_datatree(self.repo, options)
        metadata = CubeMetadata.from_attrs(tree.attrs)
        if array not in metadata.array_names:
            union = next((u.name for u in metadata.unions if array in u.members), None)
            if union is None:
                msg = f"the cube has no array {array!r} (variable=); it has {', '.join(metadata.array_names)}"
            else:
                msg = f"{array} is a member of union {union}: ask for variable={union}, which holds its pixels"
            raise ArrayNotFoundError(msg)
        levels = sorted(int(n) for n in tree[array].children)
        return tuple(tree[level_path(array, n)][DATA].rename(array) for n in levels)

    def scrub(self, text: str) -> str:
        """``text`` with every credential given, and every credential an href in it carries, replaced."""
        for secret in self.secrets:
            text = text.replace(secret, "REDACTED")
        return redact(text)


@attr.s
class CubeReader(XarrayReader):
    """rio-tiler's XarrayReader over one array of a cube at one ``sel`` (titiler-xarray's selection), which reads each
    tile from the coarsest level still at least as fine as the tile's pixels (other reads: full resolution).

    titiler's factory makes one per request: ``CubeReader(source, variable=..., sel=[...], tms=...)``.
    """

    source: CubeSource = attr.ib()
    variable: str = attr.ib()
    sel: list[str] | None = attr.ib(default=None)
    # redefined so that they follow the fields above, which titiler passes by position and name
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    options: Options = attr.ib(factory=Options)
    input: xr.DataArray = attr.ib(init=False)
    levels: tuple[xr.DataArray, ...] = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        self.levels = tuple(selected(da, self.sel) for da in self.source.open_levels(self.variable))
        self.input = self.levels[0]
        super().__attrs_post_init__()  # type: ignore[no-untyped-call]  # rio-tiler leaves it unannotated

    @property
    def minzoom(self) -> int:
        """rio-tiler's minzoom (full resolution down to one tile), or where a tile would read at most
        :data:`MAX_COARSER` times its size along each axis from the coarsest level, if later: tilejson and the map
        page start there (each zoom out doubles what a tile reads; :meth:`tile` counts what it would read)."""
        finest, coarsest = (min(map(abs, self.levels[n].rio.resolution())) for n in (0, -1))
        zooms_out = math.floor(math.log2(MAX_COARSER * coarsest / finest))
        return int(max(self._minzoom, min(self.maxzoom, self.maxzoom - zooms_out)))

    def tile(  # noqa: PLR0917  # rio-tiler's signature, which titiler calls by position
        self,
        tile_x: int,
        tile_y: int,
        tile_z: int,
        tilesize: int | None = None,
        reproject_method: WarpResampling = "nearest",
        auto_expand: bool = True,
        nodata: NoData | None = None,
        indexes: Indexes | None = None,
        out_dtype: str | np.dtype[Any] | None = None,
        **kwargs: Any,  # Any: rio-tiler's other keywords, passed on as they came
    ) -> ImageData:
        """The tile, read from :meth:`level_for`'s level (rio-tiler's ``XarrayReader.tile`` does the rest); a
        ``tilesize`` above :data:`MAX_TILESIZE` is refused (its memory grows with its square)."""
        if tilesize is not None and not 0 < tilesize <= MAX_TILESIZE:
            msg = f"tilesize={tilesize}: give at most {MAX_TILESIZE} pixels (a map asks for 256 or 512)"
            raise SelectionError(msg)
        if not self.tile_exists(tile_x, tile_y, tile_z):
            msg = f"tile {tile_x}-{tile_y}-{tile_z} is outside the bounds of {self.variable}"
            raise TileOutsideBounds(msg)
        tile = Tile(x=tile_x, y=tile_y, z=tile_z)
        level = self.levels[self.level_for(tile, tilesize)]
        size = tilesize or max(self.tms.matrix(tile_z).tileWidth, self.tms.matrix(tile_z).tileHeight)
        read = self._pixels_read(tile, level)
        if read > (MAX_COARSER * size) ** 2:
            msg = (
                f"a zoom-{tile_z} tile would read {read:,.0f} pixels of {self.variable}'s coarsest level, more than "
                f"{MAX_COARSER} x {MAX_COARSER} times its own: zoom in"
            )
            raise SelectionError(msg)
        reader = self if level is self.input else XarrayReader(level, tms=self.tms, options=self.options)
        return XarrayReader.tile(
            reader,
            tile_x,
            tile_y,
            tile_z,
            tilesize=tilesize,
            reproject_method=reproject_method,
            auto_expand=auto_expand,
            nodata=nodata,
            indexes=indexes,
            out_dtype=out_dtype,
            **kwargs,
        )

    def level_for(self, tile: Tile, tilesize: int | None = None) -> int:
        """The coarsest level whose pixels are no larger than the tile's (measured in the array's CRS across the
        tile); 0 when even full resolution is coarser."""
        wanted = self._wanted(tile, tilesize)
        sizes = [min(map(abs, da.rio.resolution())) for da in self.levels]
        fine_enough = [n for n, size in enumerate(sizes) if size <= wanted * (1 + 1e-9)]
        return max(fine_enough, key=lambda n: sizes[n], default=0)

    def _pixels_read(self, tile: Tile, level: xr.DataArray) -> float:
        """How many of ``level``'s pixels (per date and band) the tile covers: its bounds, in the array's CRS,
        within the level's."""
        west, south, east, north = transform_bounds(self.tms.rasterio_crs, self.crs, *self.tms.xy_bounds(tile))
        left, bottom, right, top = level.rio.bounds()
        dx, dy = (abs(r) for r in level.rio.resolution())
        width = max(0.0, min(east, right) - max(west, left)) / dx
        height = max(0.0, min(north, top) - max(south, bottom)) / dy
        return float(width * height)

    def _wanted(self, tile: Tile, tilesize: int | None) -> float:
        """The size of the tile's pixels in the array's CRS (the smaller of width and height, across the tile)."""
        matrix = self.tms.matrix(tile.z)
        width, height = (tilesize, tilesize) if tilesize else (matrix.tileWidth, matrix.tileHeight)
        west, south, east, north = transform_bounds(self.tms.rasterio_crs, self.crs, *self.tms.xy_bounds(tile))
        return float(min((east - west) / width, (north - south) / height))


def selected(da: xr.DataArray, sel: Sequence[str] | None) -> xr.DataArray:
    """``da`` with titiler-xarray's ``sel`` applied (``["time=2020-06-06T08:06:11", "band=B04"]``), as the 2-D or
    3-D array rio-tiler reads; a date, band or dimension it does not have raises a SelectionError saying what it has.
    """
    name = str(da.name)
    try:
        out = get_variable(da.to_dataset(), name, sel=list(sel) if sel else None)
    except (KeyError, IndexError):
        msg = f"{name} has no {' and '.join(sel or ())} (sel=): {_dimensions(da)}"
        raise SelectionError(msg) from None
    except (ValueError, TypeError) as exc:  # a value that is no date or number (pandas' and NumPy's parsing)
        msg = f"{name}: sel={list(sel or ())} cannot be read ({exc}): {_dimensions(da)}"
        raise SelectionError(msg) from None
    except AssertionError:  # titiler-xarray's check that 2 or 3 dimensions are left
        msg = f"{name} needs one date for a map, and sel={list(sel or ())} leaves more: {_dimensions(da)}"
        raise SelectionError(msg) from None
    return out


def _dimensions(da: xr.DataArray) -> str:
    """What to select in ``da``: its dates and bands, as ``sel`` takes them."""
    import numpy as np

    times = np.datetime_as_string(da["time"].values, unit="s")
    if not len(times):
        return "it has no dates"
    shown = ", ".join(times) if len(times) <= 4 else f"{len(times)} dates, {times[0]} ... {times[-1]}"
    return (
        f"give sel=time=DATE (dates {shown}; sel=time=nearest::{times[0][:10]} picks the nearest to a day) and "
        f"optionally sel=band=NAME (repeated for RGB; bands {', '.join(map(str, da['band'].values))})"
    )


def create_app(
    repo: RepoLike,
    *,
    branch: str | None = None,
    tag: str | None = None,
    snapshot: str | None = None,
    allow: Sequence[str] | str | None = None,
    credentials: Credentials | None = None,
    title: str = "stackcube tiles",
) -> FastAPI:
    """A tile server (FastAPI app) of titiler-xarray's routes over one cube, read through stackcube.

    Parameters
    ----------
    repo
        The cube: a local path, an ``s3://`` URL, an ``icechunk.Storage`` or an ``icechunk.Repository``.
    branch, tag, snapshot
        Which version (default: the branch ``main``, opened anew at each request, so commits show at once).
    allow
        URL prefixes the cube may read sources from, as :func:`stackcube.open_cube` takes them: give it when
        serving a cube made by others.
    credentials
        What reading the sources takes, per container prefix, as :func:`stackcube.open_cube` takes them. They stay
        in the server: every message a response carries has each string of a ``credentials`` mapping blanked out
        (a callable's or Icechunk credential object's strings cannot be known: stackcube's own messages redact
        hrefs anyway).
    title
        The app's title (its OpenAPI page, ``/api.html``).

    Returns
    -------
    fastapi.FastAPI
        titiler's routes at the root: ``/tiles/{tileMatrixSetId}/{z}/{x}/{y}[.{format}]``, ``/info``,
        ``/{tileMatrixSetId}/tilejson.json``, ``/{tileMatrixSetId}/map.html``, ``/point/{lon},{lat}``, ``/tiles``
        (the tile matrix sets), and ``/api.html`` (every parameter). The bbox and feature endpoints are left out:
        they would read full resolution whatever their size.

    Examples
    --------
    >>> from stackcube.tiles import create_app
    >>> app = create_app("s3://bucket/cube.icechunk", tag="june")  # doctest: +SKIP

    Serve it with uvicorn (``app.py`` holding that line): ``uvicorn app:app --host 0.0.0.0 --port 8000``, then
    ``/tiles/WebMercatorQuad/{z}/{x}/{y}.png?variable=EPSG32735_10m&sel=time=nearest::2020-06-06&sel=band=B04
    &rescale=480,713`` is a tile and ``/WebMercatorQuad/map.html?variable=...`` a map of them.
    """
    given = {"branch": branch, "tag": tag, "snapshot": snapshot, "allow": allow, "credentials": credentials}
    args = {"chunks": False, **{k: v for k, v in given.items() if v is not None}}
    options = OpenOptions.from_args(args, "create_app")  # type: ignore[arg-type]  # OpenArgs' keys, built above
    # the longest first: a token is blanked inside the header that holds it, not the header around its blank
    source = CubeSource(repo, options, tuple(sorted(set(_strings_of(credentials)), key=len, reverse=True)))

    def cube() -> CubeSource:
        """The cube this app serves: no ``url`` parameter, so a request cannot point the server elsewhere."""
        return source

    factory = _CubeTilerFactory(
        reader=CubeReader,
        path_dependency=cube,
        reader_dependency=XarrayDsParams,  # variable and sel; no group= or decode_times=: stackcube decides those
        add_part=False,
    )
    app = FastAPI(title=title, openapi_url="/api", docs_url="/api.html")
    app.include_router(factory.router)
    for exc_class, status in STATUS_CODES.items():
        app.add_exception_handler(exc_class, _handler(status, source))
    return app


@attr.s
class _CubeTilerFactory(TilerFactory):
    """titiler-xarray's factory without ``POST /statistics``, which reads full resolution under any polygon, however
    large (one request could take a server's memory)."""

    def statistics(self) -> None:
        """No statistics route."""


def _handler(status: int, source: CubeSource) -> Callable[[Request, Exception], Response]:
    """An exception handler answering ``status`` with the error's message, credentials blanked out."""

    def handle(request: Request, exc: Exception) -> Response:
        return JSONResponse(content={"detail": source.scrub(str(exc))}, status_code=status)

    return handle


def _strings_of(credentials: object) -> Iterator[str]:
    """Every string held in a credentials mapping, and what follows its first word (the token after ``Bearer``), to
    blank out."""
    if isinstance(credentials, Mapping):
        for value in credentials.values():
            yield from _strings_of(value)
    elif isinstance(credentials, str) and len(credentials) >= 4:  # shorter: a flag ("true"), not a secret
        yield credentials
        scheme, _, rest = credentials.strip().partition(" ")
        if scheme and rest.strip():
            yield rest.strip()
