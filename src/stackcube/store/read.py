"""Reading a cube: which snapshot (:class:`Version`), how (:class:`OpenOptions`), and its arrays as xarray objects:
a DataTree of every array, level and union (:func:`open_datatree`), or one level of one (:func:`open_level`).

Every read goes through :class:`~stackcube.store.guard.GuardedStore`, which retries transient failures and turns
Icechunk's refusal of a changed or deleted source (matched by its error kind) into
:class:`~stackcube.errors.SourceChangedError` naming the source. What the cube says about how it was made is read
by :mod:`stackcube.store.stored`; a union level's tile table, checked against the containers the cube declares and
``allow=``, by :mod:`stackcube.store.tiles`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypedDict, cast

import dask.base
import icechunk
import xarray as xr
import zarr
import zarr.api.asynchronous
from xarray.backends.zarr import ZarrBackendEntrypoint

from stackcube import _sync
from stackcube._band_index import with_band_aliases
from stackcube._keywords import check_keywords, keywords_of
from stackcube._physical import physical
from stackcube._retry import retry_sync
from stackcube.errors import ArrayNotFoundError, RepositoryError, caused_by
from stackcube.options import BLOCK, Chunks
from stackcube.settings import Credentials, Settings, current
from stackcube.store.coords import LevelToOpen, open_levels
from stackcube.store.guard import GuardedStore
from stackcube.store.layout import DATA, INLINE, SOURCES, ArrayLayout, CubeMetadata, data_path, level_path
from stackcube.store.repo import (
    RepoLike,
    check_allowed,
    open_repository,
    readonly_session,
    repo_url,
    with_containers,
)
from stackcube.store.stored import open_root
from stackcube.store.tiles import read_tile_refs
from stackcube.union import TileRefs, UnionPlan, block_size, union_dataset

__all__ = [
    "OpenArgs",
    "OpenOptions",
    "ReadArgs",
    "Version",
    "open_datatree",
    "open_level",
    "open_level_dataset",
    "read_metadata",
]


@dataclass(frozen=True, slots=True)
class Version:
    """Which snapshot of a repository to read: a branch's tip (by default ``main``), a tag, or a snapshot id."""

    branch: str | None = None
    """A branch: its latest snapshot."""
    tag: str | None = None
    """A tag."""
    snapshot: str | None = None
    """A snapshot id."""

    def __post_init__(self) -> None:
        given = [name for name in ("branch", "tag", "snapshot") if getattr(self, name) is not None]
        if len(given) > 1:
            msg = f"give at most one of branch, tag and snapshot, not {' and '.join(given)}"
            raise ValueError(msg)

    def session(self, repository: icechunk.Repository, repo: RepoLike | None = None) -> icechunk.Session:
        """A read-only session on this version (:class:`~stackcube.errors.VersionNotFoundError` listing the
        branches and tags when the repository has no such version)."""
        return readonly_session(repository, branch=self.branch, tag=self.tag, snapshot=self.snapshot, repo=repo)


class ReadArgs(TypedDict, total=False):
    """How arrays are presented: the keywords of :meth:`stackcube.Cube.open`."""

    mask_and_scale: bool
    """Nodata as NaN and scale/offset applied (default); False gives the stored values."""
    chunks: Chunks
    """None: dask chunks of whole source tiles, about 2048 pixels square, one date and band each;
    ``{"y": 512, "x": 512}``: those chunks; False: no dask."""
    allow: Sequence[str] | None
    """URL prefixes the cube may read sources from; a cube pointing elsewhere is refused before any read."""
    credentials: Credentials | None
    """What reading the sources takes, given at open and never stored: per container prefix (``stackcube info``
    lists them), an Icechunk credential (``icechunk.s3_credentials(...)``, refreshable ones included) or, for an
    http(s) prefix, request headers (``{"Authorization": "Bearer ..."}``); or a callable from prefix to one."""
    members: bool
    """:func:`stackcube.open_cube` only: also put every union member's levels in the tree, each opened (slow for
    thousands of members: about 6 ms a member level); by default a union lists its members (``tree[U].attrs
    ["members"]``) and ``open_dataarray(repo, member)`` opens one."""


class OpenArgs(ReadArgs, total=False):
    """Which version, and how: the keywords of :func:`stackcube.open_cube` and :func:`stackcube.open_dataarray`."""

    branch: str | None
    """Read a branch's latest snapshot (default ``main``)."""
    tag: str | None
    """Read a tagged snapshot."""
    snapshot: str | None
    """Read a snapshot by id."""


OPEN_KEYWORDS = keywords_of(OpenArgs)
"""The names :class:`OpenArgs` declares."""


