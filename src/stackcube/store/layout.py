"""What a cube stores, described once: the only module that knows attribute names and where things live.

::

    /                       attrs["stackcube"]: :class:`CubeMetadata` (version, search, options, arrays, unions)
    /A                      attrs: :class:`ArrayLayout` (zarr-conventions ``multiscales`` of its levels, ``proj:code``,
                            and the coordinates a reader decodes at open, so that opening reads no coordinate array)
    /A/0/data               (time, band, y, x) virtual chunks, each checked against its source's ETag
    /A/0/time, band, y, x   pixel-centre coordinates; /A/0/spatial_ref (crs_wkt, GeoTransform) for rioxarray/odc-geo
    /A/0/id                 item ids per time step; other item properties along time
    /A/0/source_href        per (time, band): where the chunks come from, and /A/0/source_etag: what they were
    /A/1, /A/2, ...         the same for the sources' internal overviews (full resolution is /A/0)
    /sources                every indexed source: item, asset, href, ETag, properties, TIFF manifest (for refreshes),
                            and ``id_hash``, the rows' id index (:func:`id_index`)
    /U/0, /U/1, ...         a union's tile references per level: where each member tile lies in which source
                            (:func:`union_tiles`), so reads fetch adjacent tiles of one file with one ranged GET
    /M/0/data               a union's member M (one scene), or an array whose coordinates are small (at most
                            :data:`~stackcube.store.coords.KEPT_BYTES`): its levels store their data array only;
                            /M's attributes keep its other coordinates (:func:`stackcube.store.coords.kept_arrays`),
                            one object fewer per coordinate for a build to write

A union is stored as its member arrays plus its description in the root attributes
(:meth:`~stackcube.union.UnionPlan.to_dict`). Readers go through :meth:`CubeMetadata.from_attrs` and
:meth:`ArrayLayout.from_attrs`, never through raw attribute keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self, cast

import numpy as np
import xarray as xr
import zarr
from xarray.backends.zarr import FillValueCoder

from stackcube import _sync
from stackcube._georef import Affine, spatial_coords, to_affine
from stackcube._version import __version__
from stackcube.bands import BandMetadata
from stackcube.cube import CubePlan
from stackcube.errors import RepositoryError
from stackcube.grid import GridKey
from stackcube.options import CubeOptions
from stackcube.plan import DIMS, ArrayPlan, band_coords
from stackcube.search import Query
from stackcube.sources import Source
from stackcube.tiff import TiffManifest, with_current_crs
from stackcube.union import UnionPlan

__all__ = [
    "child_names",
    "DATA",
    "GRIDS",
    "INLINE",
    "MANIFEST_REFS",
    "ROOT",
    "SOURCES",
    "TILES",
    "TIME_CHUNK",
    "ArrayLayout",
    "CubeMetadata",
    "Level",
    "coordinate_encoding",
    "data_attrs",
    "data_path",
    "level_dataset",
    "level_path",
    "manifest_splits",
    "piece_steps",
    "MANIFEST_CHUNK",
    "SOURCE_CHUNK",
    "ROW_COLUMNS",
    "SOURCE_COLUMNS",
    "StoredRow",
    "TABLE_ENCODING",
    "read_source_rows",
    "read_sources_table",
    "searched_at",
    "searched_now",
    "source_row",
    "updated_of",
    "sources_table",
    "union_tiles",
]

ROOT = "stackcube"
"""Key of the root attribute that holds :class:`CubeMetadata`."""
SOURCES = "sources"
"""Name of the node holding the table of every indexed source (one row per item and asset) and its manifest."""
DATA = "data"
"""Name of the virtual array in each level's node."""
TILES = ("tiles", "sources")
"""The arrays of a union level's node (:func:`union_tiles`)."""
INLINE = "stackcube:coordinates"
"""Key of the array node's attribute that keeps the coordinates read at open (:mod:`stackcube.store.coords`)."""
GRIDS = "stackcube:grids"
"""Key of the array node's attribute that keeps each level's GridKey and extent (:attr:`ArrayLayout.grids`)."""


def level_path(array: str, level: int) -> str:
    """Path of one level's node: ``A/0`` for full resolution, ``A/n`` for overview level n."""
    return f"{array}/{level}"


