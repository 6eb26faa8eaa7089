"""Unions: arrays on one pixel lattice but not one tile grid, presented as one exact array.

Landsat path/rows move by whole 30 m pixels between dates; Sentinel-2 MGRS tiles of one UTM zone sit 9,998 pixels
apart, never a whole number of tiles. Such arrays share a CRS, a pixel size and a grid phase, so their pixels line
up exactly: each stays a virtual array on its own grid, and a union places them at their whole-pixel offsets on
the union of their grids, values copied (never resampled), and adjacent member tiles of a file read with one
ranged GET (the cube keeps where each member tile lies: :func:`stackcube.store.layout.union_tiles`).

Modules, each importing only the ones before it: ``_plan`` (:class:`UnionPlan` and :func:`build_unions`, pure),
``_order`` (which member wins a pixel), ``_lay`` (member pieces laid over one another, and the size of union blocks),
``_array`` (the union read back as an xarray Dataset, with dask or NumPy-backed).
"""

from stackcube.union._array import SourceRef, TileRefs, union_dataset
from stackcube.union._lay import block_size
from stackcube.union._order import order_steps
from stackcube.union._plan import UnionLevel, UnionPlan, build_unions

__all__ = [
    "SourceRef",
    "TileRefs",
    "UnionLevel",
    "UnionPlan",
    "block_size",
    "build_unions",
    "order_steps",
    "union_dataset",
]
