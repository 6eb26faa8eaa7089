"""The stored cube: what a committed cube says about how it was made (:class:`StoredCube`), read without touching a
source, and the rule its source table is held to: every href it names lies in a container the cube declares.

A refresh and a verification start here (:func:`read_stored`); readers open the same root group
(:func:`open_root`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import icechunk
import zarr
import zarr.errors

from stackcube._hrefs import redact
from stackcube.errors import RepositoryError, UntrustedSourceError
from stackcube.sources import Source
from stackcube.store.containers import check_allowed
from stackcube.store.layout import (
    ArrayLayout,
    CubeMetadata,
    StoredRow,
    read_source_rows,
    read_sources_table,
    searched_at,
)
from stackcube.store.repo import RepoLike

__all__ = ["StoredCube", "declared_hrefs", "open_root", "read_stored"]


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
    rows = read_source_rows(root)
    declared_hrefs((row.href for row in rows), metadata, repo if repo is not None else "the cube")
    return StoredCube(
        snapshot_id=session.snapshot_id,
        metadata=metadata,
        rows=rows,
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
    """The ``searched`` instant of the newest stackcube commit at or before ``snapshot_id`` (commits by others are
    passed over); None when that commit has none."""
    for snapshot in repository.ancestry(snapshot_id=snapshot_id):
        if "stackcube" in snapshot.metadata:
            return searched_at(snapshot.metadata)
    return None