def data_path(array: str, level: int) -> str:
    """Path of one level's virtual array."""
    return f"{level_path(array, level)}/{DATA}"


@dataclass(frozen=True, slots=True)
class CubeMetadata:
    """What a cube says about itself at its root: how it was made and which arrays it holds."""

    query: Query
    """The search that made the cube (without headers: they may hold credentials)."""
    options: CubeOptions
    """How assets became arrays; a refresh plans new items the same way."""
    arrays: tuple[str, ...]
    """The stored arrays, one per grid."""
    unions: tuple[UnionPlan, ...] = ()
    """Arrays on one pixel lattice presented as one (their members are among :attr:`arrays`)."""
    version: str = __version__
    """The stackcube version that wrote it."""
    containers: tuple[str, ...] = ()
    """The URL prefixes its sources live under (Icechunk's virtual chunk containers): a reader declares them
    from here, so a concurrent writer's repository configuration can never take them away."""
    accounts: dict[str, str] = field(default_factory=dict)
    """The Azure storage account of each ``az://CONTAINER/`` prefix (the URL names only the container)."""

    @classmethod
    def of(cls, plan: CubePlan, containers: Iterable[str] = (), accounts: Mapping[str, str] | None = None) -> Self:
        """What a cube built from ``plan`` says about itself."""
        return cls(
            query=plan.query,
            options=plan.options,
            arrays=tuple(a.name for a in plan.arrays),
            unions=plan.unions,
            containers=tuple(containers),
            accounts=dict(accounts or {}),
        )

    @property
    def members(self) -> frozenset[str]:
        """Arrays that are members of a union."""
        return frozenset(m for u in self.unions for m in u.members)

    @property
    def array_names(self) -> list[str]:
        """The arrays a user opens first: unions, then the arrays on their own (a union's members open too)."""
        members = self.members  # once: a union of 5,000 members took 2.5 s asking for each
        return [u.name for u in self.unions] + [a for a in self.arrays if a not in members]

    def union(self, name: str) -> UnionPlan | None:
        """The union called ``name``, if there is one."""
        return next((u for u in self.unions if u.name == name), None)

    def to_attrs(self) -> dict[str, Any]:
        """The root attributes."""
        return {
            ROOT: {
                "version": self.version,
                "query": self.query.to_dict(),
                "options": self.options.to_dict(),
                "arrays": list(self.arrays),
                "unions": {u.name: u.to_dict() for u in self.unions},
                "containers": list(self.containers),
                "accounts": dict(self.accounts),
            }
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[Any, Any]) -> Self:
        """Read the root attributes; raises RepositoryError when they describe no cube."""
        info = attrs.get(ROOT)
        if not isinstance(info, Mapping) or not info:
            msg = f"this repository holds no stackcube cube (no {ROOT!r} attributes at its root)"
            raise RepositoryError(msg)
        arrays = info.get("arrays", info.get("groups"))  # "groups": cubes written by stackcube 0.1.0.dev0
        return cls(
            query=Query.from_dict(info.get("query") or {}),
            options=CubeOptions.from_dict(info.get("options") or {}),
            arrays=tuple(arrays or ()),
            unions=tuple(UnionPlan.from_dict(name, u) for name, u in (info.get("unions") or {}).items()),
            version=str(info.get("version", "")),
            containers=tuple(info.get("containers") or ()),
            accounts=dict(info.get("accounts") or {}),
        )


# Registrations of the Zarr conventions the array node's attributes follow (https://github.com/zarr-conventions)
CONVENTIONS: list[dict[str, str]] = [
    {
        "uuid": "d35379db-88df-4056-af3a-620245f8e347",
        "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
        "name": "multiscales",
        "description": "Multiscale layout of zarr datasets",
    },
    {
        "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
        "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
        "name": "spatial",
        "description": "Spatial coordinate information",
    },
    {
        "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
        "schema_url": "https://raw.githubusercontent.com/zarr-conventions/geo-proj/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-conventions/geo-proj/blob/v1/README.md",
        "name": "proj:",
        "description": "Coordinate reference system information for geospatial data",
    },
]


@dataclass(frozen=True, slots=True)
class Level:
    """One resolution level of a stored array: its grid."""

    transform: Affine
    """Affine transform of the level's pixel corners."""
    shape: tuple[int, int]
    """(y, x)."""


