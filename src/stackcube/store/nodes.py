"""Many small groups written at once: what ``Dataset.to_zarr(store, group=path, mode="w", zarr_format=3)`` writes
for each, made by zarr in memory and copied into the store together.

xarray writes a dataset one array at a time, each a few synchronous zarr calls (is the node free, the metadata,
the attributes again, the values): 30-50 ms for a level's dozen coordinates in an Icechunk session, most of the
build of a union of hundreds of scenes (one array each). Here the encoding is xarray's own
(``encode_dataset_coordinates``, ``encode_zarr_variable``, ``extract_zarr_variable_encoding``, its fill-value
rule), written by hand only in the order xarray's ``ZarrStore`` applies them, because xarray has no call that
encodes a dataset for Zarr without writing it; ``tests/store/test_nodes.py`` checks that every node's metadata and
values equal what ``to_zarr`` writes, byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
import zarr.api.asynchronous
from xarray.backends.zarr import (
    FillValueCoder,
    encode_zarr_attr_value,
    encode_zarr_variable,
    extract_zarr_variable_encoding,
)
from xarray.coding.strings import check_vlen_dtype
from zarr.abc.codec import Codec
from zarr.core.group import AsyncGroup
from zarr.storage import StorePath

from stackcube import _sync

__all__ = ["encoded_array", "plain_signature", "write_groups"]

Group = tuple[str, xr.Dataset, Mapping[str, Mapping[str, Any]]]
"""A group to write: its path, its dataset, and ``to_zarr``'s ``encoding`` for it."""


def write_groups(
    store: Any, groups: Sequence[Group], arrays: Sequence[tuple[str, str, Mapping[str, Any]]] = ()
) -> None:
    """Write each ``(path, dataset, encoding)`` of ``groups`` as ``dataset.to_zarr(store, group=path, mode="w",
    zarr_format=3, consolidated=False, encoding=encoding)`` would (what was at ``path`` is replaced), and create
    each ``(group path, name, create_array keywords)`` of ``arrays`` in those groups, without values; at once.

    zarr writes them into memory (an Icechunk session's every call costs a round trip through its lock: 30 ms a
    level written in place, 16 in memory), and the keys are copied into ``store`` together.
    """
    written: dict[str, Any] = {}  # what zarr writes into memory, key by key, to copy as it is
    memory = zarr.storage.MemoryStore(written)
    made = _Made(written)

    async def write_all() -> None:
        for depth in sorted({path.count("/") for path, _, _ in groups}):  # a group before those inside it
            await _in_batches(
                [_write_group(memory, p, ds, enc, made) for p, ds, enc in groups if p.count("/") == depth]
            )
        await _in_batches([made.array(StorePath(memory, f"{p}/{name}"), kw) for p, name, kw in arrays])
        paths = [path for path, _, _ in groups]
        await asyncio.gather(*(store.delete_dir(path) for path in paths))
        keys = written
        inside = tuple(f"{path}/" for path in paths)
        # Icechunk wants a node's parent before it, and a chunk's array: metadata depth by depth, then the chunks
        metadata = [key for key in keys if key.rsplit("/", 1)[-1] == "zarr.json"]
        for depth in sorted({key.count("/") for key in metadata}):
            level = [key for key in metadata if key.count("/") == depth]
            # the parents zarr makes for a group (``A`` of ``A/0``, the root) only where there are none, as zarr does
            await asyncio.gather(
                *(
                    store.set(key, keys[key]) if key.startswith(inside) else store.set_if_not_exists(key, keys[key])
                    for key in level
                )
            )
        chunks = [key for key in keys if key.startswith(inside) and key.rsplit("/", 1)[-1] != "zarr.json"]
        await asyncio.gather(*(store.set(key, keys[key]) for key in chunks))

    _sync.run(write_all())


_BATCH = 64
"""Groups written into memory at once: no I/O waits there, and thousands of tasks at once cost more than they
save (asyncio's bookkeeping and the garbage collector over them: 28 ms a level for 1,000 levels, 16 for 100)."""


async def _in_batches(coroutines: Sequence[Coroutine[Any, Any, Any]]) -> None:
    for start in range(0, len(coroutines), _BATCH):
        await asyncio.gather(*coroutines[start : start + _BATCH])


async def _write_group(
    store: Any, path: str, ds: xr.Dataset, encoding: Mapping[str, Mapping[str, Any]], made: _Made
) -> None:
    # as xarray's dump_to_store, then ZarrStore.store and set_variables in mode "w"
    variables, attrs = xr.conventions.encode_dataset_coordinates(ds)
    for name, given in encoding.items():
        variables[name].encoding = dict(given)
    group = await AsyncGroup.from_store(
        StorePath(store, path),
        zarr_format=3,
        overwrite=False,  # a fresh store in memory: replacing would list every key each time
        attributes={str(k): encode_zarr_attr_value(v) for k, v in attrs.items()},  # type: ignore[no-untyped-call]
    )
    await asyncio.gather(
        *(_write_array(group, str(name), var, made, checked=name in encoding) for name, var in variables.items())
    )


