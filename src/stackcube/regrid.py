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
from stackcube._georef import pixel_size
from stackcube.api import Cube, open_dataarray
from stackcube.errors import BboxError
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
        bare = data.drop_vars([c for c in data.coords if c not in keep])
        out = xr_reproject(bare.astype("float32"), geobox, resampling=resampling, dst_nodata=float("nan"))
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
        names = list(arrays or ()) or CubeMetadata.from_attrs(source.attrs).array_names
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
    """The union of the arrays' extents, in the target CRS."""
    lows, highs = [], []
    for data in sources:
        crs = pyproj.CRS.from_wkt(str(data.spatial_ref.attrs["crs_wkt"]))
        to_target = pyproj.Transformer.from_crs(crs, target, always_xy=True)
        a, e = pixel_size(data)
        dx, dy = abs(a) / 2, abs(e) / 2
        x0, x1 = float(data.x.min()) - dx, float(data.x.max()) + dx
        y0, y1 = float(data.y.min()) - dy, float(data.y.max()) + dy
        minx, miny, maxx, maxy = to_target.transform_bounds(x0, y0, x1, y1, densify_pts=21)
        lows.append((minx, miny))
        highs.append((maxx, maxy))
    return (
        min(p[0] for p in lows),
        min(p[1] for p in lows),
        max(p[0] for p in highs),
        max(p[1] for p in highs),
    )