@dataclass(frozen=True, slots=True)
class ArrayLayout:
    """What the node of a stored array says: its CRS and its levels, as a zarr-conventions ``multiscales`` layout."""

    crs: str
    """``EPSG:<code>``, or WKT2 for a CRS without one."""
    levels: tuple[Level, ...] = field(default_factory=tuple)
    """Full resolution first, then the overview levels 1, 2, ..."""
    coordinates: Mapping[str, Any] = field(default_factory=dict)
    """The coordinates its levels share that a reader decodes at open, kept here so that opening reads none
    (:func:`stackcube.store.coords.inline_coordinates`; {} for a cube written before); for a union's member, also
    every coordinate its levels do not store (:func:`stackcube.store.coords.kept_arrays`)."""
    grids: tuple[tuple[GridKey, tuple[float, float, int, int]], ...] = ()
    """Per level, the GridKey its sources share and its :attr:`~stackcube.plan.ArrayPlan.extent`: what a refresh
    needs to place new sources in it without the stored ones (empty for a cube written before)."""

    @classmethod
    def of(cls, plan: ArrayPlan, coordinates: Mapping[str, Any] | None = None) -> Self:
        """The layout of the array ``plan`` describes, keeping ``coordinates``."""
        return cls(
            crs=plan.crs,
            levels=tuple(Level(p.transform, (p.shape[2], p.shape[3])) for p in plan.levels),
            coordinates=dict(coordinates or {}),
            grids=tuple((p.key, p.extent) for p in plan.levels if p.extent is not None),
        )

    def to_attrs(self) -> dict[str, Any]:
        """The node's attributes: each level's scale and translation relative to level 0, its shape and transform."""
        base = self.levels[0].transform
        layout = []
        for n, level in enumerate(self.levels):
            t = level.transform
            entry: dict[str, Any] = {"asset": str(n)}
            if n:
                entry["derived_from"] = "0"
            # relative to level 0: pixel size ratio and the origin's shift in this level's pixels (y, x)
            entry["transform"] = {
                "scale": [t.e / base.e, t.a / base.a],
                "translation": [(t.f - base.f) / t.e + 0.0, (t.c - base.c) / t.a + 0.0],
            }
            entry["spatial:shape"] = list(level.shape)
            entry["spatial:transform"] = list(t)[:6]
            layout.append(entry)
        crs = {"proj:code": self.crs} if self.crs.startswith("EPSG:") else {"proj:wkt2": self.crs}
        return {
            "zarr_conventions": CONVENTIONS,
            "multiscales": {"layout": layout},
            "spatial:dimensions": ["y", "x"],
            **crs,
            **({INLINE: dict(self.coordinates)} if self.coordinates else {}),
            **({GRIDS: [{"key": k.to_dict(), "extent": list(e)} for k, e in self.grids]} if self.grids else {}),
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[Any, Any]) -> Self:
        """Read an array node's attributes."""
        layout = cast("Mapping[str, Any]", attrs.get("multiscales") or {}).get("layout") or []
        levels = tuple(
            Level(
                to_affine(entry["spatial:transform"]), (int(entry["spatial:shape"][0]), int(entry["spatial:shape"][1]))
            )
            for entry in sorted(layout, key=lambda entry: int(entry["asset"]))
        )
        return cls(
            crs=str(attrs.get("proj:code") or attrs.get("proj:wkt2") or ""),
            levels=levels,
            coordinates=dict(attrs.get(INLINE) or {}),
            grids=tuple((GridKey.from_dict(g["key"]), _extent(g["extent"])) for g in attrs.get(GRIDS) or ()),
        )


def _extent(values: Sequence[Any]) -> tuple[float, float, int, int]:
    x, y, height, width = values
    return float(x), float(y), int(height), int(width)