@dataclass(frozen=True, slots=True)
class OpenOptions:
    """:class:`OpenArgs` checked and gathered in one object, so that no reader can drop one on the way."""

    version: Version = Version()
    """Which snapshot."""
    mask_and_scale: bool = True
    """Nodata as NaN and scale/offset applied."""
    chunks: Chunks = None
    """How opened arrays are chunked (:data:`stackcube.options.Chunks`)."""
    allow: tuple[str, ...] | None = None
    """URL prefixes the cube may read sources from."""
    credentials: Credentials | None = None
    """What reading the sources takes, per container prefix (:data:`stackcube.store.Credentials`)."""
    members: bool = False
    """:func:`open_datatree` only: also open every union member's levels as nodes of the tree."""

    def given_credentials(self, settings: Settings) -> Credentials | None:
        """The credentials to read with: those given at open, else the settings' (process-wide) ones."""
        return self.credentials if self.credentials is not None else settings.credentials

    @classmethod
    def from_args(cls, args: OpenArgs, where: str) -> Self:
        """The options a public reader ``where`` was called with; an unknown keyword is a TypeError naming it."""
        check_keywords(args, OPEN_KEYWORDS, where)
        if "members" in args and where != "open_cube":  # the tree's alone: one array never holds a union's members
            msg = f"{where}() takes no members=: open_cube(repo, members=True) puts a union's members in the tree"
            raise TypeError(msg)
        allow = args.get("allow")
        return cls(
            version=Version(args.get("branch"), args.get("tag"), args.get("snapshot")),
            mask_and_scale=bool(args.get("mask_and_scale", True)),
            chunks=args.get("chunks"),
            # one prefix given as a string is that prefix, not its characters
            allow=((allow,) if isinstance(allow, str) else tuple(allow)) if allow is not None else None,
            credentials=args.get("credentials"),
            members=bool(args.get("members", False)),
        )


def _session(
    repo: RepoLike, options: OpenOptions, settings: Settings | None
) -> tuple[icechunk.Session, tuple[str, ...]]:
    """A read-only session on the version asked for, with a container for every prefix the cube lists (a
    concurrent writer's configuration cannot take one away), and those prefixes; transient failures are retried."""
    settings = settings or current()
    credentials = options.given_credentials(settings)

    def attempt() -> tuple[icechunk.Session, tuple[str, ...]]:
        repository = open_repository(
            repo, allow=options.allow, reading=True, credentials=credentials, settings=settings
        )
        session = options.version.session(repository, repo)
        known = tuple((repository.config.virtual_chunk_containers or {}).keys())
        root = open_root(session, repo)  # a repository without a cube yet says so here
        try:
            metadata = CubeMetadata.from_attrs(root.attrs)
        except RepositoryError:  # a root that is not a stackcube cube: its readers say so
            return session, known
        if set(metadata.containers) <= set(known) and not (metadata.accounts and credentials is not None):
            return session, known
        if options.allow is not None:
            check_allowed(metadata.containers, options.allow, repo)
        repository = with_containers(repository, metadata.containers, settings, credentials, metadata.accounts)
        return repository.readonly_session(snapshot_id=session.snapshot_id), (*known, *metadata.containers)

    try:
        return retry_sync(attempt, settings)
    except icechunk.IcechunkError as exc:
        msg = f"could not open {repo}: {exc.message.splitlines()[0] if exc.message else exc}"
        failure = caused_by(RepositoryError(msg), exc)  # the rest of Icechunk's text, redacted
    raise failure  # outside the except block: Icechunk's own error is no __context__ of ours


def read_metadata(repo: RepoLike, version: Version = Version(), *, settings: Settings | None = None) -> CubeMetadata:
    """The cube's root description (search, options, arrays, unions): one metadata read, no source touched."""
    session, _ = _session(repo, OpenOptions(version=version), settings)
    return CubeMetadata.from_attrs(open_root(session, repo).attrs)


def _xarray_chunks(chunks: Chunks) -> dict[str, int] | None:
    """None: dask, the stored chunks; False: no dask (a read is one Zarr call fetching its tiles at once)."""
    if chunks is None:
        return {}
    return None if chunks is False else dict(chunks)


def _dask_chunks(chunks: Chunks, data: xr.Variable) -> dict[str, int]:
    """The dask chunks of a level's (time, band, y, x) data: ``chunks`` where given, else the stored chunks (one
    tile, date and band); by default (None) whole tiles to about :data:`~stackcube.options.BLOCK` pixels along y and
    x, one date and band each: a task reads its tiles concurrently (a dask task costs more than a tile in flight),
    and a selection of dates or bands, by list too, never reads others (dask narrows a chunk's read to a slice of
    it, not to a list of dates)."""
    stored = {str(d): int(c) for d, c in zip(data.dims, data.encoding.get("chunks") or data.shape, strict=True)}
    if chunks is not None:
        return {**stored, **dict(cast("Mapping[str, int]", chunks))}
    return {"time": 1, "band": 1, "y": block_size(stored["y"], BLOCK), "x": block_size(stored["x"], BLOCK)}


