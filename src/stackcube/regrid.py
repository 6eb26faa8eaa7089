"""``to_grid``: one lazy array on a grid of the caller's choosing, for cubes whose sources lie on several grids.

Everywhere else stackcube copies pixels and never resamples. When a search spans UTM zones or resolutions, a
notebook still wants one array: each of the cube's arrays is warped lazily onto the requested grid with
odc-geo (GDAL warping under dask, block by block) and the results are laid over each other, the first valid
value winning, along the union of their time steps and bands.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Unpack

import pyproj
import xarray as xr

from stackcube.api import Cube, open_dataarray
from stackcube.plan import DIMS
from stackcube.store import OpenArgs, OpenOptions, RepoLike, read_metadata

__all__ = ["to_grid"]

# GDAL reports errors through one process-wide handler, so when odc-geo warps several dask blocks at once a
# transform query on one thread's in-memory dataset can surface as a NotGeoreferencedWarning in another's
# rasterio.warp.reproject call. The source arrays always carry their transforms and the warped values are identical
# with or without the warning (checked against a single-threaded warp), so only that message from that call is
# silenced; everything else rasterio and GDAL say still shows.
warnings.filterwarnings(
    "ignore", message="Dataset has no geotransform, gcps, or rpcs", category=UserWarning, module="rasterio.warp"
)


def to_grid(
    repo: RepoLike | Cube,
    *,
    crs: Any,
    resolution: float,
    bbox: Sequence[float] | None = None,
    bounds: Sequence[float] | None = None,
    resampling: str = "nearest",
    arrays: Sequence[str] | None = None,
    **kwargs: Unpack[OpenArgs],
) -> xr.DataArray:
    """Every array of a cube warped onto one grid: ``crs`` at ``resolution``, covering ``bbox`` (lon/lat).

    Parameters
    ----------
    repo
        The cube (as :func:`stackcube.open_cube` takes it, or a :class:`stackcube.Cube`).
    crs, resolution
        The target grid, e.g. ``"EPSG:32735"`` and ``20.0``.
    bbox
        (west, south, east, north) in degrees; by default the union of the arrays' extents.
    bounds
        Or (minx, miny, maxx, maxy) in the target CRS, kept exactly (not snapped to multiples of the resolution).
    resampling
        As GDAL names it: ``"nearest"`` (default), ``"bilinear"``, ``"average"``, ...
    arrays
        Which of the cube's arrays to use (default: all).
    **kwargs
        Which snapshot and how, as :func:`stackcube.open_cube` takes them (``branch``, ``tag``, ``snapshot``,
        ``chunks``, ``allow``; ``mask_and_scale=False`` warps the stored values, nodata included).

    Returns
    -------
    xarray.DataArray
        Lazy (time, band, y, x) float values, NaN where no array has a valid value; ``spatial_ref`` for rioxarray
        and odc-geo.
    """
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_reproject

    if isinstance(repo, Cube):
        repo = repo.repository
    options = OpenOptions.from_args(kwargs, "to_grid")
    names = list(arrays or ()) or read_metadata(repo, options.version).array_names
    sources = [open_dataarray(repo, name, **kwargs) for name in names]
    target = pyproj.CRS.from_user_input(crs)
    extent: tuple[float, float, float, float]
    if bounds is not None:
        minx, miny, maxx, maxy = (float(v) for v in bounds)
        extent = (minx, miny, maxx, maxy)
    elif bbox is not None:
        to_target = pyproj.Transformer.from_crs("EPSG:4326", target, always_xy=True)
        west, south, east, north = (float(v) for v in bbox)
        extent = to_target.transform_bounds(west, south, east, north, densify_pts=21)
    else:
        extent = _footprints(sources, target)
    geobox = GeoBox.from_bbox(extent, crs=target.to_wkt(), resolution=resolution, tight=True)
    warped = []
    for source in sources:
        keep = {*DIMS, "spatial_ref"}
        data = source.drop_vars([c for c in source.coords if c not in keep])
        out = xr_reproject(data.astype("float32"), geobox, resampling=resampling, dst_nodata=float("nan"))
        warped.append(out.assign_coords(time=data.time.values, band=data.band.values))
    result = warped[0]
    for other in warped[1:]:
        result = result.combine_first(other)
    return result.transpose(*DIMS).rename("data")


def _footprints(sources: Sequence[xr.DataArray], target: pyproj.CRS) -> tuple[float, float, float, float]:
    """The union of the arrays' extents, in the target CRS."""
    lows, highs = [], []
    for data in sources:
        crs = pyproj.CRS.from_wkt(str(data.spatial_ref.attrs["crs_wkt"]))
        to_target = pyproj.Transformer.from_crs(crs, target, always_xy=True)
        dx = abs(float(data.x[1] - data.x[0])) / 2 if data.sizes["x"] > 1 else 0.0
        dy = abs(float(data.y[1] - data.y[0])) / 2 if data.sizes["y"] > 1 else 0.0
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