def level_dataset(plan: ArrayPlan, *, indexes: bool = True) -> xr.Dataset:
    """A level's coordinates: time, band, y and x, ``spatial_ref``, item ids and properties, and provenance;
    ``indexes=False``: without xarray's default indexes, for coordinates that are kept, never stored
    (:func:`~stackcube.store.coords.kept_arrays` encodes the variables alone): making the indexes was half of
    making a union member's dataset (0.5 of 1 ms, a 5,000-scene union's 2.5 s).

    Each level of an array whose coordinates are large stores all of them: DataTree children inherit only indexed
    coordinates, and a level opened alone (``xr.open_zarr(..., group="A/1")``) is then complete. But for a union's
    members and arrays whose coordinates are small (:func:`~stackcube.store.coords.kept_arrays`): a dozen arrays of
    one value each, for thousands of scenes, were most of a union's build (20 ms a member), and on object storage
    each stored array is an object a build writes (a manifest: 207 of a 30-date, 4-band cube's 242 requests), so
    their node keeps them and stackcube's reader puts them back (``xr.open_zarr`` sees the data array only).
    """
    per_band_href = np.full(plan.shape[:2], "", dtype=object)
    per_band_etag = np.full(plan.shape[:2], "", dtype=object)
    per_chunk = plan.shape[1] // plan.source_index.shape[1]
    for t in range(plan.shape[0]):
        for nb in range(plan.source_index.shape[1]):
            used = sorted(set(plan.source_index[t, nb].ravel().tolist()) - {-1})
            for k in range(per_chunk):
                per_band_href[t, nb * per_chunk + k] = " ".join(plan.sources.href[i] for i in used)
                per_band_etag[t, nb * per_chunk + k] = " ".join(plan.sources.etag[i] for i in used)
    coords: dict[str, Any] = {
        "time": ("time", plan.time),
        "band": ("band", np.array(plan.bands, dtype=object)),
        "id": ("time", np.array([",".join(ids) for ids in plan.items], dtype=object)),
        "source_href": (("time", "band"), per_band_href),
        "source_etag": (("time", "band"), per_band_etag),
        "scale": (("time", "band"), plan.scale, {"description": "physical = stored * scale + offset"}),
        "offset": (("time", "band"), plan.offset, {"description": "physical = stored * scale + offset"}),
    }
    for name, coord in band_coords(plan.band_fields).items():
        coords.setdefault(name, coord)
    for name, values in plan.properties.items():
        if name in coords or name in {"datetime", "x", "y", "spatial_ref"}:
            continue
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int, float} and kinds:
            coords[name] = ("time", np.array([np.nan if v is None else v for v in values], dtype=float))
        elif kinds == {str}:
            coords[name] = ("time", np.array(["" if v is None else v for v in values], dtype=object))
    coords.update(spatial_coords(plan.crs, plan.transform, plan.shape[2], plan.shape[3]))
    return xr.Dataset(coords=coords) if indexes else xr.Coordinates(coords, indexes={}).to_dataset()


MANIFEST_REFS = 64_000
"""At most how many references one piece of a level's manifest holds (:func:`manifest_splits`), when a time step
has fewer. Smaller pieces make an append's commit cheaper but a build's dearer: Icechunk's commit costs about
(pieces x references), so 10 million references committed in 38 s in pieces of 100,000 and in 170 s in pieces of
20,000 (``benchmarks/cube_bench``). Below :data:`~stackcube.store.repo.URL_DICTIONARY_FROM`, so that no piece
pays for a dictionary of its URLs: a million references commit in the same 4.6 s in pieces of 64,000 as in
pieces of 100,000 with dictionaries, and an append's commit rewrites at most 64,000 references of level 0
without one (0.75 us each) instead of 100,000 with one (about 1 us)."""


def manifest_splits(arrays: Sequence[ArrayPlan]) -> dict[str, int]:
    """Per level's data array (``/A/0/data``), how many time steps one piece of its manifest holds
    (:func:`piece_steps`: a read of one date opens one piece; an append of a few dates rewrites the last piece).
    Every level is named, however few dates it has now: an append plans only its new dates, and the pieces must be
    those of the whole array (Icechunk re-splits every manifest of an array whose pieces change: 2.6 s for a
    million references). Give it the arrays that are not members of a union
    (:attr:`~stackcube.cube.CubePlan.standalone`): a member is one scene, never appended, and Icechunk matches
    every array a commit writes against every array named here (a 250-scene union's commit took 77 s with its
    members named, 0.6 s without)."""
    return {f"/{data_path(array.name, n)}": piece_steps(array) for array in arrays for n in range(len(array.levels))}