async def _write_array(group: AsyncGroup, name: str, var: xr.Variable, made: _Made, *, checked: bool) -> None:
    kwargs, values = encoded_array(name, var, checked=checked)
    array = await made.array(group.store_path / name, kwargs)
    if values.ndim != 1 or values.dtype != object:
        await array.setitem(tuple(slice(None) for _ in var.dims), values)
        return
    # a column of text a slice of whole chunks at a time: zarr copies what it is given into a string array before
    # encoding it, and the source table's manifests are about 10 kB of JSON a row (a 20,000-row table peaked 560 MB
    # above its strings when set whole)
    rows = array.chunks[0] * max(1, TEXT_ROWS // array.chunks[0])
    for start in range(0, max(1, len(values)), rows):
        await array.setitem(slice(start, start + rows), values[start : start + rows])


TEXT_ROWS = 4096
"""Rows of a text column :func:`_write_array` sets at a time (whole chunks, at least one)."""


def encoded_array(name: str, var: xr.Variable, *, checked: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """How ``to_zarr`` stores the variable ``name``: zarr's ``create_array`` keywords (shape, dtype, fill value,
    dimension names, attributes, chunks) and the values it writes. ``checked``: its encoding was given, so that
    xarray checks it."""
    v = encode_zarr_variable(var, name=name, zarr_format=3)
    attrs = dict(v.attrs)
    fill_value = v.encoding.pop("fill_value", None)
    if fill_value is None and v.dtype.kind == "f":
        fill_value = np.nan  # xarray's default for floats (zarr's is zero)
    if "_FillValue" in attrs:
        value = attrs.pop("_FillValue")
        if value is not None:
            attrs["_FillValue"] = FillValueCoder.encode(value, v.dtype)
    if v.encoding.get("_FillValue") is not None:
        msg = f"{name}: Zarr does not support _FillValue in encoding"
        raise ValueError(msg)
    v.encoding.pop("_FillValue", None)
    encoding = extract_zarr_variable_encoding(v, raise_on_invalid=checked, name=name, zarr_format=3)
    encoding["config"] = {c: encoding.pop(c) for c in ("write_empty_chunks", "order") if c in encoding}
    encoding.pop("fill_value", None)
    dtype = str if check_vlen_dtype(v.dtype) is str else v.dtype  # type: ignore[no-untyped-call]
    kwargs = {
        "shape": v.shape,
        "dtype": dtype,
        "fill_value": fill_value,
        "dimension_names": v.dims,
        "attributes": {k: encode_zarr_attr_value(a) for k, a in attrs.items()},  # type: ignore[no-untyped-call]
        **encoding,
    }
    return kwargs, np.asarray(v.values)


class _Made:
    """The arrays zarr has made in one memory store, by what they were made from: an array made from the same
    plain keywords as one before (a union's members: a dozen coordinates each, alike but for their values) gets
    that one's metadata document as it is. zarr's ``create_array`` costs about a millisecond in memory (parsing,
    checking the node is free, encoding the document and every parent group's again): the nodes of a 250-scene
    union took 5.3 s to write with it for every array, 4.0 s so (2 of a member's 14 are its own: ``spatial_ref``
    and ``time``). Keywords that are not plain data (:func:`plain_signature`) are made anew."""

    def __init__(self, written: dict[str, Any]) -> None:
        self.written = written
        # signature -> (metadata, config, zarr.json document), once the first array made from it is made
        self.made: dict[Any, asyncio.Future[tuple[Any, Any, Any]]] = {}

    async def array(self, at: StorePath, kwargs: Mapping[str, Any]) -> Any:
        """``zarr.api.asynchronous.create_array(at, **kwargs)``, in the memory store."""
        signature = plain_signature(kwargs)
        if signature in self.made:
            metadata, config, document = await self.made[signature]
            self.written[f"{at.path}/zarr.json"] = document
            return zarr.AsyncArray(metadata=metadata, store_path=at, config=config)
        made = asyncio.get_running_loop().create_future()
        if signature is not None:
            self.made[signature] = made  # the arrays like this one written meanwhile wait for it
        try:
            # a fresh store in memory: replacing would list every key each time
            array = await zarr.api.asynchronous.create_array(at, zarr_format=3, overwrite=False, **kwargs)
        except Exception as exc:
            made.set_exception(exc)
            made.exception()  # raised here; those waiting get it too
            raise
        except BaseException:
            made.cancel()  # cancelled: so are those waiting
            raise
        made.set_result((array.metadata, array.config, self.written[f"{at.path}/zarr.json"]))
        return array


class _NotPlainError(Exception):
    pass


def plain_signature(value: Any) -> Any:
    """``value`` as a key that is equal only for equal values, when it is plain data (numbers, strings, dtypes,
    zarr codecs, and lists, tuples and dicts of them); None otherwise (made anew)."""
    try:
        return _plain(value)
    except _NotPlainError:
        return None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float, np.generic, np.dtype)):
        return (type(value), repr(value))  # the type: 0, 0.0 and False make different documents; repr: nan == nan
    if isinstance(value, type):
        return (type, value)
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_plain(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((_plain(k), _plain(v)) for k, v in value.items()))
    if isinstance(value, Codec):
        return (type(value), _plain(value.to_dict()))
    raise _NotPlainError
