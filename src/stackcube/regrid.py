"""``to_grid``: one lazy array on a grid of the caller's choosing, for cubes whose sources lie on several grids.

Everywhere else stackcube copies pixels and never resamples. When a search spans UTM zones or resolutions, a
notebook still wants one array: each of the cube's arrays is warped lazily onto the requested grid with
odc-geo (GDAL warping under dask, block by block) and the results are laid over each other, the first valid
value winning, along the union of their time steps and bands.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from typing import Any, Unpack, cast

import numpy as np
import pyproj
import xarray as xr

from stackcube._band_index import with_band_aliases
from stackcube._bbox import check_bbox
from stackcube._georef import Affine, pixel_size
from stackcube.api import Cube, open_dataarray
from stackcube.errors import ArrayNotFoundError, BboxError
from stackcube.plan import DIMS
from stackcube.store import CubeMetadata, OpenArgs, OpenOptions, RepoLike, read_metadata

__all__ = ["Gridded", "to_grid"]

# GDAL reports errors through one process-wide handler, so when odc-geo warps several dask blocks at once a
# transform query on one thread's in-memory dataset can surface as a NotGeoreferencedWarning in another's
# rasterio.warp.reproject call. The source arrays always carry their transforms and the warped values are identical
# with or without the warning (checked against a single-threaded warp), so only that message from rasterio's
# modules (the warp, or the in-memory dataset it makes, depending on which thread GDAL reports to) is silenced;
# everything else rasterio and GDAL say still shows.
warnings.filterwarnings(
    "ignore", message="Dataset has no geotransform, gcps, or rpcs", category=UserWarning, module=r"rasterio\."
)


type Gridded = RepoLike | Cube | xr.DataTree | xr.DataArray | Sequence[xr.DataArray]
"""What :func:`to_grid` warps: a cube (its repository, a :class:`Cube`, an opened DataTree) or DataArrays."""


def to_grid(
    source: Gridded,
    *,
    crs: Any,
    resolution: float,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    bounds: Sequence[float] | None = None,
    resampling: str = "nearest",
    arrays: Sequence[str] | None = None,
    **kwargs: Unpack[OpenArgs],
) -> xr.DataArray:
    """Every array of a cube (or one DataArray) warped onto one grid: ``crs`` at ``resolution``, covering ``bbox``.

    Parameters
    ----------
    source
        The cube, as :func:`stackcube.open_cube` takes it (a path, URL, Storage or Repository), a
        :class:`stackcube.Cube`, a DataTree from :func:`stackcube.open_cube`, or one DataArray (from
        :func:`stackcube.open_dataarray` or :func:`stackcube.stack`), or a list of them.
    crs, resolution
        The target grid, e.g. ``"EPSG:32735"`` and ``20.0``, or ``"EPSG:4326"`` and ``0.0002`` (degrees).
    bbox
        (west, south, east, north): in degrees (EPSG:4326) unless ``bbox_crs`` says otherwise; snapped outwards to
        whole pixels. By default the union of the arrays' extents.
    bbox_crs
        The CRS ``bbox`` is in (the target's own, for instance), when it is not longitude/latitude.
    bounds
        Or (minx, miny, maxx, maxy) in the target CRS, kept exactly (not snapped to multiples of the resolution).
    resampling
        As GDAL names it: ``"nearest"`` (default), ``"bilinear"``, ``"average"``, ...
    arrays
        Which of the cube's arrays to use (default: all; not with a DataArray).
    **kwargs
        Which snapshot and how, as :func:`stackcube.open_cube` takes them (``branch``, ``tag``, ``snapshot``,
        ``chunks``, ``allow``; ``mask_and_scale=False`` warps the stored values, nodata included). Not with an
        opened DataTree or DataArray, which are warped as they are.

    Returns
    -------
    xarray.DataArray
        Lazy (time, band, y, x) float values, NaN where no array has a valid value, with ``spatial_ref`` for
        rioxarray and odc-geo; the dimensions are ``y`` and ``x`` in every CRS, geographic ones included. The
        sources' coordinates along ``time`` (``id``, item properties) and ``band`` (``common_name``, ...) are kept.
    """
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_reproject

    sources = _sources(source, arrays, kwargs)
    target = pyproj.CRS.from_user_input(crs)
    extent: tuple[float, float, float, float]
    if bounds is not None:
        minx, miny, maxx, maxy = check_bbox(bounds, crs=target.to_string(), name="bounds")
        extent = (minx, miny, maxx, maxy)
    elif bbox is not None:
        given = pyproj.CRS.from_user_input(bbox_crs) if bbox_crs is not None else None
        checked = check_bbox(
            bbox, crs=None if given is None else given.to_string(), other_crs=", or pass bbox_crs= the CRS it is in"
        )
        to_target = pyproj.Transformer.from_crs(given or "EPSG:4326", target, always_xy=True)
        extent = to_target.transform_bounds(*checked, densify_pts=21)
    else:
        extent = _footprints(sources, target)
    if not all(math.isfinite(v) for v in extent) or extent[0] >= extent[2] or extent[1] >= extent[3]:
        msg = f"the area asked for has no extent in {crs} ({extent}); check bbox, bbox_crs or bounds"
        raise BboxError(msg)
    # bounds are kept exactly; a bbox or the footprints snap outwards to multiples of the resolution (as stackstac's
    # snap_bounds does), so warps of the same area line up
    geobox = GeoBox.from_bbox(extent, crs=target.to_wkt(), resolution=resolution, tight=bounds is not None)
    warped = []
    for data in sources:
        keep = {*DIMS, "spatial_ref"}
        bare = data.drop_vars([c for c in data.coords if c not in keep]).astype("float32")
        if _outlines_meet(bare, geobox):
            out = xr_reproject(bare, geobox, resampling=resampling, dst_nodata=float("nan"))
        else:  # an outline off the Earth (a full disk, or a target past its limb): see _warp_tiles
            out = _warp_tiles(bare, geobox, resampling)
        out = out.rename({d: n for d, n in (("latitude", "y"), ("longitude", "x")) if d in out.dims})
        warped.append(out.assign_coords(time=bare.time.values, band=bare.band.values))
    result = warped[0]
    for other in warped[1:]:
        result = result.combine_first(other)
    bands = list(dict.fromkeys(b for data in sources for b in data.band.values.tolist()))  # the arrays' order
    carried = _carry(result.sel(band=bands).transpose(*DIMS).rename("data"), sources)
    return _describe_grid(carried, geobox, target)


def _describe_grid(data: xr.DataArray, geobox: Any, crs: pyproj.CRS) -> xr.DataArray:
    """``data`` with the projection extension's coordinates (``proj:shape``, ``proj:transform``, ``proj:code``,
    ``proj:epsg``, ``proj:wkt2``) describing the grid it was warped onto, in the sources' spelling (JSON text, as
    the cube stores them); those that cannot describe it (a code for a CRS without one) and the others
    (``proj:bbox``, ``proj:geometry``, ...) described the sources' grids and are dropped."""
    names = [n for n in data.coords if str(n).startswith("proj:")]
    if not names:
        return data
    ny, nx = geobox.shape
    affine = geobox.transform
    authority = crs.to_authority()
    values: dict[str, Any] = {
        "proj:shape": json.dumps([int(ny), int(nx)]),
        "proj:transform": json.dumps([float(v) for v in (affine.a, affine.b, affine.c, affine.d, affine.e, affine.f)]),
        "proj:code": ":".join(authority) if authority else None,
        "proj:epsg": crs.to_epsg(),
        "proj:wkt2": crs.to_wkt(),
    }
    described = data.drop_vars(names)
    for name in names:
        value = values.get(str(name))
        if value is not None:
            dims = data.coords[name].dims
            shape = tuple(data.sizes[d] for d in dims)
            described = described.assign_coords({name: (dims, np.full(shape, value, dtype=object))})
    return described


