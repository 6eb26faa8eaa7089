"""``stackcube.stack``: the stackstac-shaped entry point, for notebooks that used ``stackstac.stack(items, ...)`` or
``odc.stac.load(items, ...)``.

It builds a virtual cube of the items (in memory unless a repository is named) and returns one (time, band, y, x)
DataArray with the coordinates stackstac users look for: ``time``, ``id``, ``band``, ``x``, ``y``, ``epsg``, the
items' properties along ``time`` and the assets' band metadata (``common_name``, ``title``, ``gsd``,
``center_wavelength``, ``full_width_half_max``, ``proj:*``) along ``band``.

stackstac's parameters either do what stackstac does or are refused naming the stackcube way. The difference that
matters: nothing is resampled unless asked. On the items' own grid values are the sources' pixels exactly;
``epsg``/``crs`` or ``resolution`` naming another grid (or items on several grids with one of them given) warp
through :func:`stackcube.to_grid`, and a :class:`~stackcube.errors.ResamplingWarning` says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Unpack

import numpy as np
import pyproj
import xarray as xr

from stackcube._bbox import check_bbox
from stackcube._georef import pixel_size
from stackcube._keywords import check_keywords, keywords_of
from stackcube._physical import physical
from stackcube.api import Cube, SourceArgs, build_cube, open_dataarray
from stackcube.errors import ResamplingWarning
from stackcube.options import GroupBy
from stackcube.regrid import to_grid
from stackcube.search import SEARCH_KEYWORDS, CatalogLike, SearchArgs, search_items
from stackcube.settings import Credentials
from stackcube.store import RepoLike, memory_repository

__all__ = ["REFUSED", "StackArgs", "stack"]


class StackArgs(SearchArgs, SourceArgs, total=False):
    """The keywords of :func:`stack` besides its own: the search, how each source's values count, and what the
    sources' hosts want."""

    credentials: Credentials | None
    """Per URL prefix, what the sources' hosts want (:data:`stackcube.settings.Credentials`); never stored."""


REFUSED: Mapping[str, str] = {
    "gdal_env": "stackcube reads tiles itself, not through GDAL: set stackcube.settings (retries, concurrency, "
    "timeouts) instead",
    "reader": "stackcube reads tiles itself, not through a rasterio reader: set stackcube.settings instead",
    "errors_as_nodata": "stackcube never turns a failed read into nodata (that would be wrong pixels); pass "
    "on_error='skip' to leave out sources that cannot be indexed",
    "geobox": "pass crs=, resolution= and bounds= (to_grid's grid), or leave them out for the items' own grid",
    "like": "pass crs=, resolution= and bounds= of the array to match",
    "anchor": "on the items' own grid the pixels are the sources'; for another grid pass bounds= in the target CRS",
    "nodata": "stackcube takes nodata from STAC (raster:bands) or the files; pass fill_value= for what it becomes",
    "patch_url": "sign hrefs before stacking (planetary_computer.sign(items)); stackcube stores no signature",
    "fail_on_error": "pass on_error='raise' (default) or on_error='skip'",
    "x": "pass bounds=(minx, miny, maxx, maxy) in the items' CRS",
    "y": "pass bounds=(minx, miny, maxx, maxy) in the items' CRS",
    "lon": "pass bounds_latlon=(west, south, east, north)",
    "lat": "pass bounds_latlon=(west, south, east, north)",
}
"""stackstac and odc-stac parameters stackcube does not take, with what to do instead."""

_ODC_GROUPBY: Mapping[str, GroupBy] = {"time": "datetime", "id": None}
"""odc-stac's ``groupby`` names for stackcube's."""


