"""A union read back: its members (Zarr arrays on their own grids) assembled as one xarray Dataset.

The union is a lazily indexed NumPy-backed array, as xarray's own backends are: each read assembles exactly the
window asked for, fetching the member tiles it needs concurrently in one go. With dask (the default) it is chunked
in blocks of whole member tiles (one date and band each), so a task is one such read and dask narrows it to the
part a selection touches. Either way nodata masking and the scale and offset of each time step and band are
:func:`stackcube._physical.physical`, as for every other array of a cube.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import dask.base
import numpy as np
import xarray as xr
import zarr
from xarray.backends import BackendArray
from xarray.core import indexing
from zarr.core.array_spec import ArraySpec
from zarr.core.buffer import NDBuffer, default_buffer_prototype

from stackcube import _sync
from stackcube._georef import spatial_coords
from stackcube._physical import physical
from stackcube._remedies import drop_vanished, reindex
from stackcube._share import Shared
from stackcube.errors import SourceChangedError, SourceNotFoundError
from stackcube.options import BLOCK, Chunks
from stackcube.plan import DIMS, band_coords
from stackcube.settings import Settings, current
from stackcube.tiff import TiffSegmentCodec, decode_segment, read_segments
from stackcube.union._lay import block_size, lay
from stackcube.union._order import order_steps
from stackcube.union._plan import Piece, UnionPlan

__all__ = ["SourceRef", "TileRefs", "union_dataset"]


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One source of a union's member tiles, and what a read of it is checked against."""

    href: str
    """Where it is."""
    validator: str | None
    """``"etag"``, ``"last-modified"``, or None (unprotected)."""
    etag: str | None = None
    """The ETag it had when indexed."""
    last_modified: datetime | None = None
    """Its Last-Modified when indexed."""
    account: str | None = None
    """The Azure storage account of an ``az://`` href."""


