"""A level's coordinates without reading them: opening an array reads no coordinate manifest and no coordinate chunk.

On object storage every manifest and every chunk is a round trip, and xarray reads a level's dimension coordinates
(``time``, ``band``, ``y``, ``x``) when it opens it; :func:`~stackcube._physical.physical` reads ``scale`` and
``offset``, and the band index ``common_name``. So the writer keeps the stored (encoded) values of those coordinates
in the array node's attributes (:func:`inline_coordinates`), which Icechunk keeps in the snapshot a read fetches
anyway, and ``x``/``y`` follow from each level's transform in :class:`~stackcube.store.layout.ArrayLayout`. An
array whose coordinates are larger than :data:`KEPT_BYTES` also stores them as arrays, for every other reader
(``xr.open_zarr``, GDAL); a smaller one keeps them in its node only (below).

:func:`open_levels` gives each level to xarray's own CF decoding (``conventions.decode_cf_variables`` through its
``StoreBackendEntrypoint``) with those values in place of the lazy stored arrays, so what comes out is what
``xr.open_dataset`` would give after reading them. A cube written before this (or a coordinate too long to keep
inline, or one whose stored encoding differs from the kept one) has the missing values read, all levels at once,
concurrently. Written here because neither xarray nor Icechunk keeps small arrays in metadata.

A union's member (one scene), and any array whose coordinates are small (:data:`KEPT_BYTES`), goes further: its
levels store their data array only, and its array node keeps every other coordinate as ``to_zarr`` would have
stored it (:func:`kept_arrays`: dimensions, dtype, attributes, values), ``x``, ``y`` and ``spatial_ref``
following from each level's transform and the CRS. Writing a dozen arrays of one value for each of thousands of
scenes was most of a union's build (20 ms a member); on object storage every stored array is one more object a
commit writes (Icechunk writes a manifest per array that has chunks, and keeps no two arrays in one): a 30-date,
4-band cube with three overview levels wrote 207 manifests and 16 chunks, 223 of the build's 242 requests, where
it now writes the four levels' data manifests and the source table's. The reader puts the kept coordinates back
where xarray would have found them, so an array opens as it did; an append grows them in the node
(:func:`grow_kept`) until they outgrow it, and the cube is then written with them stored.
"""

from __future__ import annotations

import asyncio
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
import zarr.api.asynchronous
from xarray.backends.common import AbstractDataStore
from xarray.backends.store import StoreBackendEntrypoint
from xarray.backends.zarr import FillValueCoder, ZarrStore

from stackcube._georef import spatial_coords
from stackcube._sync import run
from stackcube.store.layout import DATA, ArrayLayout
from stackcube.store.nodes import encoded_array, plain_signature

__all__ = [
    "ARRAYS",
    "INLINE_MAX",
    "KEPT_BYTES",
    "Encodings",
    "LevelToOpen",
    "grow_kept",
    "grown_from",
    "inline_coordinates",
    "jsonable",
    "kept_arrays",
    "kept_values",
    "open_levels",
]

INLINE_MAX = 65_536
"""Most values of one coordinate kept inline (a 4,096-date x 16-band scale table); longer ones are read from their
arrays, so a huge cube does not make every snapshot large."""


def _read_at_open(ds: xr.Dataset | Mapping[str, Any], mask_and_scale: bool = True) -> list[str]:
    """The coordinates a reader decodes when it opens a level: the dimension coordinates, ``scale`` and ``offset``
    (when values are made physical) and the descriptions of the bands (the band index reads ``common_name``)."""
    names = []
    for name, var in (ds.variables if isinstance(ds, xr.Dataset) else ds).items():
        dims = tuple(var.dims)
        if name == DATA:
            continue
        if dims in {(name,), ("band",)} or (mask_and_scale and name in {"scale", "offset"}):
            names.append(str(name))
    return names