def stack(
    items: CatalogLike,
    assets: Sequence[str] | None = None,
    *,
    epsg: int | None = None,
    resolution: float | None = None,
    bounds: Sequence[float] | None = None,
    bounds_latlon: Sequence[float] | None = None,
    snap_bounds: bool = True,
    resampling: Any = "nearest",
    chunksize: int | Sequence[int] | None = None,
    dtype: Any = None,
    fill_value: float | None = None,
    rescale: bool = True,
    sortby_date: Literal["asc", "desc"] | bool = "asc",
    xy_coords: Literal["center", "topleft"] | bool = "center",
    properties: bool | str | Sequence[str] = True,
    band_coords: bool = True,
    bands: Sequence[str] | str | None = None,
    crs: Any = None,
    chunks: Mapping[str, int] | None = None,
    bbox: Any = None,
    datetime: Any = None,
    repo: RepoLike | None = None,
    array: str | None = None,
    groupby: GroupBy | str = None,
    mask_and_scale: bool = True,
    progress: bool = False,
    **kwargs: Unpack[StackArgs],
) -> xr.DataArray:
    """Stack items into one lazy (time, band, y, x) DataArray, like ``stackstac.stack`` (and ``odc.stac.load``'s
    common parameters), without resampling unless another grid is asked for.

    Parameters
    ----------
    items
        pystac Items or item dicts, an ItemCollection, a static catalog or a STAC API URL (with ``**kwargs`` as
        :func:`stackcube.plan_cube` takes them: collections, query, filter, ..., overlap, sort_by, on_error).
    assets, bands
        Asset keys or common names, in band order (default: every GeoTIFF data asset); ``bands`` is odc-stac's name.
    epsg, crs, resolution
        The output grid. Left out (or equal to the items' own): the items' grid, values exactly the sources'. Another
        CRS or pixel size: warped with ``resampling`` by :func:`stackcube.to_grid` (``resolution`` is then needed
        when the CRS changes), with a :class:`~stackcube.errors.ResamplingWarning`.
    bounds, bounds_latlon, snap_bounds
        Clip to (minx, miny, maxx, maxy) in the output CRS, or to (west, south, east, north) in degrees. On the
        items' grid the pixels touching the bounds are kept (they are snapped already); ``snap_bounds=False``
        matters only when warping, where the bounds are then kept exactly.
    resampling
        A GDAL name (``"nearest"``, ``"bilinear"``, ...) or a ``rasterio.enums.Resampling``; used only when warping.
    chunksize, chunks
        Dask chunks along y and x: an int, a (y, x) pair, or odc-stac's ``{"x": ..., "y": ...}`` (default: whole
        source tiles, about 2048 pixels square).
    dtype, fill_value
        The output dtype (default float32, or float64 for 32- and 64-bit sources) and the value of missing pixels
        (default NaN; an integer ``dtype`` needs an integer ``fill_value``).
    rescale
        Apply each band's scale and offset (default). False gives stored values, nodata still ``fill_value``.
    sortby_date
        ``"asc"`` (default), ``"desc"``, or False for the items' order.
    xy_coords
        ``"center"`` (default: pixel centres, what rioxarray and odc-geo expect; stackstac's default is
        ``"topleft"``), ``"topleft"`` (pixel corners, as stackstac's default), or False (no x/y coordinates).
    properties
        Item properties as coordinates along ``time``: True (all), False (none) or the names to keep.
    band_coords
        The assets' band metadata as coordinates along ``band`` (True) or not.
    bbox, datetime
        The search (the array is clipped to the tiles the bbox touches); ``bounds_latlon`` is used when ``bbox`` is
        not given.
    repo
        Where the virtual cube is committed; by default an in-memory Icechunk repository.
    array
        Which array when the items span several grids and no output grid is given (the error lists them).
    groupby
        None (default, as stackstac): one time step per item; ``"datetime"`` / odc-stac's ``"time"`` or
        ``"solar_day"`` merge the items of one acquisition or day that lie side by side.
    mask_and_scale
        False: the stored values exactly, nodata included (as stackstac with ``rescale=False`` and ``fill_value``
        its nodata).

    Examples
    --------
    >>> data = stack(items, assets=["red", "nir"], bounds_latlon=(27.9, -4.55, 27.95, -4.52))  # doctest: +SKIP
    >>> data.sel(band="red")  # doctest: +SKIP
    """
    for name in kwargs:
        if name in REFUSED:
            msg = f"stack() does not take {name}=: {REFUSED[name]}"
            raise TypeError(msg)
    check_keywords(kwargs, keywords_of(StackArgs), "stack")
    assets = _one_of("assets", assets, "bands", [bands] if isinstance(bands, str) else bands)
    target = _target_crs(epsg, crs)
    spatial = _spatial_chunks(chunksize, chunks)
    if bbox is None and bounds_latlon is not None:
        bbox = check_bbox(bounds_latlon, name="bounds_latlon")
    grouping = _ODC_GROUPBY.get(groupby, groupby) if isinstance(groupby, str) else groupby
    _check_values(dtype, fill_value, mask_and_scale, rescale)

    search: Any = {k: v for k, v in kwargs.items() if k in SEARCH_KEYWORDS}
    placement: Any = {k: v for k, v in kwargs.items() if k not in SEARCH_KEYWORDS}
    _, found = search_items(items, bbox=bbox, datetime=datetime, **search)  # once; the cube is built from these
    cube = build_cube(
        found,
        bbox,
        assets=assets,
        repo=memory_repository() if repo is None else repo,
        groupby=grouping,  # type: ignore[arg-type]
        progress=progress,
        **placement,
    )
    data = _open(
        cube,
        array=array,
        target=target,
        resolution=resolution,
        bounds=bounds,
        bounds_latlon=bounds_latlon,
        snap_bounds=snap_bounds,
        resampling=resampling,
        chunks=spatial,
        mask_and_scale=mask_and_scale,
        rescale=rescale,
        credentials=kwargs.get("credentials"),
    )
    data = _values(data, dtype, fill_value)
    data = _order(data, sortby_date, [item.id for item in found])
    data = _coords(data, xy_coords, properties, band_coords)
    data.attrs["stackcube_snapshot"] = cube.snapshot_id
    return data


