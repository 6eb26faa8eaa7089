"""The stored cube: what a committed cube says about how it was made (:class:`StoredCube`), read without touching a
source, and the rule its source table is held to: every href it names lies in a container the cube declares.

A refresh and a verification start here (:func:`read_stored`); readers open the same root group
(:func:`open_root`).

The source table's id index (:data:`ID_INDEX`) lets a refresh read only the rows of the items its search found
(:meth:`StoredCube.rows_of`): per row, a 64-bit hash of its item id (:func:`id_hashes`), a column as long as the
table, so that an append adds its rows' hashes as it adds their other columns. A build writes it beside the other
columns (:func:`id_index`), an append keeps it (:mod:`stackcube.store.append`); a cube written before has none, and
its rows are read whole, as before.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, cast

import icechunk
import numpy as np
import zarr
import zarr.api.asynchronous
import zarr.errors

from stackcube import _sync
from stackcube._hrefs import redact
from stackcube.errors import RepositoryError, UntrustedSourceError
from stackcube.sources import Source
from stackcube.store.containers import check_allowed
from stackcube.store.layout import (
    ID_INDEX,
    ROW_COLUMNS,
    SOURCES,
    WITHOUT_UPDATED,
    ArrayLayout,
    CubeMetadata,
    StoredRow,
    child_names,
    id_hashes,
    read_source_rows,
    read_sources_table,
    searched_at,
)
from stackcube.store.repo import RepoLike, is_stage

__all__ = [
    "RowIndex",
    "RowsRead",
    "StoredCube",
    "declared_hrefs",
    "open_root",
    "read_row_index",
    "read_stored",
]


@dataclass(frozen=True, slots=True)
class RowIndex:
    """A source table's id index, read: which rows hold which items, without reading the rows."""

    hashes: np.ndarray
    """Per row, :func:`id_hashes` of its item id."""
    without_updated: int
    """Rows without STAC ``updated``."""

    def positions(self, item_ids: Iterable[str]) -> np.ndarray:
        """The rows (ascending) whose item id hashes as one of ``item_ids``: theirs, and a colliding one's."""
        return np.flatnonzero(np.isin(self.hashes, id_hashes(item_ids)))


class RowsRead(NamedTuple):
    """Stored rows, and how many rows of the source table were read to find them."""

    rows: tuple[StoredRow, ...]
    read: int


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
    index: RowIndex | None = None
    """The source table's id index, when the cube was read without its rows (``read_stored(rows=False)``) and has
    one; then :attr:`rows` is empty and :meth:`rows_of` reads the rows asked for. None: :attr:`rows` holds all."""

    @property
    def count(self) -> int:
        """Rows in the source table (one per indexed item and asset)."""
        return len(self.index.hashes) if self.index is not None else len(self.rows)

    @property
    def all_updated(self) -> bool:
        """Whether the cube has sources, each with a STAC ``updated``."""
        if self.index is not None:
            return self.count > 0 and self.index.without_updated == 0
        return bool(self.rows) and all(row.updated for row in self.rows)

    def rows_of(self, item_ids: Iterable[str] | None, repo: RepoLike = "the cube") -> RowsRead:
        """The stored rows of the items ``item_ids`` (all rows for None), in the table's order, and how many rows
        were read for them: through the id index, only theirs; without one, every row (read already).

        Raises UntrustedSourceError when a row read names an href under none of the containers the cube declares
        (:func:`declared_hrefs`; ``repo`` as the error names it).
        """
        if self.index is None:
            wanted = None if item_ids is None else set(item_ids)
            rows = self.rows if wanted is None else tuple(r for r in self.rows if r.item_id in wanted)
            return RowsRead(rows, len(self.rows))
        if item_ids is None or self.root is None:
            rows = read_source_rows(self.root) if self.root is not None else ()
            declared_hrefs((row.href for row in rows), self.metadata, repo)
            return RowsRead(rows, len(rows))
        wanted = set(item_ids)
        positions = self.index.positions(wanted)
        read = _read_rows_at(cast("zarr.Group", self.root[SOURCES]), positions) if len(positions) else ()
        declared_hrefs((row.href for row in read), self.metadata, repo)
        return RowsRead(tuple(row for row in read if row.item_id in wanted), len(read))

    @functools.cached_property
    def sources(self) -> tuple[Source, ...]:
        """Every indexed source with its manifest, read on first use (the manifests are most of the table: a refresh
        that only appends never reads them)."""
        sources = read_sources_table(self.root) if self.root is not None else ()
        declared_hrefs((s.manifest.href for s in sources), self.metadata)
        return sources


