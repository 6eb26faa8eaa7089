"""Appending to a cube: a refresh whose new items all come after the cube's last time step writes only them.

Two ways in, both checked against what the branch holds before anything is written:

- :func:`append_steps` takes the new time steps alone (planned in the stored arrays' grids by
  :func:`stackcube.extend.extend_arrays`): the usual daily refresh, whose cost does not grow with the cube;
- :func:`append_plan` takes a plan of the whole cube (a cube written before arrays kept their grids, or new sources
  the stored grids do not hold as they are) and appends when it is the stored cube grown along ``time``.

Either way every level must keep its grid, bands, encoding, attributes and coordinates (names, types, values that
do not grow), and the new dates must come after the stored ones, in the stored time units. Then each level's
``data`` grows along ``time``, only the new steps' references are written, the new time-coordinate values and
source rows are appended (all at once), the kept inline coordinates grow (and the coordinates an array node keeps
in place of stored arrays, :func:`~stackcube.store.coords.grow_kept`), and one commit is made. Anything else
returns why (a ``str``) before anything is written, and the refresh rewrites the cube as before.

The source table's id index (:data:`~stackcube.store.layout.ID_INDEX`) grows with its rows. A table without one
(a cube written before it) gets one, as a rebuild would write it, when the append knows every stored row's item
id: :func:`append_plan` always (its plan holds them), :func:`append_steps` when the refresh read them (``rows``).
One that does not match its rows (an earlier stackcube appended without it) is dropped, or written again whole when
the rows are known.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import icechunk
import numpy as np
import xarray as xr
import zarr
import zarr.api.asynchronous
from xarray.coding.times import decode_cf_datetime, encode_cf_datetime

from stackcube import _sync
from stackcube._progress import progress_bar
from stackcube.cube import CubePlan
from stackcube.errors import ConcurrentUpdateError
from stackcube.plan import ArrayPlan
from stackcube.sources import Source
from stackcube.store.coords import (
    ARRAYS,
    INLINE_MAX,
    grow_kept,
    grown_from,
    inline_coordinates,
    jsonable,
    kept_arrays,
)
from stackcube.store.layout import (
    DATA,
    ID_INDEX,
    SOURCE_COLUMNS,
    SOURCES,
    WITHOUT_UPDATED,
    ArrayLayout,
    CubeMetadata,
    StoredRow,
    child_names,
    id_index,
    index_column,
    level_dataset,
    level_path,
    manifest_splits,
    sources_table,
    updated_of,
)
from stackcube.store.nodes import encoded_array
from stackcube.store.repo import RepoLike, container_prefixes, exclusive, for_writing
from stackcube.store.write import (
    accounts_of,
    check_tag_is_free,
    commit,
    data_array,
    refs_of,
    set_refs,
    write_or_nothing,
)

__all__ = ["Appended", "Commit", "append_plan", "append_steps", "append_to"]


def append_to(
    plan: CubePlan,
    repository: icechunk.Repository,
    repo: RepoLike,
    *,
    new: int,
    to: Commit,
) -> Appended | str:
    """:func:`append_plan` on the repository at ``repo`` (which its errors name)."""
    return write_or_nothing(
        repo,
        "appending to the cube in",
        lambda: append_plan(plan, repository, new=new, to=to, lock=lambda: exclusive(repo)),
    )


def append_plan(
    plan: CubePlan,
    repository: icechunk.Repository,
    *,
    new: int,
    to: Commit,
    lock: Callable[[], AbstractContextManager[None]],
) -> Appended | str:
    """Commit ``plan`` on ``branch`` by appending to the cube at ``parent``; return the snapshot id (an
    :class:`Appended`), or why the plan is not the stored cube grown along time (a ``str``: nothing was written).

    The last ``new`` of ``plan.sources`` are the sources the cube does not hold yet; the others must be its source
    table's rows, in its order (as a refresh orders them, :func:`stackcube.refresh._in_stored_order`).
    """
    prefixes = container_prefixes({h for a in plan.arrays for h in a.sources.href})
    repository = for_writing(repository, manifest_splits(plan.standalone), accounts=accounts_of(plan, prefixes))
    session = _session(repository, to)
    root = zarr.open_group(session.store, mode="r+")
    if to.tag is not None:
        check_tag_is_free(repository, to.tag, repository)
    grown = _grown(plan, root, new)
    if isinstance(grown, str):
        return grown
    known = _Known.of(plan.sources[:-new])
    _write_new(session, root, grown, plan.sources[-new:], progress=to.progress, known=known)
    for array in plan.arrays:
        datasets = [g.coords for g in grown if g.level.name == array.name]
        coordinates = inline_coordinates(datasets)
        if any(g.kept for g in grown if g.level.name == array.name):
            coordinates[ARRAYS] = kept_arrays(datasets, member=False)
        cast("zarr.Group", root[array.name]).attrs.put(ArrayLayout.of(array, coordinates).to_attrs())
    return _commit(repository, session, to, lock)


def append_steps(
    arrays: Sequence[ArrayPlan],
    new: Sequence[Source],
    repository: icechunk.Repository,
    repo: RepoLike,
    *,
    to: Commit,
    accounts: Mapping[str, str] | None = None,
    rows: Sequence[StoredRow] | None = None,
) -> Appended | str:
    """Append ``arrays`` - each a stored array's new time steps only (:func:`stackcube.extend.extend_arrays`) -
    and the ``new`` sources' rows to the cube at ``parent``: the commit's id, or why they cannot be appended (a
    ``str``: nothing was written). Unlike :func:`append_plan`, nothing here grows with the cube. ``accounts``: the
    cube's Azure storage accounts (:attr:`~stackcube.store.CubeMetadata.accounts`). ``rows``: every stored row, when
    the caller read them (a cube without the id index): the append writes its index."""
    known = None if rows is None else _Known([r.item_id for r in rows], sum(1 for r in rows if not r.updated))
    return write_or_nothing(
        repo,
        "appending to the cube in",
        lambda: _append_steps(
            arrays, new, repository, to=to, accounts=accounts, lock=lambda: exclusive(repo), known=known
        ),
    )


def _append_steps(
    arrays: Sequence[ArrayPlan],
    new: Sequence[Source],
    repository: icechunk.Repository,
    *,
    to: Commit,
    lock: Callable[[], AbstractContextManager[None]],
    accounts: Mapping[str, str] | None,
    known: _Known | None = None,
) -> Appended | str:
    repository = for_writing(repository, manifest_splits(arrays), accounts=accounts)  # for this commit
    session = _session(repository, to)
    root = zarr.open_group(session.store, mode="r+")
    stored = CubeMetadata.from_attrs(root.attrs)
    if stored.unions:
        return "the cube has a union"
    if not all(any(s.manifest.href.startswith(c) for c in stored.containers) for s in new):
        return "sources in a new location"
    if not set(SOURCE_COLUMNS) <= child_names(cast("zarr.Group", root[SOURCES])):
        return "a source table written by an earlier stackcube"
    if to.tag is not None:
        check_tag_is_free(repository, to.tag, repository)
    grown: list[_Grown] = []
    in_node: dict[str, dict[str, Any]] = {}  # per array, the coordinates its node keeps, grown
    for array in arrays:
        node = cast("zarr.Group", root[array.name])
        layout = ArrayLayout.from_attrs(node.attrs)
        planned = ArrayLayout.of(array)
        if (planned.crs, planned.levels, planned.grids) != (layout.crs, layout.levels, layout.grids):
            return f"{array.name} has another grid or other levels"
        if ARRAYS in layout.coordinates:
            kept = grow_kept(layout.coordinates[ARRAYS], level_dataset(array))
            if isinstance(kept, str):
                return f"{level_path(array.name, 0)}: {kept}"  # (every level's coordinates)
            in_node[array.name] = kept
        for n, level in enumerate(array.levels):
            path = level_path(array.name, n)
            coords = level_dataset(level)
            steps = _stored_steps(
                cast("zarr.Group", root[path]), level, coords, values=n == 0, delta=True, kept=array.name in in_node
            )
            if isinstance(steps, str):
                return f"{path}: {steps}"
            grown.append(_Grown(level, path, steps, coords, delta=True, kept=array.name in in_node))
    _write_new(session, root, grown, new, progress=to.progress, known=known)
    for array in arrays:
        node = cast("zarr.Group", root[array.name])
        layout = ArrayLayout.from_attrs(node.attrs)
        kept = _grow_inline(layout.coordinates, level_dataset(array))
        if array.name in in_node:
            kept[ARRAYS] = in_node[array.name]
        node.attrs.put(dataclasses.replace(layout, coordinates=kept).to_attrs())
    return _commit(repository, session, to, lock)


def _write_new(
    session: icechunk.Session,
    root: zarr.Group,
    grown: Sequence[_Grown],
    sources: Sequence[Source],
    *,
    progress: bool,
    known: _Known | None = None,
) -> None:
    """Grow every level and write the new references, then the new time coordinates and source rows (and their
    id index: :func:`_index_rows`)."""
    total = sum(int(np.count_nonzero(g.level.source_index[0 if g.delta else g.steps :] >= 0)) for g in grown)
    with progress_bar(total, "writing virtual references", "ref", enabled=progress) as advance:
        writes = [write for g in grown for write in _append_level(session, root, g, advance)]
    _grow_coordinates(session.store, [*writes, *_table_rows(root, sources), *_index_rows(root, sources, known)])


def _commit(
    repository: icechunk.Repository, session: icechunk.Session, to: Commit, lock: Callable[[], Any]
) -> Appended:
    snapshot = commit(
        repository, session, branch=to.branch, base=to.parent, message=to.message, metadata=to.metadata,
        tag=to.tag, lock=lock,
    )  # fmt: skip
    return Appended(snapshot)


def _session(repository: icechunk.Repository, to: Commit) -> icechunk.Session:
    """A writable session on the branch, which must still be at the snapshot the refresh started from."""
    session = repository.writable_session(to.branch)
    if session.snapshot_id != to.parent:
        msg = f"branch {to.branch} moved from {to.parent} to {session.snapshot_id} while this refresh was prepared"
        raise ConcurrentUpdateError(msg)
    return session


def _grow_inline(kept: Mapping[str, Any], coords: xr.Dataset) -> dict[str, Any]:
    """The coordinates an array node keeps (:func:`~stackcube.store.coords.inline_coordinates`) with the new time
    steps' values (``coords``: the new steps of level 0), encoded in the kept units; one that grows beyond
    :data:`~stackcube.store.coords.INLINE_MAX` values is no longer kept (as a rebuild would not keep it)."""
    values = dict(kept.get("values") or {})
    for name, entry in list(values.items()):
        var = coords.variables.get(name)
        if var is None or "time" not in var.dims:
            continue
        var = var.copy(deep=False)
        var.encoding = {"units": entry["units"]} if entry.get("units") else {}
        encoded = xr.conventions.encode_cf_variable(var, name=name)
        joined = [*entry["values"], *jsonable(np.asarray(encoded.values))]
        if len(joined) > INLINE_MAX:
            del values[name]
        else:
            values[name] = {"values": joined, "units": entry.get("units")}
    return {**kept, "values": values}


class Appended(str):
    """The snapshot id of a commit that appended (what :func:`append_plan` returns when it could)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Commit:
    """The commit an append makes: on ``branch``, only if it is still at ``parent``."""

    branch: str
    parent: str
    message: str
    tag: str | None = None
    progress: bool = False
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Grown:
    """One level of the plan, the time steps the cube holds of it, and its coordinates as a rebuild writes them."""

    level: ArrayPlan
    path: str
    steps: int
    coords: xr.Dataset
    delta: bool = False
    """Whether ``level`` holds only the new steps (else all of them, the stored first)."""
    kept: bool = False
    """Whether its array node keeps its coordinates (its level stores its data array only)."""