def _one_of(name: str, value: Any, other: str, other_value: Any) -> Any:
    if value is not None and other_value is not None and list(value) != list(other_value):
        msg = f"stack() takes {name}= (stackstac) or {other}= (odc-stac), not both"
        raise TypeError(msg)
    return value if value is not None else other_value


def _target_crs(epsg: int | None, crs: Any) -> pyproj.CRS | None:
    """The output CRS asked for by stackstac's ``epsg`` or odc-stac's ``crs``, if any."""
    given = [pyproj.CRS.from_epsg(epsg)] if epsg is not None else []
    if crs is not None:
        given.append(pyproj.CRS.from_user_input(crs))
    if len(given) == 2 and given[0] != given[1]:
        msg = f"stack() got epsg={epsg} and crs={crs!r}, which differ; give one"
        raise TypeError(msg)
    return given[0] if given else None


def _spatial_chunks(chunksize: int | Sequence[int] | None, chunks: Mapping[str, int] | None) -> dict[str, int] | None:
    """stackstac's ``chunksize`` or odc-stac's ``chunks`` as chunks along y and x."""
    if chunksize is not None and chunks is not None:
        msg = "stack() takes chunksize= (stackstac) or chunks= (odc-stac), not both"
        raise TypeError(msg)
    if chunksize is not None:
        if isinstance(chunksize, int):
            return {"y": chunksize, "x": chunksize}
        sizes = list(chunksize)
        if len(sizes) != 2:  # stackstac also takes 4 values (time, band, y, x); stackcube's are (1, 1, y, x)
            sizes = sizes[-2:]
        return {"y": int(sizes[0]), "x": int(sizes[1])}
    if chunks is not None:
        unknown = set(chunks) - {"x", "y", "time", "band", "longitude", "latitude"}
        if unknown:
            msg = f"chunks= takes sizes along x and y; not {sorted(unknown)}"
            raise TypeError(msg)
        names = {"longitude": "x", "latitude": "y"}
        return {names.get(k, k): int(v) for k, v in chunks.items() if k not in {"time", "band"}}
    return None


def _check_values(dtype: Any, fill_value: float | None, mask_and_scale: bool, rescale: bool) -> None:
    if not mask_and_scale and (fill_value is not None or not rescale):
        msg = "mask_and_scale=False gives the stored values, nodata included: fill_value= and rescale= do not apply"
        raise TypeError(msg)
    if dtype is None:
        return
    kind = np.dtype(dtype).kind
    missing = fill_value is None or (isinstance(fill_value, float) and math.isnan(fill_value))
    if kind in "iub" and mask_and_scale and missing:
        msg = (
            f"dtype={np.dtype(dtype).name} cannot hold NaN, which missing pixels are by default: pass fill_value= "
            "a value of that dtype too (e.g. 0), or mask_and_scale=False for the stored values"
        )
        raise TypeError(msg)