def jsonable(values: np.ndarray) -> list[Any]:
    """Values as JSON (NaN as null: attributes are strict JSON)."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values.ravel().tolist()]


def inline_coordinates(levels: Sequence[xr.Dataset], encodings: Encodings | None = None) -> dict[str, Any]:
    """What an array node keeps of its levels' coordinates (``levels``: each level's dataset as written): the
    encoded values of each coordinate read at open that every level shares (they share time and bands), as the
    writer stores them (xarray's ``encode_cf_variable``, the encoder ``to_zarr`` applies), with the ``units`` they
    are in; x/y are not kept, they follow from the levels' transforms. ``encodings``: the coordinates this build
    has encoded (:class:`Encodings`), for those equal to one encoded before."""
    encodings = encodings or Encodings()
    kept: dict[str, Any] = {}
    for name in _read_at_open(levels[0]):
        if name in {"x", "y"}:
            continue
        encoded = [encodings.cf(name, level.variables[name]) for level in levels]
        first = encoded[0]
        if first.size > INLINE_MAX or any(e is not first and not _equal(e, first) for e in encoded[1:]):
            continue
        kept[name] = {"values": jsonable(np.asarray(first.values)), "units": first.attrs.get("units")}
    return {"values": kept, "x_y": "spatial:transform"}


class Encodings:
    """The coordinates one build has encoded, by what they were encoded from (name, dimensions, dtype, values,
    attributes and encoding), so that each distinct one is encoded once: a union's thousands of members hold the
    same bands, scales, offsets, band descriptions and often item properties (20-30 us each to encode for Zarr,
    3 us to key), and a member's time is encoded once for both what :func:`inline_coordinates` and
    :func:`kept_arrays` keep of it (0.2 ms each time). What is given out is shared: never change it. Coordinates
    of more than :data:`REMEMBERED` values, or of values that are not numbers, dates or strings, are encoded each
    time."""

    def __init__(self) -> None:
        # keys: :func:`_content`'s nested tuples of plain data (Any: their shape follows the variable's)
        self._cf: dict[Any, xr.Variable] = {}
        self._kept: dict[Any, dict[str, Any]] = {}

    def cf(self, name: str, var: xr.Variable) -> xr.Variable:
        """``xr.conventions.encode_cf_variable(var, name=name)``, once for equal variables."""
        key = _content(name, var)
        encoded = self._cf.get(key) if key is not None else None
        if encoded is None:
            encoded = xr.conventions.encode_cf_variable(var, name=name)
            if key is not None:
                self._cf[key] = encoded
        return encoded

    def kept(self, name: str, var: xr.Variable) -> dict[str, Any]:
        """What :func:`kept_arrays` keeps of ``var``, once for equal variables."""
        key = _content(name, var)
        entry = self._kept.get(key) if key is not None else None
        if entry is None:
            if var.dtype.kind == "M":
                # dates as CF encodes them (:meth:`cf`: numbers, units and calendar), which the Zarr encoding keeps;
                # a shallow copy, as the Zarr encoding takes keys out of a variable's encoding
                var = self.cf(name, var).copy(deep=False)
            entry = _entry(*encoded_array(name, var))
            if key is not None:
                self._kept[key] = entry
        return entry


REMEMBERED = 4_096
"""Most values of a coordinate :class:`Encodings` remembers: a union member's are a few; a long one (a cube's
thousands of dates) is rarely met twice, and its key would cost about as much as encoding it."""


def _content(name: str, var: xr.Variable) -> Any:
    """A key equal only for variables that encode alike (name, type, dimensions, dtype, values, attributes and
    encoding); None when ``var`` is long, or not plain data."""
    if var.size > REMEMBERED:
        return None
    values = var.values
    if values.dtype.kind in "biufmM":
        data: Any = (values.dtype.str, values.shape, values.tobytes())
    elif values.dtype.kind == "O" and all(type(v) is str for v in values.flat):
        data = ("O", values.shape, tuple(values.flat))
    else:
        return None
    attrs, encoding = plain_signature(dict(var.attrs)), plain_signature(dict(var.encoding))
    if attrs is None or encoding is None:
        return None
    return (name, type(var), var.dims, data, attrs, encoding)


_SPATIAL = frozenset({"x", "y", "spatial_ref"})
"""Coordinates that follow from a level's transform and CRS (:func:`~stackcube._georef.spatial_coords`)."""

ARRAYS = "arrays"
"""The key of :func:`kept_arrays` in what an array node keeps (:attr:`ArrayLayout.coordinates`)."""


KEPT_BYTES = 262_144
"""Most bytes of JSON the kept coordinates of an array that is not a union member take in its node (about 180
dates of a 4-band Sentinel-2 cube: ids, provenance, scale and offset, 30 item properties); larger ones are
stored as arrays. Every read fetches the snapshot that holds them, and every commit writes it again."""