def _grown(plan: CubePlan, root: zarr.Group, new: int) -> list[_Grown] | str:
    """Each level of ``plan`` with what the stored cube holds of it, when the plan is the stored cube grown along
    time (new sources at the end of the table, new time steps after the stored ones); None when it is not."""
    stored = CubeMetadata.from_attrs(root.attrs)
    if plan.unions or stored.unions:
        return "the cube has a union"
    if not 0 < new <= len(plan.sources):
        return "no new source"
    hrefs = {h for a in plan.arrays for h in a.sources.href}
    prefixes = container_prefixes(hrefs)
    if CubeMetadata.of(plan, prefixes, accounts_of(plan, prefixes)).to_attrs() != stored.to_attrs():
        return "other arrays, or sources in a new location"
    table = cast("zarr.Group", root[SOURCES])
    if not set(SOURCE_COLUMNS) <= child_names(table):
        return "a source table written by an earlier stackcube"
    if int(cast("zarr.Array[Any]", table["item_id"]).shape[0]) != len(plan.sources) - new:
        return "the source table is not the plan's"
    out: list[_Grown] = []
    for array in plan.arrays:
        node = cast("zarr.Group", root[array.name])
        layout = ArrayLayout.from_attrs(node.attrs)
        planned = ArrayLayout.of(array)
        if (planned.crs, planned.levels) != (layout.crs, layout.levels):
            return f"{array.name} has another grid or other levels"
        kept = ARRAYS in layout.coordinates  # its node keeps its coordinates: grown there
        if kept:
            why = grown_from(
                layout.coordinates[ARRAYS], kept_arrays([level_dataset(lv) for lv in array.levels], member=False)
            )
            if why is not None:
                return f"{level_path(array.name, 0)}: {why}"  # (every level's coordinates)
        for n, level in enumerate(array.levels):
            path = level_path(array.name, n)
            coords = level_dataset(level)
            # the levels of an array share its time steps, bands and their fields: their values are checked once
            steps = _stored_steps(cast("zarr.Group", root[path]), level, coords, values=n == 0, kept=kept)
            if isinstance(steps, str):
                return f"{path}: {steps}"
            out.append(_Grown(level, path, steps, coords, kept=kept))
    if not any(g.level.shape[0] > g.steps for g in out):
        return "no new time step"
    return out