def _open(
    cube: Cube,
    *,
    array: str | None,
    target: pyproj.CRS | None,
    resolution: float | None,
    bounds: Sequence[float] | None,
    bounds_latlon: Sequence[float] | None,
    snap_bounds: bool,
    resampling: Any,
    chunks: dict[str, int] | None,
    mask_and_scale: bool,
    rescale: bool,
    credentials: Credentials | None = None,
) -> xr.DataArray:
    """The array on the items' own grid, or warped onto the grid asked for."""
    grids = {u.name: (u.crs, abs(u.transform.a)) for u in cube.plan.unions}
    grids |= {a.name: (a.crs, abs(a.transform.a)) for a in cube.plan.arrays if a.name in cube.plan.array_names}
    names = [array] if array else list(grids)
    if array is not None and array not in grids:
        msg = f"the items' arrays are {', '.join(grids)}; array={array!r} is none of them"
        raise ValueError(msg)
    own = {(pyproj.CRS.from_user_input(grids[n][0]), grids[n][1]) for n in names}
    asked_crs = target or (next(iter(own))[0] if len(own) == 1 else None)
    warp = (target is not None or resolution is not None) and (
        len(own) > 1 or own != {(asked_crs, resolution if resolution is not None else next(iter(own))[1])}
    )
    if not warp:
        if len(names) > 1:
            msg = (
                f"the items lie on {len(names)} grids ({', '.join(names)}); stackcube does not resample unless "
                "asked: pass array= one of them, or epsg=/crs= and resolution= for one grid (warped, not exact)"
            )
            raise ValueError(msg)
        data = _read(cube, names[0], chunks, mask_and_scale=mask_and_scale, rescale=rescale, credentials=credentials)
        crs = pyproj.CRS.from_user_input(grids[names[0]][0])
        if bounds is not None or bounds_latlon is not None:
            data = _clip(data, crs, bounds, bounds_latlon)
        return _with_epsg(data, crs)
    if asked_crs is None or resolution is None:
        msg = (
            f"the items lie on {len(own)} grids ({', '.join(names)}): warping them onto one needs both epsg=/crs= "
            "and resolution="
        )
        raise ValueError(msg)
    sources = [
        _read(cube, n, None, mask_and_scale=mask_and_scale, rescale=rescale, credentials=credentials) for n in names
    ]
    exact = bounds if (bounds is not None and not snap_bounds) else None
    snapped = bounds if (bounds is not None and snap_bounds) else None
    if bounds is None and bounds_latlon is not None and not snap_bounds:
        to_target = pyproj.Transformer.from_crs("EPSG:4326", asked_crs, always_xy=True)
        exact = to_target.transform_bounds(*check_bbox(bounds_latlon, name="bounds_latlon"), densify_pts=21)
    method = getattr(resampling, "name", resampling)
    from_grids = ", ".join(f"{grids[n][0]} {grids[n][1]:g}" for n in names)
    warnings.warn(
        f"resampled ({method}) from {from_grids} to {asked_crs.to_string()} {resolution:g}: values are not the "
        "sources' pixels; leave out epsg/crs and resolution for the items' own grid",
        ResamplingWarning,
        stacklevel=3,
    )
    data = to_grid(
        sources,
        crs=asked_crs,
        resolution=resolution,
        bounds=exact,
        bbox=snapped if snapped is not None else (bounds_latlon if exact is None else None),
        bbox_crs=asked_crs if snapped is not None else None,
        resampling=method,
    )
    return _with_epsg(data.chunk(chunks) if chunks else data, asked_crs)


def _read(
    cube: Cube,
    name: str,
    chunks: dict[str, int] | None,
    *,
    mask_and_scale: bool,
    rescale: bool,
    credentials: Credentials | None = None,
) -> xr.DataArray:
    """One array of the cube; ``rescale=False``: the stored values with nodata masked (scale and offset kept as
    coordinates, not applied)."""
    # opened on the sources' tiles, then rechunked: chunks smaller than a tile split it after one read of it
    data = open_dataarray(cube.repository, name, mask_and_scale=mask_and_scale and rescale, credentials=credentials)
    if mask_and_scale and not rescale:
        scale, offset = data.coords["scale"], data.coords["offset"]
        masked = physical(data.assign_coords(scale=xr.ones_like(scale), offset=xr.zeros_like(offset)))
        data = masked.assign_coords(scale=scale, offset=offset)
    return data.chunk(chunks) if chunks else data