def kept_arrays(
    levels: Sequence[xr.Dataset], *, member: bool = True, encodings: Encodings | None = None
) -> dict[str, Any] | None:
    """Every coordinate of ``levels`` (each level's dataset as written) but x, y and ``spatial_ref``, as the writer
    would store its array (:func:`~stackcube.store.nodes.encoded_array`): dimensions, shape, dtype, attributes and
    values; None when the levels do not all hold the same, or (but for a union's ``member``, one scene) when they
    take more than :data:`KEPT_BYTES` (then they are stored). ``encodings``: as :func:`inline_coordinates` takes it
    (what is kept may then be shared with other arrays' kept coordinates: never change it)."""
    encodings = encodings or Encodings()
    kept: dict[str, Any] = {}
    size = 0
    for name, var in levels[0].variables.items():
        if name in _SPATIAL:
            continue
        if any(name not in level.variables or not _identical(level.variables[name], var) for level in levels[1:]):
            return None
        kept[str(name)] = entry = encodings.kept(str(name), var)
        if not member:
            size += kept_size(entry)  # less than the whole's (no keys): refused early, not all encoded first
            if size > KEPT_BYTES:
                return None
    return kept if member or kept_size(kept) <= KEPT_BYTES else None


def kept_size(kept: Mapping[str, Any]) -> int:
    """Bytes of JSON ``kept`` coordinates take in a node: what :data:`KEPT_BYTES` bounds, measured one way by the
    build (:func:`kept_arrays`) and by an append (:func:`grow_kept`)."""
    return len(json.dumps(kept, separators=(",", ":")))