def _stored_steps(
    group: zarr.Group, level: ArrayPlan, coords: xr.Dataset, *, values: bool, delta: bool = False, kept: bool = False
) -> int | str:
    """How many time steps the stored level (``group``) has, when ``level`` is it grown along time (``delta``:
    when ``level``'s steps follow the stored ones); else why not. With ``values``, also the values of the
    coordinates that do not grow, and the stored time steps. ``kept``: its array node keeps its coordinates
    (:func:`~stackcube.store.coords.grow_kept` checks them), the level stores its data array only."""
    data = cast("zarr.Array[Any]", group[DATA])
    steps = int(data.shape[0])
    if (not delta and steps > level.shape[0]) or tuple(data.shape[1:]) != level.shape[1:]:
        return "other bands or another extent"
    stored = data.metadata.to_dict()
    # a level whose sources Zarr's own codecs now describe, written with stackcube.tiff before: both decode its
    # segments alike, so it grows as it is (a rewrite of the whole array would be the first refresh's cost)
    if stored != _created(level, data.shape, coords) and stored != _created(level, data.shape, coords, tiff=True):
        return "another encoding, chunking, fill value or attributes"
    if child_names(group) - {DATA} != (set() if kept else {str(k) for k in coords.variables}):
        return "a coordinate more or less (an item property that appeared, or changed type)"
    if not values or kept:
        return steps
    growing = [str(name) for name, var in coords.variables.items() if "time" in var.dims]
    # what does not grow is read and compared; what grows along time only by its metadata (a cube's time axis
    # may be long: only its last stored value is read, or all of it when the whole plan is compared)
    stored = xr.open_zarr(
        group.store, group=group.path, consolidated=False, zarr_format=3, chunks=None, drop_variables=growing
    )
    for name, var in coords.variables.items():
        if name in growing:
            array = cast("zarr.Array[Any]", group[name])
            names = tuple(cast("list[str]", array.metadata.to_dict().get("dimension_names") or []))
            kind = "M" if "units" in array.attrs and " since " in str(array.attrs["units"]) else _kind(array.dtype)
            if names != var.dims or kind != _kind(var.dtype):
                return f"coordinate {name} changed type or dimensions"
            continue
        have = stored[name].variable
        if have.dims != var.dims or _kind(have.dtype) != _kind(var.dtype) or not have.equals(var):
            return f"coordinate {name} changed"
    times = cast("zarr.Array[Any]", group["time"])
    if delta and steps and not _decoded(times, times[steps - 1 : steps])[0] < coords["time"].values[0]:
        return "a time step between the stored ones (a late item)"
    if not delta and not np.array_equal(_decoded(times, times[:steps]), coords["time"].values[:steps]):
        return "a time step between the stored ones (a late item), or a stored one gone"
    new_times = coords["time"].values[0 if delta else steps :]
    if not _encodable(new_times, cast("zarr.Array[Any]", group["time"]).attrs):
        return f"a new time step ({new_times[0]}) is finer than the stored time units"
    return steps