def _sources(source: Gridded, arrays: Sequence[str] | None, kwargs: OpenArgs) -> list[xr.DataArray]:
    """The (time, band, y, x) arrays to warp."""
    opened = isinstance(source, xr.DataArray | xr.DataTree | list | tuple)
    if opened and kwargs:
        msg = f"to_grid warps an opened array as it is: {', '.join(kwargs)} only apply to a cube or a repository"
        raise TypeError(msg)
    if isinstance(source, xr.DataArray | list | tuple):
        given = [source] if isinstance(source, xr.DataArray) else list(source)
        if arrays:
            msg = "to_grid(DataArray, arrays=...): DataArrays are warped as given; pass the cube to choose arrays"
            raise TypeError(msg)
        for data in given:
            if not isinstance(data, xr.DataArray) or set(DIMS) - set(data.dims) or "spatial_ref" not in data.coords:
                dims = data.dims if isinstance(data, xr.DataArray) else type(data).__name__
                msg = f"to_grid needs (time, band, y, x) arrays with spatial_ref; got {dims}"
                raise ValueError(msg)
        return given
    if isinstance(source, xr.DataTree):
        metadata = CubeMetadata.from_attrs(source.attrs)
        names = list(arrays or ()) or metadata.array_names
        listed = [n for n in names if n not in source.children and n in metadata.members]
        if listed:
            msg = (
                f"{', '.join(listed)}: members of a union, which this tree lists without opening: open it with "
                "stackcube.open_cube(repo, members=True), or give to_grid the cube itself"
            )
            raise ArrayNotFoundError(msg)
        return [cast("xr.DataArray", source[f"{name}/0"]["data"]) for name in names]
    repo = source.repository if isinstance(source, Cube) else cast("RepoLike", source)
    options = OpenOptions.from_args(kwargs, "to_grid")
    names = list(arrays or ()) or read_metadata(repo, options.version).array_names
    return [open_dataarray(repo, name, **kwargs) for name in names]


