"""A union read back: its members (Zarr arrays on their own grids) assembled as one xarray Dataset.

The union is a lazily indexed NumPy-backed array, as xarray's own backends are: each read assembles exactly the
window asked for, fetching the member tiles it needs concurrently in one go. With dask (the default) it is chunked
in blocks of whole member tiles (one date and band each), so a task is one such read and dask narrows it to the
part a selection touches. Either way nodata masking and the scale and offset of each time step and band are
:func:`stackcube._physical.physical`, as for every other array of a cube.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import dask.base
import numpy as np
import xarray as xr
import zarr
from xarray.backends import BackendArray
from xarray.core import indexing

from stackcube import _sync
from stackcube._georef import spatial_coords
from stackcube._physical import physical
from stackcube.options import BLOCK, Chunks
from stackcube.plan import DIMS, band_coords
from stackcube.settings import Settings, current
from stackcube.union._lay import block_size, lay
from stackcube.union._order import order_steps
from stackcube.union._plan import Piece, UnionPlan

__all__ = ["union_dataset"]

# attributes of a member's data array that describe the member, not the union
_MEMBER_ONLY = {"coordinates", "spatial:dimensions"}


def union_dataset(
    union: UnionPlan,
    members: Sequence[zarr.Array[Any]],
    *,
    level: int = 0,
    chunks: Chunks = None,
    mask_and_scale: bool = True,
    settings: Settings | None = None,
    token: Any = None,
) -> xr.Dataset:
    """The union at ``level`` as a Dataset with one variable ``data`` (time, band, y, x).

    ``members`` are the member arrays' level-``level`` data arrays, in the union's member order. Every pixel
    takes the first valid value of the pieces of its time step in priority order
    (:func:`~stackcube.union._order.order_steps`); pixels no member covers hold the fill value. ``token`` names
    what is read (the snapshot), for dask's names.
    """
    view = union.at_level(level)
    steps, step_ids = order_steps(union)
    attrs = {k: v for k, v in members[0].attrs.items() if k not in _MEMBER_ONLY}
    data = xr.Variable(
        DIMS, indexing.LazilyIndexedArray(_UnionWindows(view, members, steps, settings or current())), attrs
    )
    if chunks is not False:
        # dask chunks of whole member tiles, one date and band each: a task is one concurrent read of its tiles
        tile = max(max(m.chunks[2:]) for m in members)
        blocks = {"time": 1, "band": 1, "y": block_size(tile, BLOCK), "x": block_size(tile, BLOCK)}
        given = {**blocks, **dict(chunks or {})}
        data = data.chunk(given, name=f"stackcube-union-{dask.base.tokenize(token, union.name, level, given)}")
    _, _, height, width = view.shape
    coords: dict[str, Any] = {
        "time": ("time", view.times),
        "band": ("band", np.array(view.bands, dtype=object)),
        "id": ("time", np.array(step_ids, dtype=object)),
        **spatial_coords(view.crs, view.transform, height, width),
    }
    for name, coord in band_coords(union.band_fields).items():
        coords.setdefault(name, coord)
    if union.scale:  # cubes written before per-(time, band) scales: the members' CF attributes apply
        coords["scale"] = (("time", "band"), np.array(union.scale, np.float64))
        coords["offset"] = (("time", "band"), np.array(union.offset, np.float64))
    data.attrs["grid_mapping"] = "spatial_ref"
    raw = xr.DataArray(data, coords=coords, name="data")
    decoded = physical(raw) if mask_and_scale else raw
    return xr.Dataset({"data": decoded}, attrs={"union": union.name, "members": list(union.members)})


def _nodata(union: UnionPlan) -> tuple[Any, bool]:
    """The fill value pixels start as, and whether it marks invalid pixels (a union with nodata)."""
    return (union.fill_value, True) if union.fill_value is not None else (0, False)


def _valid(values: np.ndarray, fill: Any, nodata: bool) -> Any:
    """Where ``values`` are valid: not the fill value (NaN for a NaN fill) with nodata, else everywhere."""
    if not nodata:
        return True
    return ~np.isnan(values) if isinstance(fill, float) and math.isnan(fill) else values != fill


def _positions(key: int | slice, size: int) -> np.ndarray:
    """The indices along one axis that a basic-indexing key selects."""
    return np.arange(*key.indices(size)) if isinstance(key, slice) else np.array([key])


class _UnionWindows(BackendArray):
    """The union as a lazily indexed NumPy array: each read assembles exactly the window asked for."""

    def __init__(
        self, view: UnionPlan, members: Sequence[zarr.Array[Any]], steps: Sequence[Sequence[Piece]], settings: Settings
    ) -> None:
        self.view, self.members, self.steps, self.settings = view, members, steps, settings
        self.shape = view.shape
        self.dtype = np.dtype(members[0].dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._read)  # type: ignore[no-any-return]

    def _read(self, key: tuple[int | slice, ...]) -> np.ndarray:
        times, bands, rows, cols = (_positions(k, n) for k, n in zip(key, self.shape, strict=True))
        fill, nodata = _nodata(self.view)
        if not (times.size and bands.size and rows.size and cols.size):
            out = np.empty((times.size, bands.size, rows.size, cols.size), self.dtype)
        else:
            y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
            out = np.full((times.size, bands.size, y1 - y0, x1 - x0), fill, self.dtype)
            reads = self._pieces(times, bands, (y0, y1, x0, x1))
            values = _sync.run(self._fetch(reads))
            # the first piece of a date and band lands on fill alone: a copy is the same as laying it (its invalid
            # pixels are the fill value); what the pieces cover is tracked only where a second one comes
            first: dict[tuple[int, int], tuple[tuple[int, int, int, int], np.ndarray]] = {}
            covered: dict[tuple[int, int], np.ndarray] = {}
            for (ti, bi, (dy0, dy1, dx0, dx1), *_), piece in zip(reads, values, strict=True):
                if (ti, bi) not in first:
                    out[ti, bi, dy0:dy1, dx0:dx1] = piece
                    first[(ti, bi)] = ((dy0, dy1, dx0, dx1), piece)
                    continue
                if (ti, bi) not in covered:
                    (fy0, fy1, fx0, fx1), laid = first[(ti, bi)]
                    covered[(ti, bi)] = np.zeros(out.shape[2:], bool)
                    covered[(ti, bi)][fy0:fy1, fx0:fx1] = _valid(laid, fill, nodata)
                mask = covered[(ti, bi)][dy0:dy1, dx0:dx1]
                lay(out[ti, bi, dy0:dy1, dx0:dx1], mask, piece, fill, nodata)
            if rows.size != y1 - y0 or cols.size != x1 - x0:  # a strided selection: keep its rows and columns
                out = out[:, :, rows - y0][:, :, :, cols - x0]
        squeeze = tuple(axis for axis, k in enumerate(key) if not isinstance(k, slice))
        return out.squeeze(axis=squeeze) if squeeze else out

    def _pieces(
        self, times: np.ndarray, bands: np.ndarray, window: tuple[int, int, int, int]
    ) -> list[tuple[int, int, tuple[int, int, int, int], int, tuple[Any, ...]]]:
        """(time slot, band slot, destination in the window, member, member selection) of every piece to read,
        in priority order within each (time, band)."""
        y0, y1, x0, x1 = window
        view = self.view
        reads = []
        for ti, t in enumerate(times.tolist()):
            for bi, b in enumerate(bands.tolist()):
                band = view.bands[b]
                for m, tm in self.steps[t]:
                    if band not in view.member_bands[m]:
                        continue
                    row, col = view.offsets[m]
                    height, width = self.members[m].shape[2:]
                    oy0, oy1 = max(y0, row), min(y1, row + height)
                    ox0, ox1 = max(x0, col), min(x1, col + width)
                    if oy0 >= oy1 or ox0 >= ox1:
                        continue
                    mb = view.member_bands[m].index(band)
                    selection = (tm, mb, slice(oy0 - row, oy1 - row), slice(ox0 - col, ox1 - col))
                    reads.append((ti, bi, (oy0 - y0, oy1 - y0, ox0 - x0, ox1 - x0), m, selection))
        return reads

    async def _fetch(self, reads: Sequence[tuple[Any, ...]]) -> list[np.ndarray]:
        """Every piece, read concurrently within the settings' cap (a piece is one member tile or a few)."""
        gate = asyncio.Semaphore(self.settings.max_concurrency)

        async def one(m: int, selection: tuple[Any, ...]) -> np.ndarray:
            async with gate:
                return np.asarray(await self.members[m].async_array.getitem(selection))

        return list(await asyncio.gather(*(one(m, selection) for *_, m, selection in reads)))
