"""Stored values -> physical values, the one place: nodata as NaN, then ``stored * scale + offset`` per (time, band).

A cube keeps scale and offset per time step and band (coordinates ``scale`` and ``offset``), because one array may
hold items of two encodings (Sentinel-2 before and after processing baseline 04.00). xarray's CF decoding knows one
``scale_factor`` per variable, so the data variable is opened raw and decoded here, lazily: with dask, as array
operations; without dask, by a lazily indexed array that scales exactly the window read. Values are computed in
float64 and returned in float32, unless the stored samples need float64 (32- and 64-bit integers, float64).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

__all__ = ["physical", "physical_dtype"]

_CF = ("_FillValue", "missing_value", "scale_factor", "add_offset")
"""Attributes that describe the stored encoding; decoded values carry them in ``encoding``, as xarray does."""


def physical_dtype(stored: np.dtype[Any]) -> np.dtype[Any]:
    """float32 for samples float32 represents exactly (8- and 16-bit integers, float16 and float32), else float64."""
    if stored.kind == "f" and stored.itemsize <= 4:
        return np.dtype("float32")
    if stored.kind in "iub" and stored.itemsize <= 2:
        return np.dtype("float32")
    return np.dtype("float64")


def _tables(raw: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """(time, band) scale and offset: the coordinates, else the CF attributes (cubes written before them)."""
    shape = (raw.sizes["time"], raw.sizes["band"])
    if "scale" in raw.coords and "offset" in raw.coords:
        return (
            np.asarray(raw.coords["scale"].values, np.float64).reshape(shape),
            np.asarray(raw.coords["offset"].values, np.float64).reshape(shape),
        )
    scale = float(raw.attrs.get("scale_factor", 1.0))
    offset = float(raw.attrs.get("add_offset", 0.0))
    return np.full(shape, scale), np.full(shape, offset)


def _decode(values: Any, nodata: Any, scale: np.ndarray, offset: np.ndarray, dtype: np.dtype[Any]) -> Any:
    """``values`` (a NumPy or dask array: NumPy's functions dispatch to dask) with ``scale``/``offset``
    broadcastable to it, decoded. Scaling is computed in float64 (as stackstac does), masking alone in ``dtype``."""
    scaled = not (np.all(scale == 1.0) and np.all(offset == 0.0))
    out = values.astype(np.float64 if scaled else dtype)
    if nodata is not None:
        missing = np.isnan(values) if isinstance(nodata, float) and math.isnan(nodata) else values == nodata
        if isinstance(out, np.ndarray):
            np.putmask(out, missing, np.nan)  # in place: a window read without dask is one pass
        else:
            out = np.where(missing, np.nan, out)
    if scaled:
        out = out * scale + offset
    return out.astype(dtype, copy=False)


def physical(raw: xr.DataArray) -> xr.DataArray:
    """The physical values of a raw (time, band, y, x) array, lazily (dask stays dask, lazy NumPy stays lazy).

    Nodata is the raw array's ``_FillValue``; scale and offset come from its ``scale``/``offset`` coordinates.
    """
    nodata = raw.attrs.get("_FillValue", raw.attrs.get("missing_value"))
    scale, offset = _tables(raw)
    dtype = physical_dtype(raw.dtype)
    attrs = {k: v for k, v in raw.attrs.items() if k not in _CF}
    encoding = {**raw.encoding, **{k: raw.attrs[k] for k in _CF if k in raw.attrs}, "dtype": raw.dtype}
    data: Any
    if raw.chunks is not None:
        # dask's own array operations on the dask array (the tables broadcast over y and x; blockwise fusion
        # makes them one task per chunk)
        data = _decode(raw.data, nodata, scale[:, :, None, None], offset[:, :, None, None], dtype)
    else:
        data = indexing.LazilyIndexedArray(_Physical(raw.variable, nodata, scale, offset, dtype))
    decoded = xr.DataArray(xr.Variable(raw.dims, data, attrs), coords=raw.coords, name=raw.name)
    decoded.encoding = encoding  # the DataArray constructor does not keep a Variable's encoding
    return decoded


class _Physical(BackendArray):
    """A raw lazily indexed variable read window by window and decoded with the scale of each (time, band) read."""

    def __init__(
        self, raw: xr.Variable, nodata: Any, scale: np.ndarray, offset: np.ndarray, dtype: np.dtype[Any]
    ) -> None:
        self.raw, self.nodata, self.scale, self.offset = raw, nodata, scale, offset
        self.shape = raw.shape
        self.dtype = dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._read)  # type: ignore[no-any-return]

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        values = np.asarray(self.raw[key].values)
        rows = [np.arange(n)[k] for k, n in zip(key[:2], self.shape[:2], strict=True)]
        scale = self.scale[np.ix_(np.atleast_1d(rows[0]), np.atleast_1d(rows[1]))]
        offset = self.offset[np.ix_(np.atleast_1d(rows[0]), np.atleast_1d(rows[1]))]
        # the (time, band) tables shaped as the values: axes indexed by an int are gone, y and x broadcast
        kept = tuple(axis for axis in (0, 1) if np.ndim(rows[axis]) == 1)
        drop = tuple(axis for axis in (0, 1) if axis not in kept)
        shape = scale.squeeze(axis=drop).shape + (1,) * (values.ndim - len(kept))
        return np.asarray(
            _decode(
                values,
                self.nodata,
                scale.squeeze(axis=drop).reshape(shape),
                offset.squeeze(axis=drop).reshape(shape),
                self.dtype,
            )
        )