def _carry(result: xr.DataArray, sources: Sequence[xr.DataArray]) -> xr.DataArray:
    """The sources' one-dimensional coordinates along ``time`` and ``band``, on the warped array's labels (the
    first source that has a label gives its value)."""
    coords = {}
    for dim in ("time", "band"):
        names = dict.fromkeys(
            n for s in sources for n, c in s.coords.items() if c.dims == (dim,) and n != dim and n not in result.coords
        )
        for name in names:
            found: dict[Any, Any] = {}
            for s in sources:
                if name in s.coords:
                    for label, value in zip(s[dim].values.tolist(), s[name].values.tolist(), strict=True):
                        found.setdefault(label, value)
            values = [found.get(label) for label in result[dim].values.tolist()]
            numbers = all(isinstance(v, int | float) or v is None for v in values)
            array = np.array(
                [np.nan if v is None else v for v in values] if numbers else ["" if v is None else v for v in values]
            )
            coords[name] = (dim, array if numbers else array.astype(object))
    return with_band_aliases(result.assign_coords(coords))


def _footprints(sources: Sequence[xr.DataArray], target: pyproj.CRS) -> tuple[float, float, float, float]:
    """The union of the arrays' extents, in the target CRS: their outlines transformed, or where part of an outline
    lies off the Earth (a geostationary full disk's corners are in space) the bounds of a lattice of 257 x 257 of
    their points that lie on it (an extent short of the limb by at most a step of the lattice)."""
    lows, highs = [], []
    for data in sources:
        crs = pyproj.CRS.from_wkt(str(data.spatial_ref.attrs["crs_wkt"]))
        to_target = pyproj.Transformer.from_crs(crs, target, always_xy=True)
        a, e = pixel_size(data)
        dx, dy = abs(a) / 2, abs(e) / 2
        x0, x1 = float(data.x.min()) - dx, float(data.x.max()) + dx
        y0, y1 = float(data.y.min()) - dy, float(data.y.max()) + dy
        minx, miny, maxx, maxy = to_target.transform_bounds(x0, y0, x1, y1, densify_pts=21)
        if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
            xs, ys = np.meshgrid(np.linspace(x0, x1, 257), np.linspace(y0, y1, 257))
            tx, ty = (np.asarray(v) for v in to_target.transform(xs.ravel(), ys.ravel(), errcheck=False))
            on = np.isfinite(tx) & np.isfinite(ty)
            if not on.any():
                continue
            minx, maxx, miny, maxy = tx[on].min(), tx[on].max(), ty[on].min(), ty[on].max()
        lows.append((minx, miny))
        highs.append((maxx, maxy))
    if not lows:
        return (math.inf, math.inf, -math.inf, -math.inf)
    return (
        min(p[0] for p in lows),
        min(p[1] for p in lows),
        max(p[0] for p in highs),
        max(p[1] for p in highs),
    )


TILE = 512
"""Rows and columns of the blocks :func:`_warp_tiles` warps."""


def _outlines_meet(data: xr.DataArray, geobox: Any) -> bool:
    """Whether the array's outline lands in the target CRS and the target grid's outline in the array's, wherever
    they are sampled (21 points an edge): what odc-geo's lazy warp needs to pair blocks."""
    crs = pyproj.CRS.from_wkt(str(data.spatial_ref.attrs["crs_wkt"]))
    target = pyproj.CRS.from_user_input(geobox.crs.to_wkt())
    a, e = pixel_size(data)
    x0, y0 = float(data.x[0]) - a / 2, float(data.y[0]) - e / 2
    outlines = (
        (crs, target, _outline(x0, y0, x0 + a * data.sizes["x"], y0 + e * data.sizes["y"])),
        (target, crs, _outline(*geobox.extent.boundingbox.bbox)),
    )
    for source, to, (xs, ys) in outlines:
        tx, ty = pyproj.Transformer.from_crs(source, to, always_xy=True).transform(xs, ys, errcheck=False)
        if not (np.isfinite(tx).all() and np.isfinite(ty).all()):
            return False
    return True