def _decoded(array: zarr.Array[Any], numbers: Any) -> np.ndarray:
    """Stored times (``numbers`` read from ``array``) as datetime64, as xarray decodes them."""
    calendar = array.attrs.get("calendar")
    units = str(array.attrs["units"])
    return np.asarray(decode_cf_datetime(np.asarray(numbers), units, None if calendar is None else str(calendar)))


def _encodable(times: np.ndarray, attrs: Any) -> bool:
    """Whether ``times`` are whole numbers of the stored time coordinate's units (xarray chose them from the first
    dates written: a cube of whole days keeps days, and a new time of 10:30 would need other units)."""
    units, calendar = str(attrs.get("units", "")), attrs.get("calendar")
    if not len(times) or " since " not in units:
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # xarray warns when it must change the units: the answer here
        _, used, _ = encode_cf_datetime(times, units, calendar, dtype=np.dtype("int64"))
    return str(used).split(maxsplit=1)[0] == units.split(maxsplit=1)[0]


def _kind(dtype: np.dtype[Any]) -> str:
    """A dtype's kind, text of any representation (objects, fixed-width, variable-width) one kind."""
    return "text" if dtype.kind in "OUST" else dtype.kind


def _created(level: ArrayPlan, shape: tuple[int, ...], coords: xr.Dataset, *, tiff: bool = False) -> dict[str, Any]:
    """The metadata a build gives a level's data array (:func:`stackcube.store.write.data_array`), at ``shape``;
    with ``tiff``, as builds gave it before Zarr's own codecs."""
    created = zarr.create_array(store=zarr.storage.MemoryStore(), **data_array(level, coords, shape, tiff=tiff))
    return cast("dict[str, Any]", created.metadata.to_dict())