def open_root(session: icechunk.Session, repo: RepoLike) -> zarr.Group:
    """The cube's root group, read-only; a repository without one holds no cube yet (a first build that stopped
    before its commit), which the RepositoryError says, naming ``repo``.

    Examples
    --------
    >>> import stackcube
    >>> repository = stackcube.store.memory_repository()
    >>> open_root(repository.readonly_session(branch="main"), "memory")
    Traceback (most recent call last):
    ...
    stackcube.errors.RepositoryError: memory holds no cube yet (...); run the build again into it
    """
    try:
        return zarr.open_group(session.store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        msg = (
            f"{repo} holds no cube yet (a build into it stopped before its first commit, or it is an empty Icechunk "
            "repository); run the build again into it"
        )
        raise RepositoryError(msg) from None


def read_stored(
    session: icechunk.Session,
    repo: RepoLike | None = None,
    repository: icechunk.Repository | None = None,
    *,
    allow: Iterable[str] | None = None,
    rows: bool = True,
) -> StoredCube:
    """Read a cube's description, its arrays' layouts and its source table's rows from a session (no source is
    touched; the sources' manifests when :attr:`StoredCube.sources` is first used).

    Parameters
    ----------
    session
        A session on the snapshot to read.
    repo
        The repository as errors name it.
    repository
        The repository itself: with it, when the cube's last search ran (:attr:`StoredCube.searched`).
    allow
        URL prefixes the caller trusts: the containers the cube declares (its root attributes, which the source
        table is checked against) must lie under them, as for an open.
    rows
        Read every row of the source table (the default). False: read its id index instead, when it has one
        (:attr:`StoredCube.index`), and the rows asked for later (:meth:`StoredCube.rows_of`), each checked then;
        a cube without one has its rows read now.

    Raises UntrustedSourceError when the cube declares a container outside ``allow``, or its source table names an
    href under none of the containers it declares (:func:`declared_hrefs`).

    Examples
    --------
    >>> from stackcube.store import open_repository, readonly_session
    >>> repository = open_repository("demo-output/cube.icechunk")  # doctest: +SKIP
    >>> stored = read_stored(readonly_session(repository), "demo-output/cube.icechunk", repository)  # doctest: +SKIP
    >>> stored.metadata.array_names, len(stored.rows)  # doctest: +SKIP
    (['EPSG32735_10m', 'EPSG32735_20m'], 24)
    """
    root = open_root(session, repo if repo is not None else "this repository")
    metadata = CubeMetadata.from_attrs(root.attrs)
    if allow is not None:  # the prefixes its tables are checked against, as an open checks them
        check_allowed(metadata.containers, allow, repo if repo is not None else "the cube")
    index = None if rows else read_row_index(root)
    table = read_source_rows(root) if index is None else ()
    declared_hrefs((row.href for row in table), metadata, repo if repo is not None else "the cube")
    return StoredCube(
        snapshot_id=session.snapshot_id,
        metadata=metadata,
        rows=table,
        index=index,
        layouts={name: ArrayLayout.from_attrs(cast("zarr.Group", root[name]).attrs) for name in metadata.arrays},
        root=root,
        searched=_last_search(repository, session.snapshot_id) if repository is not None else None,
    )


def declared_hrefs(hrefs: Iterable[str], metadata: CubeMetadata, repo: RepoLike = "the cube") -> None:
    """Refuse a source table naming an href under none of the source prefixes the cube declares: refreshing or
    verifying a cube altered to send requests elsewhere asks nothing of anyone (every href a reader, verifier or
    refresher touches lies in a declared container, which ``allow=`` was checked against).

    Examples
    --------
    >>> import stackcube
    >>> tree = stackcube.open_cube("demo-output/cube.icechunk")  # doctest: +SKIP
    >>> declared_hrefs(["https://elsewhere.example/a.tif"], CubeMetadata.from_attrs(tree.attrs))  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    stackcube.errors.UntrustedSourceError: the cube: its source table names https://elsewhere.example/a.tif, ...
    """
    prefixes = tuple(metadata.containers)
    for href in hrefs:
        if not prefixes or not href.startswith(prefixes):  # (only a cube without sources declares none)
            msg = (
                f"{repo}: its source table names {redact(href)}, under none of the source prefixes the cube "
                f"declares ({', '.join(prefixes)}); the cube was altered, and nothing was asked of that host"
            )
            raise UntrustedSourceError(msg)


def _last_search(repository: icechunk.Repository, snapshot_id: str) -> datetime | None:
    """The ``searched`` instant of the newest stackcube commit at or before ``snapshot_id`` (commits by others and
    a build's stages are passed over); None when that commit has none."""
    for snapshot in repository.ancestry(snapshot_id=snapshot_id):
        if "stackcube" in snapshot.metadata and not is_stage(snapshot.metadata):
            return searched_at(snapshot.metadata)
    return None


def read_row_index(root: zarr.Group) -> RowIndex | None:
    """The source table's id index under ``root``; None when it has none (a cube written before it), or one that
    does not match its rows (an earlier stackcube appended rows without their hashes): its rows are read whole."""
    if SOURCES not in root:  # one node looked up
        return None
    node = cast("zarr.Group", root[SOURCES])
    present = child_names(node)
    if ID_INDEX not in present or not set(ROW_COLUMNS) <= present:
        return None

    async def read() -> tuple[Any, Any]:
        index, ids = await asyncio.gather(
            *(
                zarr.api.asynchronous.open_array(store=node.store, path=f"{node.path}/{name}", mode="r")
                for name in (ID_INDEX, "item_id")
            )
        )
        return index, (await index.getitem(...) if index.shape == ids.shape else None)

    array, hashes = _sync.run(read())
    without = array.attrs.get(WITHOUT_UPDATED)
    if hashes is None or not isinstance(without, int):
        return None
    return RowIndex(np.asarray(hashes, dtype=np.uint64), without)


def _read_rows_at(node: zarr.Group, positions: np.ndarray) -> tuple[StoredRow, ...]:
    """The rows at ``positions`` of the source table ``node`` (:data:`~stackcube.store.layout.ROW_COLUMNS`, their
    columns read at once): the chunks that hold them, not the others."""

    async def one(name: str) -> list[str]:
        array = await zarr.api.asynchronous.open_array(store=node.store, path=f"{node.path}/{name}", mode="r")
        return [str(v) for v in np.asarray(await array.get_orthogonal_selection((positions,))).tolist()]

    async def read() -> list[list[str]]:
        return list(await asyncio.gather(*(one(name) for name in ROW_COLUMNS)))

    return tuple(map(StoredRow._make, zip(*_sync.run(read()), strict=True)))
