"""Reading a cube: which snapshot (:class:`Version`), how (:class:`OpenOptions`), and its arrays as xarray objects.

Every read goes through :class:`~stackcube.store.guard.GuardedStore`, which retries transient failures and turns
Icechunk's refusal of a changed or deleted source (matched by its error kind) into
:class:`~stackcube.errors.SourceChangedError` naming the source.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self, TypedDict, cast
from urllib.parse import urlparse

import dask.base
import icechunk
import numpy as np
import xarray as xr
import zarr
import zarr.api.asynchronous
import zarr.errors
from xarray.backends.zarr import ZarrBackendEntrypoint

from stackcube import _sync
from stackcube._band_index import with_band_aliases
from stackcube._hrefs import credential_for, redact
from stackcube._keywords import check_keywords, keywords_of
from stackcube._physical import physical
from stackcube._retry import retry_sync
from stackcube.errors import (
    ArrayNotFoundError,
    RepositoryError,
    UntrustedSourceError,
)
from stackcube.options import BLOCK, Chunks
from stackcube.settings import Credentials, Settings, current, with_credentials
from stackcube.sources import Source
from stackcube.store.coords import LevelToOpen, open_levels
from stackcube.store.guard import GuardedStore
from stackcube.store.layout import (
    DATA,
    INLINE,
    SOURCES,
    TILES,
    ArrayLayout,
    CubeMetadata,
    StoredRow,
    data_path,
    level_path,
    read_source_rows,
    read_sources_table,
    searched_at,
)
from stackcube.store.repo import (
    RepoLike,
    check_allowed,
    open_repository,
    readonly_session,
    repo_url,
    with_containers,
)
from stackcube.union import SourceRef, TileRefs, UnionPlan, block_size, union_dataset

__all__ = [
    "OpenArgs",
    "OpenOptions",
    "ReadArgs",
    "StoredCube",
    "Version",
    "open_datatree",
    "open_level",
    "read_metadata",
    "read_stored",
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

    def given_credentials(self, settings: Settings) -> Credentials | None:
        """The credentials to read with: those given at open, else the settings' (process-wide) ones."""
        return self.credentials if self.credentials is not None else settings.credentials

    @classmethod
    def from_args(cls, args: Mapping[str, Any], where: str) -> Self:
        """The options a public reader ``where`` was called with; an unknown keyword is a TypeError naming it."""
        check_keywords(args, OPEN_KEYWORDS, where)
        allow = args.get("allow")
        return cls(
            version=Version(args.get("branch"), args.get("tag"), args.get("snapshot")),
            mask_and_scale=bool(args.get("mask_and_scale", True)),
            chunks=args.get("chunks"),
            allow=tuple(allow) if allow is not None else None,
            credentials=args.get("credentials"),
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
        root = _root(session, repo)  # a repository without a cube yet says so here
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
        raise RepositoryError(msg) from None


def _root(session: icechunk.Session, repo: RepoLike) -> zarr.Group:
    """The root group; a repository without one holds no cube yet (a first build that stopped before its commit)."""
    try:
        return zarr.open_group(session.store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        msg = (
            f"{repo} holds no cube yet (a build into it stopped before its first commit, or it is an empty Icechunk "
            "repository); run the build again into it"
        )
        raise RepositoryError(msg) from None


def read_metadata(repo: RepoLike, version: Version = Version(), *, settings: Settings | None = None) -> CubeMetadata:
    """The cube's root description (search, options, arrays, unions): one metadata read, no source touched."""
    session, _ = _session(repo, OpenOptions(version=version), settings)
    return CubeMetadata.from_attrs(_root(session, repo).attrs)


@dataclass(frozen=True)
class StoredCube:
    """What a committed cube says about how it was made: enough to refresh it without restating anything."""

    snapshot_id: str
    """The snapshot this was read from."""
    metadata: CubeMetadata
    """The search, options, arrays and unions."""
    rows: tuple[StoredRow, ...] = ()
    """Every indexed source as a refresh compares it (without its manifest), in the table's order."""
    layouts: dict[str, ArrayLayout] = field(default_factory=dict)
    """What each array's node says (its levels, grids and kept coordinates)."""
    root: zarr.Group | None = field(default=None, repr=False, compare=False)
    """The cube's root group, from which :attr:`sources` are read when first asked for."""
    searched: datetime | None = None
    """When the search of the last build or refresh that committed started (its commit's ``searched``); None when
    unknown (a commit by an earlier stackcube, or not asked)."""

    @functools.cached_property
    def sources(self) -> tuple[Source, ...]:
        """Every indexed source with its manifest, read on first use (the manifests are most of the table: a refresh
        that only appends never reads them)."""
        sources = read_sources_table(self.root) if self.root is not None else ()
        declared_hrefs((s.manifest.href for s in sources), self.metadata)
        return sources


def read_stored(
    session: icechunk.Session, repo: RepoLike | None = None, repository: icechunk.Repository | None = None
) -> StoredCube:
    """Read a cube's description, its arrays' layouts and its source table's rows from a session (no source is
    touched; the sources' manifests when :attr:`StoredCube.sources` is first used); ``repo`` names the repository
    in errors; with the ``repository``, when its last search ran (:attr:`StoredCube.searched`)."""
    root = _root(session, repo if repo is not None else "this repository")
    metadata = CubeMetadata.from_attrs(root.attrs)
    rows = read_source_rows(root)
    declared_hrefs((row.href for row in rows), metadata, repo)
    return StoredCube(
        snapshot_id=session.snapshot_id,
        metadata=metadata,
        rows=rows,
        layouts={name: ArrayLayout.from_attrs(cast("zarr.Group", root[name]).attrs) for name in metadata.arrays},
        root=root,
        searched=_last_search(repository, session.snapshot_id) if repository is not None else None,
    )


def declared_hrefs(hrefs: Iterable[str], metadata: CubeMetadata, repo: Any = "the cube") -> None:
    """Refuse a source table naming an href under none of the source prefixes the cube declares: refreshing or
    verifying a cube altered to send requests elsewhere asks nothing of anyone (every href a reader, verifier or
    refresher touches lies in a declared container, which ``allow=`` was checked against)."""
    prefixes = tuple(metadata.containers)
    if not prefixes:
        return  # (a cube without sources yet)
    for href in hrefs:
        if not href.startswith(prefixes):
            msg = (
                f"{repo}: its source table names {redact(href)}, under none of the source prefixes the cube "
                f"declares ({', '.join(prefixes)}); the cube was altered, and nothing was asked of that host"
            )
            raise UntrustedSourceError(msg)


def _last_search(repository: icechunk.Repository, snapshot_id: str) -> datetime | None:
    """The ``searched`` instant of the newest stackcube commit at or before ``snapshot_id`` (commits by others are
    passed over); None when that commit has none."""
    for snapshot in repository.ancestry(snapshot_id=snapshot_id):
        if "stackcube" in snapshot.metadata:
            return searched_at(snapshot.metadata)
    return None


def _xarray_chunks(chunks: Chunks) -> Any:
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
    store: Any,
    union: UnionPlan,
    level: int,
    options: OpenOptions,
    settings: Settings | None,
    *,
    snapshot: str,
    metadata: CubeMetadata,
) -> xr.Dataset:
    members = _sync.run(_open_arrays(store, [data_path(m, level) for m in union.members]))
    return with_band_aliases(
        union_dataset(
            union,
            members,
            level=level,
            chunks=options.chunks,
            mask_and_scale=options.mask_and_scale,
            settings=settings,
            token=snapshot,
            refs=lambda: _tile_refs(store, level_path(union.name, level), metadata, options, settings or current()),
        )
    )


async def _open_arrays(store: Any, paths: Sequence[str]) -> list[zarr.Array[Any]]:
    """The arrays at ``paths``, their metadata read concurrently (a union has hundreds of members)."""
    opened = await asyncio.gather(
        *(zarr.api.asynchronous.open_array(store=store, path=path, mode="r", zarr_format=3) for path in paths)
    )
    return [zarr.Array(cast("Any", array)) for array in opened]


def _tile_refs(
    store: Any, path: str, metadata: CubeMetadata, options: OpenOptions, settings: Settings
) -> TileRefs | None:
    """A union level's tile table (:func:`~stackcube.store.layout.union_tiles`), for reads by merged ranged GETs;
    None for a cube written before it, or where a source takes a credential only Icechunk can use (an Icechunk
    S3 or GCS credential, a refreshable Azure token): those tiles are read through Icechunk, one GET each."""
    try:
        group = zarr.open_group(store, path=path, mode="r")
        if not set(TILES) <= set(group.array_keys()):
            return None
        tiles, sources = (np.asarray(cast("Any", group[name])[...]) for name in TILES)
    except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None
    credentials = options.given_credentials(settings)
    where = store.repo if isinstance(store, GuardedStore) else "the cube"
    refs = []
    for text in sources.tolist():
        source = json.loads(str(text))
        href = str(source["href"])
        prefix = _declared(href, metadata, where, path)
        account = metadata.accounts.get(prefix)
        given = credential_for(prefix, credentials, account)
        scheme = urlparse(href).scheme
        if (
            given is not None
            and scheme not in {"http", "https"}
            and not (scheme == "az" and isinstance(given, Mapping) and "sas_token" in given)
        ):
            return None
        modified = source.get("last_modified")
        refs.append(
            SourceRef(
                href,
                source.get("validator"),
                etag=source.get("etag"),
                last_modified=datetime.fromisoformat(modified) if modified else None,
                account=account,
            )
        )
    if options.allow is not None:  # each declared prefix once (every href lies under one), before any request
        check_allowed(metadata.containers, options.allow, where)
    return TileRefs(
        tiles,
        tuple(refs),
        with_credentials(settings, credentials),
        repo=store.repo if isinstance(store, GuardedStore) else None,
    )


def _declared(href: str, metadata: CubeMetadata, repo: Any, path: str) -> str:
    """The container of the cube's that holds ``href`` (a source a union's tile table names); a tile table is the
    cube's own word, so an href under no declared container (a cube altered to send readers elsewhere) is refused
    before any request (the declared containers were checked against ``allow=``)."""
    prefix = max((p for p in metadata.containers if href.startswith(p)), key=len, default=None)
    if prefix is None:
        msg = (
            f"{repo}: the tile table of {path} names {redact(href)}, under none of the source prefixes the cube "
            f"declares ({', '.join(metadata.containers) or 'none'}); the cube was altered, and nothing was read"
        )
        raise UntrustedSourceError(msg)
    return prefix


def _levels(store: Any, levels: list[LevelToOpen], snapshot: str, options: OpenOptions) -> list[xr.Dataset]:
    """``levels`` opened as :meth:`stackcube.Cube.open` presents them: chunked as asked, physical values (unless
    raw asked), bands selectable by common name."""
    opened = open_levels(store, levels, mask_and_scale=_cf(options), physical=options.mask_and_scale)
    if options.chunks is not False:
        # only the data is dask: the coordinates stay lazy NumPy (item properties and provenance read when used,
        # and no dask graph per coordinate to slice with every selection)
        opened = [_chunked(ds, level.path, snapshot, options) for level, ds in zip(levels, opened, strict=True)]
    if options.mask_and_scale:
        opened = [ds.assign({DATA: physical(ds[DATA])}) for ds in opened]
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
    """
    options = options or OpenOptions()
    session, prefixes = _session(repo, options, settings)
    store = GuardedStore(session.store, settings or current(), prefixes, repo_url(repo))
    root = _root(session, repo)
    metadata = CubeMetadata.from_attrs(root.attrs)
    nodes: dict[str, xr.Dataset] = {"/": xr.Dataset(attrs={**root.attrs, "snapshot_id": session.snapshot_id})}
    if SOURCES in root.group_keys():
        nodes[SOURCES] = xr.open_dataset(
            cast("Any", store), group=SOURCES, chunks=_xarray_chunks(options.chunks), **_OPEN
        )
    levels = []
    for array in metadata.arrays:
        group = cast("zarr.Group", root[array])
        layout = ArrayLayout.from_attrs(group.attrs)
        nodes[array] = xr.Dataset(attrs={k: v for k, v in group.attrs.items() if k != INLINE})
        levels += [LevelToOpen(level_path(array, int(n)), layout, int(n)) for n in sorted(group.group_keys(), key=int)]
    for level, ds in zip(levels, _levels(store, levels, session.snapshot_id, options), strict=True):
        nodes[level.path] = ds
    for union in metadata.unions:
        for n in range(union.n_levels):
            nodes[level_path(union.name, n)] = _union_level(
                store, union, n, options, settings, snapshot=session.snapshot_id, metadata=metadata
            )
    return xr.DataTree.from_dict(nodes)


def _array_name(metadata: CubeMetadata, array: str | None, repo: RepoLike) -> str:
    """The array asked for, or the cube's only one; an ArrayNotFoundError lists the arrays there are."""
    names = metadata.array_names
    if array is None:
        if len(names) != 1:
            msg = f"{repo} holds {len(names)} arrays ({', '.join(names)}); pass array= one of them"
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
    options = options or OpenOptions()
    session, prefixes = _session(repo, options, settings)
    store = GuardedStore(session.store, settings or current(), prefixes, repo_url(repo))
    metadata = CubeMetadata.from_attrs(_root(session, repo).attrs)
    array = _array_name(metadata, array, repo)
    union = metadata.union(array)
    if union is not None:
        _check_level(array, level, union.n_levels)
        return _union_level(store, union, level, options, settings, snapshot=session.snapshot_id, metadata=metadata)[
            DATA
        ].rename(array)
    layout = ArrayLayout.from_attrs(zarr.open_group(session.store, path=array, mode="r").attrs)
    _check_level(array, level, len(layout.levels) or 1)
    (ds,) = _levels(store, [LevelToOpen(level_path(array, level), layout, level)], session.snapshot_id, options)
    return ds[DATA].rename(array)