@dataclass(frozen=True, slots=True, eq=False)
class TileRefs:
    """Where a union level's member tiles lie (the cube's union tile table), for reads by merged ranged GETs."""

    tiles: np.ndarray
    """Per member chunk (the members' chunk grids in C order, one member after another): source row (-1: none),
    offset, length."""
    sources: tuple[SourceRef, ...]
    """The sources the rows name."""
    settings: Settings
    """How to read them (the credentials given at open included)."""
    shared: Shared[int] = field(default_factory=Shared)
    """Tile rows being fetched or fetched lately, shared by every read of this union level: a row names its bytes
    among this table's only (one level of one snapshot), and another open's rows are another reader's, apart from
    these; what is kept counts against the process's one budget (:data:`stackcube._share.RECENT`)."""
    repo: str | None = None
    """The cube's path or URL, for the commands errors advise (None: opened from a Storage or Repository)."""


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
    refs: Callable[[], TileRefs | None] | None = None,
) -> xr.Dataset:
    """The union at ``level`` as a Dataset with one variable ``data`` (time, band, y, x).

    ``members`` are the member arrays' level-``level`` data arrays, in the union's member order. Every pixel
    takes the first valid value of the pieces of its time step in priority order
    (:func:`~stackcube.union._order.order_steps`); pixels no member covers hold the fill value. ``token`` names
    what is read (the snapshot), for dask's names. ``refs`` gives, when first needed, where the member tiles lie:
    adjacent tiles of one file are then fetched with one ranged GET, checked against the version indexed (None,
    or a cube without the table: each tile through Icechunk, one GET each).
    """
    view = union.at_level(level)
    steps, step_ids = order_steps(union)
    attrs = {k: v for k, v in members[0].attrs.items() if k not in _MEMBER_ONLY}
    data = xr.Variable(
        DIMS, indexing.LazilyIndexedArray(_UnionWindows(view, members, steps, settings or current(), refs)), attrs
    )
    # dask chunks of whole member tiles, one date and band each: a task is one concurrent read of its tiles
    tile = max(max(m.chunks[2:]) for m in members)
    blocks = {"time": 1, "band": 1, "y": block_size(tile, BLOCK), "x": block_size(tile, BLOCK)}
    if chunks is not False:
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
    if chunks is False:  # what xarray's ``chunks={}`` makes of it (an open through the engine): the blocks above
        decoded.encoding["preferred_chunks"] = blocks
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
        self,
        view: UnionPlan,
        members: Sequence[zarr.Array[Any]],
        steps: Sequence[Sequence[Piece]],
        settings: Settings,
        refs: Callable[[], TileRefs | None] | None = None,
    ) -> None:
        self.view, self.members, self.steps, self.settings = view, members, steps, settings
        self.shape = view.shape
        self.dtype = np.dtype(members[0].dtype)
        self._load = refs
        # each member's chunk grid (time, band chunks, rows, columns) and its first row in the tile table
        self._grids = [_grid(m) for m in members]
        self._starts = np.cumsum([0] + [int(np.prod(g)) for g in self._grids])
        self._refs: TileRefs | bool | None = None  # False: looked, none to use
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        names = ("view", "members", "steps", "settings", "shape", "dtype", "_load", "_grids", "_starts")
        return {k: getattr(self, k) for k in names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._refs, self._lock = None, threading.Lock()

    def _tile_refs(self) -> TileRefs | None:
        """The union's tile table, read once (by the first read that needs it)."""
        if self._load is None:
            return None
        with self._lock:
            if self._refs is None:
                refs = self._load()
                usable = refs is not None and refs.tiles.shape == (int(self._starts[-1]), 3)
                self._refs = refs if usable else False
        return self._refs if isinstance(self._refs, TileRefs) else None

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
            refs = self._tile_refs()
            values = self._merged(reads, refs) if refs is not None else _sync.run(self._fetch(reads))
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

    def _merged(self, reads: Sequence[tuple[Any, ...]], refs: TileRefs) -> list[np.ndarray]:
        """Every piece, its member tiles fetched by merged ranged GETs (one per run of adjacent tiles of a file,
        all files concurrently), each tile decoded once however many pieces it feeds."""
        parts: list[list[tuple[int, int, tuple[int, int, int, int], tuple[int, int, int, int]]]] = []
        needed: dict[int, None] = {}
        for *_, m, (tm, mb, ys, xs) in reads:
            _, kb, th, tw = self.members[m].chunks
            _, grid_b, grid_y, grid_x = self._grids[m]
            base = int(self._starts[m]) + (tm * grid_b + mb // kb) * grid_y * grid_x
            mine = []
            for ty in range(ys.start // th, (ys.stop - 1) // th + 1):
                y0, y1 = max(ys.start, ty * th), min(ys.stop, (ty + 1) * th)
                for tx in range(xs.start // tw, (xs.stop - 1) // tw + 1):
                    x0, x1 = max(xs.start, tx * tw), min(xs.stop, (tx + 1) * tw)
                    row = base + ty * grid_x + tx
                    dest = (y0 - ys.start, y1 - ys.start, x0 - xs.start, x1 - xs.start)
                    mine.append((row, mb % kb, dest, (y0 - ty * th, y1 - ty * th, x0 - tx * tw, x1 - tx * tw)))
                    needed[row] = None
            parts.append(mine)
        by_source: dict[int, list[int]] = {}
        for row in needed:
            source = int(refs.tiles[row, 0])
            if source >= 0:
                by_source.setdefault(source, []).append(row)
        fetched = _sync.run(_fetch_tiles(refs, by_source))
        owner = {row: self.members[m] for (*_, m, _), mine in zip(reads, parts, strict=True) for row, *_ in mine}
        rows = [row for row in fetched if row in owner]
        # decoded on every core (the codecs release the GIL), as Zarr's codec pipeline does
        decoded = dict(zip(rows, _decoder().map(lambda row: _decode(fetched[row], owner[row]), rows), strict=True))
        out = []
        for (*_, m, (_, _, ys, xs)), mine in zip(reads, parts, strict=True):
            member = self.members[m]
            piece = np.full((ys.stop - ys.start, xs.stop - xs.start), member.fill_value, member.dtype)
            for row, sample, (dy0, dy1, dx0, dx1), (sy0, sy1, sx0, sx1) in mine:
                if row not in decoded:
                    continue  # no tile there: the member's fill value
                piece[dy0:dy1, dx0:dx1] = decoded[row][sample, sy0:sy1, sx0:sx1]
            out.append(piece)
        return out

    async def _fetch(self, reads: Sequence[tuple[Any, ...]]) -> list[np.ndarray]:
        """Every piece, read concurrently within the settings' cap (a piece is one member tile or a few)."""
        gate = asyncio.Semaphore(self.settings.max_concurrency)

        async def one(m: int, selection: tuple[Any, ...]) -> np.ndarray:
            async with gate:
                return np.asarray(await self.members[m].async_array.getitem(selection))

        return list(await asyncio.gather(*(one(m, selection) for *_, m, selection in reads)))


async def _fetch_tiles(refs: TileRefs, by_source: Mapping[int, Sequence[int]]) -> dict[int, bytes]:
    """The bytes of the tile rows of each source, by merged ranged GETs, all sources concurrently; rows another
    read is fetching or fetched lately come from it."""

    async def one(source: int, rows: Sequence[int]) -> list[bytes]:
        ref = refs.sources[source]
        segments = [(int(refs.tiles[row, 1]), int(refs.tiles[row, 2])) for row in rows]
        try:
            return await read_segments(
                ref.href,
                segments,
                validator=ref.validator,
                etag=ref.etag,
                last_modified=ref.last_modified,
                account=ref.account,
                settings=refs.settings,
            )
        except SourceNotFoundError:
            msg = f"{ref.href} no longer exists (deleted or moved since the cube was built)"
            raise SourceChangedError(msg, remedy=drop_vanished(refs.repo)) from None
        except SourceChangedError:
            msg = f"{ref.href} changed since the cube was built (it is no longer the version indexed)"
            raise SourceChangedError(msg, remedy=reindex(refs.repo)) from None

    found, waiting, mine = refs.shared.claim(row for rows in by_source.values() for row in rows)
    claimed = set(mine)
    sources = [(source, [row for row in rows if row in claimed]) for source, rows in by_source.items()]
    sources = [(source, rows) for source, rows in sources if rows]
    try:
        fetched = await asyncio.gather(*(one(source, rows) for source, rows in sources))
    except BaseException as exc:
        refs.shared.fail(mine, exc)
        raise
    for (_, rows), datas in zip(sources, fetched, strict=True):
        for row, data in zip(rows, datas, strict=True):
            refs.shared.settle(row, data)
            found[row] = data
    for row, future in waiting.items():
        found[row] = await asyncio.shield(future)
    return {row: data for row, data in found.items() if data is not None}


@functools.cache
def _decoder() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that decode tiles, one per core (shared by every read of the process)."""
    return concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="stackcube-decode")


def _grid(member: zarr.Array[Any]) -> tuple[int, int, int, int]:
    """A member's chunk grid: how many chunks along time, band, y and x."""
    return cast(
        "tuple[int, int, int, int]", tuple(-(-n // c) for n, c in zip(member.shape, member.chunks, strict=True))
    )


def _decode(data: bytes, member: zarr.Array[Any]) -> np.ndarray:
    """A member tile's bytes as its (samples, rows, columns) values, with the member's own codecs: its
    ``stackcube.tiff`` recipe, or Zarr's own codecs (:func:`stackcube.tiff.standard_codecs`)."""
    serializer = member.serializer
    if not isinstance(serializer, TiffSegmentCodec):
        chunk = _decode_with_zarr(data, member)
        return chunk.reshape(chunk.shape[1:])  # a cube's chunk: (1 time, samples, rows, columns)
    fill = member.fill_value
    block = decode_segment(memoryview(data), serializer.recipe, fill.item() if hasattr(fill, "item") else fill)
    return block.astype(member.dtype, copy=False)


def _decode_with_zarr(data: bytes, member: zarr.Array[Any]) -> np.ndarray:
    """A chunk's bytes decoded by the member's Zarr codecs, as zarr decodes a chunk it reads: here, in this thread,
    each codec's synchronous decode in turn (as zarr's ``ChunkTransform`` chains them); through the member's codec
    pipeline on the event loop when a codec has none (zarr-python before 3.2)."""
    prototype = default_buffer_prototype()
    spec = ArraySpec(
        shape=member.chunks,
        dtype=member.metadata.dtype,
        fill_value=member.metadata.fill_value,
        config=member.async_array.config,
        prototype=prototype,
    )
    chunk = prototype.buffer.from_bytes(data)
    # Any: zarr types a v2 array's filters as numcodecs' codecs; a member is a v3 array
    filters: tuple[Any, ...] = tuple(member.filters)
    compressors: tuple[Any, ...] = tuple(member.compressors)
    serializer: Any = member.serializer
    if not _decode_in_thread((*filters, serializer, *compressors)):
        decoded = _sync.run(member.async_array.codec_pipeline.decode([(chunk, spec)]))
        return np.asarray(cast("NDBuffer", next(iter(decoded))).as_numpy_array())
    specs = [spec]  # what each filter sees, outermost first: a transpose changes the shape after it
    for codec in filters:
        specs.append(codec.resolve_metadata(specs[-1]))
    for codec in reversed(compressors):  # numcodecs.zlib: stackcube.tiff.Zlib, libdeflate's inflate
        chunk = codec._decode_sync(chunk, specs[-1])
    array = serializer._decode_sync(chunk, specs[-1])
    for codec, at in zip(reversed(filters), reversed(specs[:-1]), strict=True):
        array = codec._decode_sync(array, at)
    return np.asarray(cast("NDBuffer", array).as_numpy_array())


def _decode_in_thread(codecs: Sequence[Any]) -> bool:
    """Whether every codec of a chain has a synchronous decode (``SupportsSyncCodec``, zarr-python 3.2 and later)."""
    return all(hasattr(codec, "_decode_sync") for codec in codecs)