_OPEN: dict[str, Any] = {
    # the backend's class, not its name: a name makes xarray load every installed backend's entry point first
    # (rioxarray's imports rasterio and boto3: a tenth of a second of a cold open)
    "engine": ZarrBackendEntrypoint,
    "consolidated": False,
    "zarr_format": 3,
    "decode_coords": "all",
}


def _cf(options: OpenOptions) -> bool | dict[str, bool]:
    """xarray's CF masking and scaling: for every variable but the data, which :func:`physical` decodes with the
    scale and offset of each time step and band."""
    return {DATA: False} if options.mask_and_scale else False


def _union_level(
    store: GuardedStore,
    union: UnionPlan,
    level: int,
    options: OpenOptions,
    settings: Settings | None,
    *,
    snapshot: str,
    metadata: CubeMetadata,
) -> xr.Dataset:
    """A union's ``level`` as :meth:`stackcube.Cube.open` presents it: its members' arrays laid over one another, the
    tiles of all of them read by merged ranged GETs where its tile table allows (:func:`read_tile_refs`, read when
    first needed)."""
    members = _sync.run(_open_arrays(store, [data_path(m, level) for m in union.members]))
    # the settings in force at open (a dask worker thread, where the table is first read, has no with block's)
    given = settings or current()

    def refs() -> TileRefs | None:  # at the first read, which first needs the table
        return read_tile_refs(
            store,
            level_path(union.name, level),
            metadata,
            allow=options.allow,
            credentials=options.given_credentials(given),
            settings=given,
        )

    return with_band_aliases(
        union_dataset(
            union,
            members,
            level=level,
            chunks=options.chunks,
            mask_and_scale=options.mask_and_scale,
            settings=settings,
            token=snapshot,
            refs=refs,
        )
    )


async def _open_arrays(store: GuardedStore, paths: Sequence[str]) -> list[zarr.Array[Any]]:
    """The arrays at ``paths``, their metadata read concurrently (a union has hundreds of members)."""
    opened = await asyncio.gather(
        *(zarr.api.asynchronous.open_array(store=store, path=path, mode="r", zarr_format=3) for path in paths)
    )
    return [zarr.Array(array) for array in opened]


def _levels(store: GuardedStore, levels: list[LevelToOpen], snapshot: str, options: OpenOptions) -> list[xr.Dataset]:
    """``levels`` opened as :meth:`stackcube.Cube.open` presents them: chunked as asked, physical values (unless
    raw asked), bands selectable by common name."""
    opened = open_levels(store, levels, mask_and_scale=_cf(options), physical=options.mask_and_scale)
    preferred = [_dask_chunks(None, ds[DATA].variable) for ds in opened]
    if options.chunks is not False:
        # only the data is dask: the coordinates stay lazy NumPy (item properties and provenance read when used,
        # and no dask graph per coordinate to slice with every selection)
        opened = [_chunked(ds, level.path, snapshot, options) for level, ds in zip(levels, opened, strict=True)]
    if options.mask_and_scale:
        opened = [ds.assign({DATA: physical(ds[DATA])}) for ds in opened]
    if options.chunks is False:  # what xarray's ``chunks={}`` makes of it (an open through the engine): our default
        for ds, chunks in zip(opened, preferred, strict=True):
            ds[DATA].encoding["preferred_chunks"] = chunks
    return [with_band_aliases(ds) for ds in opened]


def _chunked(ds: xr.Dataset, path: str, snapshot: str, options: OpenOptions) -> xr.Dataset:
    """``ds`` with its data as a dask array of :func:`_dask_chunks`, named after what it is (the snapshot, the
    level, the chunks), as xarray names what it opens."""
    data = ds[DATA].variable
    chunks = _dask_chunks(options.chunks, data)
    name = f"open_dataset-{DATA}-{dask.base.tokenize(snapshot, path, chunks)}"
    return ds.assign({DATA: data.chunk(chunks, name=name)})