def piece_steps(array: ArrayPlan) -> int:
    """Time steps in one piece of the manifest of each level of ``array``: at most :data:`MANIFEST_REFS`
    references of its full resolution (one step when a step has more), whole steps; its overviews' pieces hold the
    same steps (a quarter of the references, a sixteenth, ...). An append rewrites the last piece of every level:
    with pieces of ``MANIFEST_REFS`` (then 100,000) at every level, an overview of 9 references a date held 11,111
    dates in its last one, and a 10,000-item cube's append rewrote about 300,000 references (counted from its
    levels' last pieces) where it now rewrites about 85,000 at most."""
    return max(1, MANIFEST_REFS // array.levels[0].step_chunks)


TIME_CHUNK = 1024
"""Time steps per chunk of a level's coordinates along time (ids, properties, provenance): an append rewrites the
last chunk of each, not the whole coordinate, and a cube's coordinates are chunked the same however it grew."""


def coordinate_encoding(coords: xr.Dataset) -> dict[str, dict[str, Any]]:
    """How a level's coordinates are chunked: :data:`TIME_CHUNK` steps along time, whole along other dimensions."""
    return {
        str(name): {"chunks": tuple(TIME_CHUNK if d == "time" else n for d, n in zip(var.dims, var.shape, strict=True))}
        for name, var in coords.variables.items()
        if "time" in var.dims
    }


def data_attrs(plan: ArrayPlan, coord_names: Iterable[str]) -> dict[str, Any]:
    """Attributes of a level's virtual array: CF grid mapping, its coordinates, nodata and scale/offset."""
    attrs: dict[str, Any] = {
        "grid_mapping": "spatial_ref",
        "coordinates": " ".join(n for n in coord_names if n not in DIMS),
    }
    fill = plan.fill_value
    if fill is not None and not (isinstance(fill, float) and math.isnan(fill)):
        attrs["_FillValue"] = FillValueCoder.encode(fill, np.dtype(plan.dtype))  # as xarray stores it (base64 floats)
    if plan.scale_offset is not None:  # for readers that know CF only; the scale and offset coordinates say it all
        attrs["scale_factor"], attrs["add_offset"] = plan.scale_offset
    if plan.unit:
        attrs["units"] = plan.unit
    return attrs


SOURCE_COLUMNS = (
    *("item_id", "asset", "band", "datetime", "href", "etag", "properties", "bands", "fields", "updated", "digest"),
    "manifest",
)
"""The columns of the source table, in order."""


def source_row(s: Source, *, manifest: bool = True) -> tuple[str, ...]:
    """One source as a row of the source table (:data:`SOURCE_COLUMNS`); without ``manifest``, all but the last
    column (the manifest as JSON, most of a row's cost)."""
    row = (
        s.item_id,
        s.asset,
        s.band,
        s.datetime.isoformat(),
        s.manifest.href,
        s.manifest.etag or "",
        json.dumps(s.properties, sort_keys=True, default=str),
        json.dumps([b.to_dict() for b in s.bands]),
        json.dumps(list(s.fields), default=str),
        updated_of(s.properties),
        s.digest,
    )
    return (*row, json.dumps(s.manifest.to_dict(), separators=(",", ":"))) if manifest else row


def searched_now() -> str:
    """Now, as a commit's ``searched`` metadata keeps when its search started (UTC, ISO 8601): a refresh asks a STAC
    API only for what can be new or changed since then."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def searched_at(metadata: Mapping[str, Any]) -> datetime | None:
    """A commit's ``searched`` instant, None when it has none."""
    value = metadata.get("searched")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def updated_of(properties: Mapping[str, Any]) -> str:
    """An item's STAC ``updated`` as the source table keeps it ("" when it has none)."""
    value = properties.get("updated")
    return "" if value is None else str(value)


class StoredRow(NamedTuple):
    """What a refresh compares of a stored source, read without its manifest and properties (a named tuple: a
    refresh reads one per source, and making 100,000 frozen dataclasses was 0.3 s of reading them, under cProfile)."""

    item_id: str
    asset: str
    band: str
    href: str
    updated: str
    """The item's STAC ``updated`` ("" when none)."""
    digest: str
    """:func:`stackcube.sources.stac_digest` of what it was made from ("" in a cube written before)."""


ROW_COLUMNS = ("item_id", "asset", "band", "href", "updated", "digest")
"""The source table's columns a :class:`StoredRow` holds."""


def child_names(group: zarr.Group) -> set[str]:
    """The names of the nodes in ``group``, listed without reading them (zarr's ``array_keys`` reads every
    child's metadata: a dozen reads for the source table, seven for a level, each a round trip in Icechunk)."""

    async def listed() -> set[str]:
        return {str(name) async for name in group.store.list_dir(group.path)} - {"zarr.json"}

    return _sync.run(listed())


def read_source_rows(root: zarr.Group) -> tuple[StoredRow, ...]:
    """The source table's rows without manifests and properties (what a refresh compares), in order; a cube
    written before the ``updated`` and ``digest`` columns has theirs from the properties, and no digest."""
    if SOURCES not in root.group_keys():
        return ()
    node = cast("zarr.Group", root[SOURCES])
    present = child_names(node)
    names = [name for name in ROW_COLUMNS if name in present]
    if "updated" not in present:
        names.append("properties")
    columns = dict(zip(names, _sync.run(_read_columns(node, names)), strict=True))
    count = len(columns.get("item_id", []))
    if "updated" not in columns:
        columns["updated"] = [updated_of(json.loads(p)) for p in columns.pop("properties")]
    if "digest" not in columns:
        columns["digest"] = [""] * count
    with _collector_paused():
        return tuple(map(StoredRow._make, zip(*(columns[name] for name in ROW_COLUMNS), strict=True)))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while making many small objects that hold no cycles: every 700
    containers made run a collection, and every so many of those a full one over everything the process holds
    (100,000 rows took 0.17 s with it on, 0.035 s with it off, in a process holding an Icechunk session)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _read_columns(group: zarr.Group, names: Sequence[str]) -> list[list[str]]:
    """The text columns ``names`` of ``group``, read at once (one after another, a 100,000-row table's six
    columns took 0.18 s under cProfile), as lists of ``str``."""

    async def one(name: str) -> list[str]:
        array = await zarr.api.asynchronous.open_array(store=group.store, path=f"{group.path}/{name}", mode="r")
        return [str(v) for v in np.asarray(await array.getitem(...)).tolist()]

    return list(await asyncio.gather(*(one(name) for name in names)))


SOURCE_CHUNK = 4096
"""Rows per chunk of the source table: a refresh that appends rows rewrites the last chunk of each column."""
MANIFEST_CHUNK = 256
"""Rows per chunk of its ``manifest`` column: a TIFF manifest is kilobytes of JSON, and rewriting a last chunk of
1,000 of them took 60 ms of the 100 ms an append spent growing its coordinates and columns; reading the column
whole (a refresh that rewrites the cube) costs one chunk per 256 sources. A cube keeps the chunks it was built
with."""
TABLE_ENCODING = {
    name: {"chunks": (MANIFEST_CHUNK if name == "manifest" else SOURCE_CHUNK,)} for name in SOURCE_COLUMNS
}
"""How the source table is chunked (the same however many rows it has)."""


ID_INDEX = "id_hash"
"""The source table's id index: per row, :func:`id_hashes` of its item id (a cube written before has none)."""
WITHOUT_UPDATED = "without_updated"
"""Attribute of :data:`ID_INDEX`: how many rows have no STAC ``updated`` (a refresh asks a STAC API for the items
updated since its last search only when none lacks it, and knows it without reading the ``updated`` column)."""


def id_hashes(item_ids: Iterable[str]) -> np.ndarray:
    """Per item id, the first 8 bytes of its BLAKE2b as a ``uint64``: the same in every process and on every
    machine (Python's ``hash`` of a string is not). Two ids may share one (about once in 2**64 pairs): a lookup
    reads both rows and keeps the one it asked for.

    Examples
    --------
    >>> id_hashes(["S2B_35MNM_20200612_0_L2A"]).dtype
    dtype('uint64')
    """
    digest = hashlib.blake2b
    return np.fromiter(
        (int.from_bytes(digest(i.encode(), digest_size=8).digest(), "little") for i in item_ids), dtype=np.uint64
    )


def index_column(item_ids: Sequence[str], without_updated: int) -> xr.Variable:
    """The :data:`ID_INDEX` column of a source table whose rows have ``item_ids`` (in order), ``without_updated``
    of them without STAC ``updated``; chunked as the table's other columns, so an append rewrites its last chunk."""
    return xr.Variable(
        ("source",),
        id_hashes(item_ids),
        attrs={
            "description": "per row, the first 8 bytes of the BLAKE2b of its item id: the rows a refresh reads",
            WITHOUT_UPDATED: int(without_updated),
        },
        encoding={"chunks": (SOURCE_CHUNK,)},
    )


def id_index(sources: Sequence[Source]) -> xr.Variable:
    """The :data:`ID_INDEX` column of the source table of ``sources`` (its rows, in order): what a build writes
    beside the other columns (:func:`stackcube.store.layout.sources_table`), and an append after the stored rows.

    Examples
    --------
    >>> id_index([]).attrs[WITHOUT_UPDATED]
    0
    """
    without = sum(1 for s in sources if not updated_of(s.properties))
    return index_column([s.item_id for s in sources], without)


def sources_table(sources: Sequence[Source]) -> xr.Dataset:
    """The source table: one row per indexed (item, asset), with its TIFF manifest as JSON, and its id index (which
    rows hold which item: :func:`id_index`)."""

    rows = [source_row(s) for s in sources]
    columns = {
        name: ("source", np.array([row[i] for row in rows], dtype=object)) for i, name in enumerate(SOURCE_COLUMNS)
    }
    return xr.Dataset(
        {**columns, ID_INDEX: id_index(sources)},
        attrs={"description": "every indexed source and its TIFF manifest, so a refresh rereads no unchanged header"},
    )


def read_sources_table(root: zarr.Group) -> tuple[Source, ...]:
    """The sources :func:`sources_table` stored under ``root`` (none when the cube has no table)."""
    if SOURCES not in root.group_keys():
        return ()
    node = cast("zarr.Group", root[SOURCES])
    columns = {name: np.asarray(cast("Any", node[name])[...]) for name in node.array_keys()}
    return tuple(
        Source(
            item_id=str(columns["item_id"][i]),
            asset=str(columns["asset"][i]),
            band=str(columns["band"][i]),
            datetime=datetime.fromisoformat(str(columns["datetime"][i])),
            properties=json.loads(str(columns["properties"][i])),
            manifest=with_current_crs(TiffManifest.from_dict(json.loads(str(columns["manifest"][i])))),
            bands=tuple(BandMetadata.from_dict(b) for b in json.loads(str(columns["bands"][i])))
            if "bands" in columns
            else (),
            fields=tuple(json.loads(str(columns["fields"][i]))) if "fields" in columns else (),
            digest=str(columns["digest"][i]) if "digest" in columns else "",
        )
        for i in range(len(columns.get("item_id", [])))
    )


def union_tiles(members: Sequence[ArrayPlan]) -> xr.Dataset:
    """Where every tile of a union level's members lies (``members``: each member's plan at that level, in member
    order), for reads that fetch adjacent tiles of one file with one ranged GET: Icechunk keeps the same references
    in its manifests but cannot give them back (2.3), and reads them one GET per chunk.

    ``tiles`` has a row per member chunk (the members' chunk grids in C order, one member after another): the
    source's row in ``sources`` (-1: no tile there), and the tile's offset and length in it. ``sources`` holds,
    per source, its href and what a read of it is checked against (as JSON: validator, ETag, Last-Modified).
    """
    rows, known = [], {}
    sources: list[str] = []
    for plan in members:
        index = plan.source_index.ravel()
        mapped = np.full(index.shape, -1, np.int64)
        for i in np.unique(index[index >= 0]).tolist():
            key = (plan.sources.href[i], plan.sources.etag[i])
            if key not in known:
                known[key] = len(sources)
                sources.append(
                    json.dumps(
                        {
                            "href": plan.sources.href[i],
                            "validator": plan.sources.validator[i] or None,
                            "etag": plan.sources.etag[i] or None,
                            "last_modified": plan.sources.last_modified[i] or None,
                        }
                    )
                )
            mapped[index == i] = known[key]
        rows.append(np.stack([mapped, plan.offsets.ravel().astype(np.int64), plan.lengths.ravel().astype(np.int64)], 1))
    return xr.Dataset(
        {
            "tiles": (("tile", "field"), np.concatenate(rows) if rows else np.zeros((0, 3), np.int64)),
            "sources": ("source", np.array(sources, dtype=object)),
        },
        attrs={"description": "tile references of the union's members: source row, offset, length per chunk"},
    )