def _clip(
    data: xr.DataArray, crs: pyproj.CRS, bounds: Sequence[float] | None, bounds_latlon: Sequence[float] | None
) -> xr.DataArray:
    """The pixels of ``data`` whose footprint meets ``bounds`` (in its CRS) or ``bounds_latlon`` (degrees)."""
    if bounds is not None:
        minx, miny, maxx, maxy = check_bbox(bounds, crs=crs.to_string(), name="bounds")
    else:
        west, south, east, north = check_bbox(bounds_latlon, name="bounds_latlon")
        to_grid_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        minx, miny, maxx, maxy = to_grid_crs.transform_bounds(west, south, east, north, densify_pts=21)
    a, e = pixel_size(data)
    dx, dy = abs(a) / 2, abs(e) / 2
    keep_x = (data.x + dx > minx) & (data.x - dx < maxx)
    keep_y = (data.y + dy > miny) & (data.y - dy < maxy)
    clipped = data.isel(x=np.flatnonzero(keep_x.values), y=np.flatnonzero(keep_y.values))
    if clipped.sizes["x"] == 0 or clipped.sizes["y"] == 0:
        msg = f"the bounds {tuple(bounds or bounds_latlon or ())} miss the items' grid ({crs.to_string()})"
        raise ValueError(msg)
    return clipped


def _with_epsg(data: xr.DataArray, crs: pyproj.CRS) -> xr.DataArray:
    return data.assign_coords(epsg=crs.to_epsg())


def _values(data: xr.DataArray, dtype: Any, fill_value: float | None) -> xr.DataArray:
    if fill_value is not None and not (isinstance(fill_value, float) and math.isnan(fill_value)):
        data = data.fillna(fill_value)
    if dtype is not None and np.dtype(dtype) != data.dtype:
        data = data.astype(dtype)
    return data


def _order(data: xr.DataArray, sortby_date: Literal["asc", "desc"] | bool, item_order: Sequence[str]) -> xr.DataArray:
    if sortby_date in ("asc", True):
        return data
    if sortby_date == "desc":
        return data.isel(time=slice(None, None, -1))
    if sortby_date is False:
        position = {item: i for i, item in enumerate(item_order)}
        first_ids = [str(ids).split(",")[0] for ids in data["id"].values]
        return data.isel(time=np.argsort([position.get(i, len(position)) for i in first_ids], kind="stable"))
    msg = f"sortby_date must be 'asc', 'desc' or False, not {sortby_date!r}"
    raise ValueError(msg)


_OURS = {"id", "epsg", "spatial_ref", "scale", "offset", "source_href", "source_etag"}
"""Coordinates stackcube always gives."""


def _coords(
    data: xr.DataArray,
    xy_coords: Literal["center", "topleft"] | bool,
    properties: bool | str | Sequence[str],
    band_coords: bool,
) -> xr.DataArray:
    along_time = [n for n, c in data.coords.items() if c.dims == ("time",) and n not in {"time", *_OURS}]
    if properties is not True:
        keep = set() if properties is False else {properties} if isinstance(properties, str) else set(properties)
        data = data.drop_vars([n for n in along_time if n not in keep])
    if not band_coords:  # and no selection by common name: the plain index
        data = data.drop_vars([n for n, c in data.coords.items() if c.dims == ("band",) and n != "band"])
        data = data.drop_indexes("band").set_xindex("band")
    if xy_coords in ("center", True):
        return data
    if xy_coords == "topleft":
        a, e = pixel_size(data)
        return data.assign_coords(x=data.x - a / 2, y=data.y - e / 2)
    if xy_coords is False:
        return data.drop_vars(["x", "y"])
    msg = f"xy_coords must be 'center', 'topleft' or False, not {xy_coords!r}"
    raise ValueError(msg)