def open_datatree(
    repo: RepoLike, options: OpenOptions | None = None, *, settings: Settings | None = None
) -> xr.DataTree:
    """Open a cube lazily: one child per stored array with its levels, one per union, and the source table.

    Reads the repository's snapshot and nothing else: every level's coordinates read at open are kept in its array
    node (:mod:`stackcube.store.coords`); the rest (item properties, provenance, the source table) is read when
    used.

    A union's members are listed, not opened: the union's node ``U`` names them (``attrs["members"]``) and
    :func:`open_level` opens one, as the tree with ``options.members`` holds it. A DataTree's nodes are Datasets,
    built when the tree is: xarray has no lazy node, and a DataTree subclass opening nodes on access would not
    survive the operations that build new trees (``copy``, ``map_over_datasets``, ``isel``). Opening each member
    level costs about 6 ms (xarray's decoding and coordinates, ``physical``, its dask array, its tree node): 18 s
    for a union of 2,000 scenes on 2 cores, whose reads go through the union anyway. ``options.members`` gives the
    whole tree.
    """
    options = options or OpenOptions()
    session, prefixes = _session(repo, options, settings)
    store = GuardedStore(session.store, settings or current(), prefixes, repo_url(repo))
    root = open_root(session, repo)
    metadata = CubeMetadata.from_attrs(root.attrs)
    nodes: dict[str, xr.Dataset] = {"/": xr.Dataset(attrs={**root.attrs, "snapshot_id": session.snapshot_id})}
    if SOURCES in root:  # one node looked up (listing the root's groups reads every member's: 0.4 ms each)
        nodes[SOURCES] = xr.open_dataset(
            cast("Any", store),  # xarray's zarr backend takes a zarr Store, which its signature does not list
            group=SOURCES,
            chunks=_xarray_chunks(options.chunks),
            **_OPEN,
        )
    levels = []
    listed = frozenset() if options.members else metadata.members  # once: a property built on each call
    for array in metadata.arrays:
        if array in listed:
            continue
        group = cast("zarr.Group", root[array])
        layout = ArrayLayout.from_attrs(group.attrs)
        nodes[array] = xr.Dataset(attrs={k: v for k, v in group.attrs.items() if k != INLINE})
        levels += [LevelToOpen(level_path(array, int(n)), layout, int(n)) for n in sorted(group.group_keys(), key=int)]
    for level, ds in zip(levels, _levels(store, levels, session.snapshot_id, options), strict=True):
        nodes[level.path] = ds
    for union in metadata.unions:
        nodes[union.name] = xr.Dataset(attrs={"union": union.name, "members": list(union.members)})
        for n in range(union.n_levels):
            nodes[level_path(union.name, n)] = _union_level(
                store, union, n, options, settings, snapshot=session.snapshot_id, metadata=metadata
            )
    return xr.DataTree.from_dict(nodes)


def _array_name(metadata: CubeMetadata, array: str | None, repo: RepoLike, keyword: str = "array") -> str:
    """The array asked for, or the cube's only one; an ArrayNotFoundError lists the arrays there are (and says to
    pass the ``keyword`` the caller names an array with)."""
    names = metadata.array_names
    if array is None:
        if len(names) != 1:
            msg = f"{repo} holds {len(names)} arrays ({', '.join(names)}); pass {keyword}= one of them"
            raise ArrayNotFoundError(msg)
        return names[0]
    if array not in names and array not in metadata.members:
        msg = f"{repo} has no array {array!r}; it has: {', '.join(names)}"
        raise ArrayNotFoundError(msg)
    return array


def _check_level(array: str, level: int, count: int) -> None:
    if not 0 <= level < count:
        msg = f"array {array} has levels {', '.join(map(str, range(count)))} (0 is full resolution), not {level}"
        raise ArrayNotFoundError(msg)


def open_level(
    repo: RepoLike,
    array: str | None = None,
    level: int = 0,
    options: OpenOptions | None = None,
    *,
    settings: Settings | None = None,
) -> xr.DataArray:
    """Open one level of one array (a stored array or a union) as a DataArray named after the array, reading the
    metadata of that node only.

    ``array`` may be None when the cube has one. Errors name the arrays and levels there are.
    """
    ds = open_level_dataset(repo, array, level, options, settings=settings)
    return ds[DATA].rename(ds.attrs["array"])


def open_level_dataset(
    repo: RepoLike,
    array: str | None = None,
    level: int = 0,
    options: OpenOptions | None = None,
    *,
    settings: Settings | None = None,
    keyword: str = "array",
) -> xr.Dataset:
    """:func:`open_level`'s level as the Dataset of its group: ``data`` and its coordinates (the array's name, the
    one asked for or the cube's only one, in ``attrs["array"]``). ``keyword``: what the caller names an array with,
    for errors."""
    options = options or OpenOptions()
    session, prefixes = _session(repo, options, settings)
    store = GuardedStore(session.store, settings or current(), prefixes, repo_url(repo))
    metadata = CubeMetadata.from_attrs(open_root(session, repo).attrs)
    array = _array_name(metadata, array, repo, keyword)
    union = metadata.union(array)
    if union is not None:
        _check_level(array, level, union.n_levels)
        ds = _union_level(store, union, level, options, settings, snapshot=session.snapshot_id, metadata=metadata)
    else:
        layout = ArrayLayout.from_attrs(zarr.open_group(session.store, path=array, mode="r").attrs)
        _check_level(array, level, len(layout.levels) or 1)
        (ds,) = _levels(store, [LevelToOpen(level_path(array, level), layout, level)], session.snapshot_id, options)
    return ds.assign_attrs(array=array)