def _entry(kwargs: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    """A kept coordinate: the array the writer would create (``kwargs``, :func:`encoded_array`) and its values."""
    dtype = kwargs["dtype"]
    return {
        "dims": list(kwargs["dimension_names"]),
        "shape": list(kwargs["shape"]),
        "dtype": "str" if dtype is str else np.dtype(dtype).str,
        "attrs": kwargs["attributes"],
        "values": jsonable(values),
    }


def grow_kept(kept: Mapping[str, Any], new: xr.Dataset) -> dict[str, Any] | str:
    """The coordinates an array node keeps (:func:`kept_arrays`) grown by new time steps (``new``: those steps'
    level dataset, :func:`~stackcube.store.layout.level_dataset`), encoded as the kept ones (times in their
    units); or why they cannot be (a ``str``): a coordinate more or less, one that changed (what does not grow
    along time must stay as it is), a new time not after the kept ones or finer than their units, or more than
    :data:`KEPT_BYTES` (the cube is then written again, with its coordinates stored)."""
    names = {str(name) for name in new.variables} - _SPATIAL
    if names != set(kept):
        return "a coordinate more or less (an item property that appeared, or changed type)"
    grown: dict[str, Any] = {}
    for name, entry in kept.items():
        var = new.variables[name]
        if "time" not in var.dims:
            if _entry(*encoded_array(name, var)) != entry:
                return f"coordinate {name} changed"
            grown[name] = entry
            continue
        added = _encoded_like(name, var, entry)
        if isinstance(added, str):
            return added
        if added["dims"][:1] != ["time"] or added["dims"] != entry["dims"] or added["shape"][1:] != entry["shape"][1:]:
            return f"coordinate {name} changed dimensions"
        if (added["dtype"], added["attrs"]) != (entry["dtype"], entry["attrs"]):
            return f"coordinate {name} changed type"
        if name == "time" and entry["values"] and added["values"] and not added["values"][0] > entry["values"][-1]:
            return "a time step between the stored ones (a late item)"
        shape = [entry["shape"][0] + added["shape"][0], *entry["shape"][1:]]
        grown[name] = {**entry, "shape": shape, "values": [*entry["values"], *added["values"]]}
    if kept_size(grown) > KEPT_BYTES:
        return "its coordinates outgrew its array node"
    return grown


def grown_from(kept: Mapping[str, Any], grown: Mapping[str, Any] | None) -> str | None:
    """Why the coordinates an array node keeps (``kept``) are not the first time steps of ``grown`` (what
    :func:`kept_arrays` keeps of the whole cube, a refresh's plan of it; None: more than :data:`KEPT_BYTES`), or
    None when they are."""
    if grown is None:
        return "its coordinates outgrew its array node"
    if set(grown) != set(kept):
        return "a coordinate more or less (an item property that appeared, or changed type)"
    for name, entry in kept.items():
        new = grown[name]
        if "time" not in entry["dims"]:
            if new != entry:
                return f"coordinate {name} changed"
            continue
        if name == "time" and not _same_units(new["attrs"].get("units"), entry["attrs"].get("units")):
            return "a new time step is finer than the stored time units"
        if _shape_of(new) != _shape_of(entry) or new["shape"][0] < entry["shape"][0]:
            return f"coordinate {name} changed type or dimensions"
        if new["values"][: len(entry["values"])] != entry["values"]:
            if name == "time":
                return "a time step between the stored ones (a late item), or a stored one gone"
            return f"coordinate {name} changed"
    return None


def _shape_of(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a kept coordinate that grows along time keeps as it grows: dimensions, dtype, attributes (time units
    compared by :func:`_same_units`), its length along the others."""
    return entry["dims"], entry["dtype"], {**entry["attrs"], "units": None}, entry["shape"][1:]


def _encoded_like(name: str, var: xr.Variable, entry: Mapping[str, Any]) -> dict[str, Any] | str:
    """``var`` as :func:`kept_arrays` keeps it, times in the units and calendar of the kept ``entry`` (xarray
    would choose them from the new steps alone); why not when a time is finer than those units."""
    if np.issubdtype(var.dtype, np.datetime64) and "units" in entry["attrs"]:
        var = var.copy(deep=False)
        calendar = entry["attrs"].get("calendar")
        var.encoding = {"units": entry["attrs"]["units"], "dtype": np.dtype(entry["dtype"])}
        if calendar is not None:
            var.encoding["calendar"] = calendar
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # xarray warns when the times do not fit the units it was given
            try:
                added = _entry(*encoded_array(name, var))
            except (ValueError, OverflowError, Warning):
                added = None
        if added is None or not _same_units(added["attrs"].get("units"), entry["attrs"]["units"]):
            return f"a new time step ({var.values[0]}) is finer than the stored time units"
        added["attrs"] = {**added["attrs"], "units": entry["attrs"]["units"]}  # as kept ("... 00:00:00" or not)
        return added
    return _entry(*encoded_array(name, var))


def _same_units(a: Any, b: Any) -> bool:
    """Whether two CF time units (``days since 2020-06-01``) say the same, however their dates are written."""
    if not isinstance(a, str) or not isinstance(b, str) or " since " not in a or " since " not in b:
        return bool(a == b)
    (unit_a, since_a), (unit_b, since_b) = a.split(" since ", 1), b.split(" since ", 1)
    try:
        return bool(unit_a == unit_b and np.datetime64(since_a.strip(), "ns") == np.datetime64(since_b.strip(), "ns"))
    except ValueError:
        return a == b


def _identical(a: xr.Variable, b: xr.Variable) -> bool:
    return bool(a.identical(b))  # type: ignore[no-untyped-call]


def _equal(a: xr.Variable, b: xr.Variable) -> bool:
    return bool(a.equals(b))  # type: ignore[no-untyped-call]


def kept_values(layout: ArrayLayout, name: str) -> np.ndarray:
    """The stored (encoded) values of the coordinate ``name`` an array node keeps (:func:`kept_arrays`: a union
    member's, or a small array's); a KeyError if it keeps none."""
    entry = layout.coordinates[ARRAYS][name]
    return np.asarray([np.nan if v is None else v for v in entry["values"]]).reshape(entry["shape"])


def _kept_variables(level: LevelToOpen, stored: Mapping[str, xr.Variable]) -> dict[str, xr.Variable]:
    """The coordinates a level does not store because its array node keeps them (a union member's, a small
    array's; none for others), as xarray's ``ZarrStore`` would give them stored: encoded values and attributes,
    ``_FillValue`` decoded."""
    kept = level.layout.coordinates.get(ARRAYS)
    if not kept:
        return {}
    variables: dict[str, xr.Variable] = {}
    for name, entry in kept.items():
        if name not in stored:
            dtype = str if entry["dtype"] == "str" else np.dtype(entry["dtype"])
            values = kept_values(level.layout, name)
            variables[name] = _as_stored(entry["dims"], entry["shape"], dtype, entry["attrs"], values)
    grid = level.layout.levels[level.n]
    for name, var in spatial_coords(level.layout.crs, grid.transform, *grid.shape).items():
        if name not in stored:
            kwargs, values = encoded_array(name, var)
            variables[name] = _as_stored(
                kwargs["dimension_names"], kwargs["shape"], kwargs["dtype"], kwargs["attributes"], values
            )
    return variables


def _as_stored(
    dims: Sequence[str], shape: Sequence[int], dtype: Any, attrs: Mapping[str, Any], values: np.ndarray
) -> xr.Variable:
    """An array the writer would store (:func:`~stackcube.store.nodes.encoded_array`) as xarray's ``ZarrStore``
    reads it back: strings as NumPy's ``StringDType``, a ``_FillValue`` attribute decoded, its chunks whole."""
    dtype = np.dtypes.StringDType() if dtype is str else np.dtype(dtype)
    attrs = dict(attrs)
    if "_FillValue" in attrs:
        attrs["_FillValue"] = FillValueCoder.decode(attrs["_FillValue"], dtype)
    shape = tuple(shape)
    encoding: dict[str, Any] = {"chunks": shape, "preferred_chunks": dict(zip(dims, shape, strict=True))}
    if dtype.kind == "T":
        encoding["dtype"] = dtype  # as ZarrStore says it (an index then keeps the dtype)
    return xr.Variable(tuple(dims), np.asarray(values, dtype).reshape(shape), attrs, encoding)


@dataclass(frozen=True, slots=True)
class LevelToOpen:
    """One level to open: where its node is, and what its array node says (its kept coordinates, its grid)."""

    path: str
    """The level's node."""
    layout: ArrayLayout
    """The array node's description."""
    n: int
    """Which level (0 is full resolution)."""


class _Overlay(AbstractDataStore):
    """A level's Zarr group as xarray's backend sees it, with some stored arrays' values given rather than read.

    ``variables`` are the group's (as :meth:`ZarrStore.get_variables` gives them, lazy), some with their values in
    place; attributes and dimensions are the :class:`ZarrStore`'s."""

    def __init__(self, store: ZarrStore, variables: Mapping[str, xr.Variable]) -> None:
        self.store, self.variables = store, variables

    def get_variables(self) -> Mapping[str, xr.Variable]:
        return self.variables

    def get_attrs(self) -> dict[str, Any]:
        return dict(self.store.get_attrs())  # type: ignore[no-untyped-call]

    def get_dimensions(self) -> Any:
        return self.store.get_dimensions()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.store.close()


def _given(level: LevelToOpen, variables: Mapping[str, xr.Variable], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The values of ``names`` that need no read: kept inline (in the encoding the stored array has) or, for x/y,
    from the level's transform."""
    values: dict[str, np.ndarray] = {}
    inline = level.layout.coordinates
    kept = inline.get("values") or {}
    for name in names:
        var = variables[name]
        entry = kept.get(name)
        if entry is not None and entry.get("units") == var.attrs.get("units") and len(entry["values"]) == var.size:
            given = [np.nan if v is None else v for v in entry["values"]]
            values[name] = np.asarray(given, dtype=var.dtype)
    if inline.get("x_y") == "spatial:transform" and level.n < len(level.layout.levels):
        grid = level.layout.levels[level.n]
        computed = spatial_coords(None, grid.transform, *grid.shape)
        for name in ("x", "y"):
            if name in names and name in computed and computed[name].shape == variables[name].shape:
                values[name] = np.asarray(computed[name].values, dtype=variables[name].dtype)
    return values


async def _read(store: Any, paths: Sequence[str]) -> list[np.ndarray]:
    async def one(path: str) -> np.ndarray:
        array = await zarr.api.asynchronous.open_array(store=store, path=path, mode="r")
        return np.asarray(await array.getitem(...))

    return list(await asyncio.gather(*(one(path) for path in paths)))


def open_levels(store: Any, levels: Sequence[LevelToOpen], *, mask_and_scale: Any, physical: bool) -> list[xr.Dataset]:
    """Open ``levels`` of ``store`` as xarray would, lazily and without dask (``mask_and_scale`` as
    :func:`xr.open_dataset` takes it), the coordinates read at open taken from the array nodes or, where not kept,
    read concurrently in one go; ``physical``: the reader also needs ``scale`` and ``offset``."""
    groups = [ZarrStore.open_group(store, group=level.path, mode="r", zarr_format=3) for level in levels]
    variables = [dict(group.get_variables()) for group in groups]
    missing: list[tuple[int, str]] = []
    for n, (level, found) in enumerate(zip(levels, variables, strict=True)):
        kept = _kept_variables(level, found)
        found.update(kept)
        names = [name for name in _read_at_open(found, physical) if name not in kept]
        known = _given(level, found, names)
        found.update({name: _with_values(found[name], values) for name, values in known.items()})
        missing += [(n, name) for name in names if name not in known]
    read = run(_read(store, [f"{levels[n].path}/{name}" for n, name in missing]))
    for (n, name), values in zip(missing, read, strict=True):
        variables[n][name] = _with_values(variables[n][name], values)
    return [
        xr.open_dataset(
            _Overlay(group, found),
            engine=StoreBackendEntrypoint,  # (a class: no scan of every installed backend, see read._OPEN)
            mask_and_scale=mask_and_scale,
            decode_coords="all",
        )
        for group, found in zip(groups, variables, strict=True)
    ]


def _with_values(var: xr.Variable, values: np.ndarray) -> xr.Variable:
    """A stored (lazy) variable with its values in hand, the rest (attributes, encoding) as it was."""
    return xr.Variable(var.dims, values.reshape(var.shape), var.attrs, var.encoding)