def _outline(x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 1.0, 21)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(21, x1), x1 - (x1 - x0) * t, np.full(21, x0)])
    ys = np.concatenate([np.full(21, y0), y0 + (y1 - y0) * t, np.full(21, y1), y1 - (y1 - y0) * t])
    return xs, ys


def _warp_tiles(data: xr.DataArray, geobox: Any, resampling: str) -> xr.DataArray:
    """``data`` (time, band, y, x) warped lazily onto ``geobox``, a dask task per time step, band and block of
    :data:`TILE` x :data:`TILE` target pixels, each reading the window of ``data`` its pixels fall in.

    For grids odc-geo's lazy warp cannot pair with the target's blocks: it finds the source blocks under a target
    block by transforming block outlines between the CRSs, which fails where an outline leaves the Earth (a
    geostationary full disk, or a target reaching past its limb). Here the window is found from a lattice of 65 x 65
    of the block's points that land in the source grid's CRS (2 pixels of margin), and each block is warped with
    odc-geo's GDAL warp as odc-geo warps one block.
    """
    import dask.array
    from dask.delayed import delayed
    from odc.geo.geobox import GeoBox, GeoboxTiles
    from odc.geo.xr import xr_coords

    da: Any = dask.array  # (untyped)
    crs = pyproj.CRS.from_wkt(str(data.spatial_ref.attrs["crs_wkt"]))
    a, e = pixel_size(data)
    height, width = data.sizes["y"], data.sizes["x"]
    origin = (float(data.x[0]) - a / 2, float(data.y[0]) - e / 2)
    source = GeoBox((height, width), Affine(a, 0.0, origin[0], 0.0, e, origin[1]), crs.to_wkt())
    to_source = pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(geobox.crs.to_wkt()), crs, always_xy=True)
    tiles = GeoboxTiles(geobox, (TILE, TILE))
    windows = {(iy, ix): _window(tiles[iy, ix], source, to_source) for iy in range(tiles.shape[0])
               for ix in range(tiles.shape[1])}  # fmt: skip
    steps = []
    for t in range(data.sizes["time"]):
        bands = []
        for b in range(data.sizes["band"]):
            rows = []
            for iy in range(tiles.shape[0]):
                row = []
                for ix in range(tiles.shape[1]):
                    block, window = tiles[iy, ix], windows[iy, ix]
                    shape = (1, 1, *block.shape.yx)
                    if window is None:
                        row.append(da.full(shape, np.nan, dtype="float32", chunks=shape))
                        continue
                    part = data.isel(time=[t], band=[b], y=window[0], x=window[1])
                    warped = delayed(_warp_block)(part, source[window], block, resampling)
                    row.append(da.from_delayed(warped, shape, dtype="float32"))
                rows.append(row)
            bands.append(rows)
        steps.append(bands)
    coords = {"time": data.time.values, "band": data.band.values, **xr_coords(geobox, crs_coord_name="spatial_ref")}
    dims = ("time", "band", *[d for d in coords if d in {"y", "x", "latitude", "longitude"}])
    return xr.DataArray(da.block(steps), dims=dims, coords=coords)


def _window(block: Any, source: Any, to_source: pyproj.Transformer) -> tuple[slice, slice] | None:
    """The rows and columns of ``source`` a target ``block``'s pixels fall in, or None when none does."""
    rows, cols = block.shape.yx
    px, py = np.meshgrid(np.linspace(0, cols, 65), np.linspace(0, rows, 65))
    t = block.affine
    x, y = to_source.transform((t.c + t.a * px + t.b * py).ravel(), (t.f + t.d * px + t.e * py).ravel(), errcheck=False)
    x, y = np.asarray(x), np.asarray(y)
    on = np.isfinite(x) & np.isfinite(y)
    if not on.any():
        return None
    s = source.affine
    col = (x[on] - s.c) / s.a
    row = (y[on] - s.f) / s.e
    height, width = source.shape.yx
    r0, r1 = max(int(np.floor(row.min())) - 2, 0), min(int(np.ceil(row.max())) + 2, height)
    c0, c1 = max(int(np.floor(col.min())) - 2, 0), min(int(np.ceil(col.max())) + 2, width)
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _warp_block(part: xr.DataArray, source: Any, block: Any, resampling: str) -> np.ndarray:
    from odc.geo.warp import rio_reproject

    values = np.asarray(part.values, dtype="float32")
    out = np.full((*values.shape[:-2], *block.shape.yx), np.nan, dtype="float32")
    for index in np.ndindex(*values.shape[:-2]):
        rio_reproject(values[index], out[index], source, block, resampling, src_nodata=np.nan, dst_nodata=np.nan)
    return out
