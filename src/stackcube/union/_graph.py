"""A union as one dask array whose every block is assembled from exactly the member tiles it overlaps.

Values are copied, never resampled, and a member tile is read once per computation (one GET) however many union
blocks it feeds. Written by hand because dask's own tools (pad, where, concat) make a graph that grows with
members x blocks and rechunks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import dask.array
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from stackcube.union._plan import Offset, Piece

__all__ = ["block_size", "lay", "union_array"]

Region = tuple[int, int, int, int]
"""(y0, y1, x0, x1): a window of rows and columns."""


def lay(out: np.ndarray, covered: np.ndarray, values: np.ndarray, fill: Any, nodata: bool) -> None:
    """Lay ``values`` over ``out`` where no piece laid a valid value yet: the first valid value wins.

    With ``nodata``, values equal to ``fill`` (NaN for a NaN fill) are not valid and never hide what lies under.
    """
    valid = ~covered
    if nodata:
        valid &= ~np.isnan(values) if isinstance(fill, float) and math.isnan(fill) else values != fill
    out[valid] = values[valid]
    covered |= valid


def _assemble(shape: tuple[int, int], dtype: str, fill: Any, nodata: bool, *chunks_and_slices: Any) -> np.ndarray:
    """One (1, 1, y, x) union block from (member chunk, destination region, source region) triples in priority
    order."""
    out = np.full(shape, fill, dtype=dtype)
    covered = np.zeros(shape, dtype=bool)
    for i in range(0, len(chunks_and_slices), 3):
        chunk, (dy0, dy1, dx0, dx1), (sy0, sy1, sx0, sx1) = chunks_and_slices[i : i + 3]
        values = np.asarray(chunk)[0, 0, sy0:sy1, sx0:sx1]
        lay(out[dy0:dy1, dx0:dx1], covered[dy0:dy1, dx0:dx1], values, fill, nodata)
    return out[np.newaxis, np.newaxis]


def _overlaps(chunks: tuple[int, ...], start: int, stop: int) -> list[tuple[int, int, int]]:
    """(chunk index, chunk start, chunk stop) of the chunks along one axis that overlap [start, stop)."""
    out, edge = [], 0
    for i, size in enumerate(chunks):
        if edge < stop and edge + size > start:
            out.append((i, edge, edge + size))
        edge += size
    return out


def union_array(
    members: Sequence[dask.array.Array],
    *,
    member_bands: Sequence[Sequence[str]],
    offsets: Sequence[Offset],
    steps: Sequence[Sequence[Piece]],
    bands: Sequence[str],
    shape: tuple[int, int],
    fill: Any,
    nodata: bool,
    block: int = 1024,
) -> dask.array.Array:
    """A lazy (time, band, y, x) array of ``shape`` (y, x) per step and band, one block per ``block`` pixels.

    ``members`` are (time, band, y, x) dask arrays chunked (1, 1, tile, tile); ``steps`` lists, per time step, the
    (member, member time index) pieces in priority order (the first valid pixel wins; with ``nodata`` False every
    covered pixel is valid).
    """
    height, width = shape
    dtype = members[0].dtype
    name = f"stackcube-union-{dask.base.tokenize(*members, offsets, steps, bands, shape, fill, nodata, block)}"
    y_chunks = tuple(min(block, height - y) for y in range(0, height, block))
    x_chunks = tuple(min(block, width - x) for x in range(0, width, block))
    layer: dict[Any, Any] = {}
    for t, step in enumerate(steps):
        for b, band in enumerate(bands):
            for by, y0 in enumerate(range(0, height, block)):
                for bx, x0 in enumerate(range(0, width, block)):
                    y1, x1 = min(y0 + block, height), min(x0 + block, width)
                    args: list[Any] = []
                    for m, tm in step:
                        if band not in member_bands[m]:
                            continue
                        member, (row, col) = members[m], offsets[m]
                        mb = list(member_bands[m]).index(band)
                        for iy, cy0, cy1 in _overlaps(member.chunks[2], y0 - row, y1 - row):
                            for ix, cx0, cx1 in _overlaps(member.chunks[3], x0 - col, x1 - col):
                                # the overlap of this member chunk and this block, in union pixels
                                oy0, oy1 = max(y0, row + cy0), min(y1, row + cy1)
                                ox0, ox1 = max(x0, col + cx0), min(x1, col + cx1)
                                dest = (oy0 - y0, oy1 - y0, ox0 - x0, ox1 - x0)
                                src = (oy0 - row - cy0, oy1 - row - cy0, ox0 - col - cx0, ox1 - col - cx0)
                                args.extend([(member.name, tm, mb, iy, ix), dest, src])
                    layer[(name, t, b, by, bx)] = (_assemble, (y1 - y0, x1 - x0), dtype.str, fill, nodata, *args)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=cast("Any", list(members)))
    chunks = ((1,) * len(steps), (1,) * len(bands), y_chunks, x_chunks)
    return dask.array.Array(graph, name, chunks=chunks, dtype=dtype)  # type: ignore[no-untyped-call]


def block_size(tile: int, target: int = 1024) -> int:
    """A union block size: a whole number of member tiles near ``target`` pixels."""
    return max(tile, tile * math.floor(target / tile))