def _append_level(
    session: icechunk.Session, root: zarr.Group, grown: _Grown, advance: Callable[[int], object]
) -> list[tuple[str, xr.Variable, int]]:
    """Grow one level's data array to the plan's time steps and write its new references; return its time
    coordinates' new values to write (:func:`_grow_coordinates`: path, values, the stored steps)."""
    level, path, steps = grown.level, grown.path, grown.steps
    new = level.shape[0] if grown.delta else level.shape[0] - steps
    if not new:  # an array the new items do not add to
        return []
    cast("zarr.Array[Any]", root[f"{path}/{DATA}"]).resize((steps + new, *level.shape[1:]))
    first, at = (0, steps) if grown.delta else (steps, 0)
    for refs in refs_of(level, path, steps=new, first=first, at=at):
        set_refs(session.store, refs, advance)
    if grown.kept:  # its coordinates grow in its array node
        return []
    along = grown.coords if grown.delta else grown.coords.isel(time=slice(steps, None))
    return [(f"{path}/{name}", var, steps) for name, var in along.variables.items() if "time" in var.dims]


def _table_rows(root: zarr.Group, sources: Sequence[Source]) -> list[tuple[str, xr.Variable, int]]:
    """The source table's new rows, as :func:`_grow_coordinates` writes them (after the stored rows); not their id
    index (:func:`_index_rows`)."""
    table = sources_table(sources)
    stored = int(cast("zarr.Array[Any]", cast("zarr.Group", root[SOURCES])["item_id"]).shape[0])
    return [(f"{SOURCES}/{name}", var, stored) for name, var in table.variables.items() if name != ID_INDEX]


@dataclass(frozen=True, slots=True)
class _Known:
    """What the id index says of the stored rows, when the append knows them all."""

    ids: Sequence[str]
    """Every stored row's item id, in order."""
    without_updated: int
    """How many of them have no STAC ``updated``."""

    @classmethod
    def of(cls, sources: Sequence[Source]) -> _Known:
        return cls([s.item_id for s in sources], sum(1 for s in sources if not updated_of(s.properties)))


def _index_rows(
    root: zarr.Group, sources: Sequence[Source], known: _Known | None
) -> list[tuple[str, xr.Variable, int]]:
    """The id index's new values, as :func:`_grow_coordinates` writes them, its count of rows without ``updated``
    grown: the new rows' hashes after the stored ones'. A table without one, or with one that does not match its
    rows, gets it written whole when every stored row is ``known`` and a rebuild would write one
    (:func:`~stackcube.store.layout.sources_table`: an append leaves the cube a rebuild writes); else a stale one is
    dropped (the table is then read whole, as a cube written before it)."""
    node = cast("zarr.Group", root[SOURCES])
    stored = int(cast("zarr.Array[Any]", node["item_id"]).shape[0])
    index = id_index(sources)
    present = ID_INDEX in child_names(node)
    array = cast("zarr.Array[Any]", node[ID_INDEX]) if present else None
    without = array.attrs.get(WITHOUT_UPDATED) if array is not None else None
    if array is not None and array.shape[0] == stored and isinstance(without, int):
        array.attrs.update({WITHOUT_UPDATED: without + int(index.attrs[WITHOUT_UPDATED])})
        return [(f"{SOURCES}/{ID_INDEX}", index, stored)]
    if array is not None:
        del node[ID_INDEX]
    if known is None or len(known.ids) != stored:
        return []
    whole = index_column([*known.ids, *(s.item_id for s in sources)], known.without_updated)
    whole.attrs[WITHOUT_UPDATED] += index.attrs[WITHOUT_UPDATED]
    kwargs, values = encoded_array(ID_INDEX, whole)
    created = zarr.create_array(store=node.store, name=f"{node.path}/{ID_INDEX}", **kwargs)
    created[...] = values
    return []


def _grow_coordinates(store: Any, writes: Sequence[tuple[str, xr.Variable, int]]) -> None:
    """Append new values to the arrays ``writes`` name (each level's time coordinates, the source table's
    columns) after their stored ``steps``, all at once through zarr's async API (one array at a time through
    xarray's append was most of an append's write), encoded as the stored arrays are."""

    async def grow() -> None:
        arrays = await asyncio.gather(
            *(zarr.api.asynchronous.open_array(store=store, path=path, zarr_format=3) for path, _, _ in writes)
        )
        values = [_encoded(var, array) for (_, var, _), array in zip(writes, arrays, strict=True)]
        await asyncio.gather(
            *(
                array.resize((steps + len(v), *array.shape[1:]))
                for array, v, (_, _, steps) in zip(arrays, values, writes, strict=True)
            )
        )
        await asyncio.gather(
            *(
                array.setitem((slice(steps, steps + len(v)), *(slice(None),) * (array.ndim - 1)), v)
                for array, v, (_, _, steps) in zip(arrays, values, writes, strict=True)
            )
        )

    _sync.run(grow())


def _encoded(var: xr.Variable, stored: Any) -> np.ndarray:
    """``var``'s values as xarray stores them in ``stored`` (an array it wrote): times in its units and calendar
    (:func:`_encodable` checked they fit), numbers in its dtype, text as it is."""
    attrs = dict(stored.attrs)
    if np.issubdtype(var.dtype, np.datetime64):
        numbers, _, _ = encode_cf_datetime(var.values, attrs["units"], attrs.get("calendar"), dtype=stored.dtype)
        return np.asarray(numbers)
    if var.dtype.kind in "OUST":
        return np.asarray(var.values, dtype=object)
    return np.asarray(var.values).astype(stored.dtype)
