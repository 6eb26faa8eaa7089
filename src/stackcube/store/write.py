"""Writing a cube: a CubePlan becomes one commit of virtual references, with its coordinates and metadata (a big
build's references go first into stage snapshots below it, which the branch never points at and no read opens).

Every virtual reference carries its source's checksum (a strong ETag; Last-Modified when the host sends none or a
weak one; nothing for an unprotected source, whose host honours neither), so Icechunk refuses to read a chunk of a
source that changed since. The commit is atomic: a write that fails or is killed
leaves the branch where it was.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import icechunk
import numpy as np
import xarray as xr
import zarr

from stackcube._progress import progress_bar
from stackcube._text import counted
from stackcube._workers import Workers, run_each
from stackcube.cube import CubePlan
from stackcube.errors import ConcurrentUpdateError, RepositoryError, SourceError, StackcubeWarning, caused_by
from stackcube.plan import DIMS, ArrayPlan
from stackcube.settings import Settings
from stackcube.store.coords import ARRAYS, Encodings, inline_coordinates, kept_arrays
from stackcube.store.layout import (
    DATA,
    SOURCES,
    TABLE_ENCODING,
    ArrayLayout,
    CubeMetadata,
    coordinate_encoding,
    data_attrs,
    level_dataset,
    level_path,
    manifest_splits,
    piece_steps,
    sources_table,
    union_tiles,
)
from stackcube.store.nodes import Group, write_groups
from stackcube.store.repo import (
    STAGE_METADATA,
    RepoLike,
    container_prefixes,
    exclusive,
    exists,
    for_writing,
    open_repository,
    save_containers,
    transient,
    version_not_found,
)
from stackcube.store.scratch import remove_branch, start_scratch
from stackcube.tiff import TiffSegmentCodec, standard_codecs

__all__ = ["check_target", "write_plan"]


def write_plan(
    plan: CubePlan,
    repo: RepoLike,
    *,
    branch: str = "main",
    message: str | None = None,
    tag: str | None = None,
    progress: bool = False,
    metadata: dict[str, Any] | None = None,
    parent: str | None = None,
    settings: Settings | None = None,
    workers: Workers | None = None,
) -> tuple[icechunk.Repository, str]:
    """Commit the plan on ``branch`` in one commit (on top of its stages, for a big build: :data:`STAGE_ABOVE`);
    return the repository and the snapshot id.

    With ``workers`` (a ``dask.distributed.Client`` or a ``concurrent.futures.Executor``), the references are
    written there, each task into a fork of one session (:func:`_write_on_workers`); the commit is still one,
    made here.

    The commit replaces every array of the cube (arrays no longer planned are deleted) and the source table.
    With ``parent``, the commit happens only if the branch is still at that snapshot, else
    :class:`~stackcube.errors.ConcurrentUpdateError`; a commit that loses a race with another writer raises it
    too. Either way nothing of this write is committed: a failed or killed write leaves the branch where it was.
    A build on a branch the repository does not have starts it at main's tip.
    """
    hrefs = {h for a in plan.arrays for h in a.sources.href}  # overview levels read the same sources
    prefixes = container_prefixes(hrefs)
    accounts = accounts_of(plan, prefixes)
    with exclusive(repo):
        repository = open_repository(repo, prefixes=prefixes, create=True, accounts=accounts, settings=settings)
    staged = _references(plan) > STAGE_ABOVE  # in one process; a write on workers is in stages whatever its size
    big = staged or workers is not None
    repository = for_writing(repository, manifest_splits(plan.standalone), settings, accounts, big=big)
    if tag is not None:
        check_tag_is_free(repository, tag, repo)
    created = _start_branch(repository, branch, parent, repo)
    failure: RepositoryError | None = None
    try:
        snapshot = _write(
            repository,
            plan,
            prefixes,
            accounts,
            branch=branch,
            message=message,
            tag=tag,
            progress=progress,
            metadata=metadata,
            parent=parent,
            lock=lambda: exclusive(repo),
            workers=workers,
            staged=staged and workers is None,
        )
    except BaseException as exc:
        if created:  # a branch this write started, with nothing of this write on it
            remove_branch(repository, branch, exc)
        if not isinstance(exc, icechunk.IcechunkError):
            raise
        failure = _not_committed(f"writing the cube to {repo}", exc)
    if failure is not None:
        raise failure  # outside the except block: Icechunk's error is no __context__ of ours (errors.caused_by)
    try:
        with exclusive(repo):
            save_containers(repository, prefixes, settings, accounts)
    except (icechunk.IcechunkError, RepositoryError) as exc:
        # the cube is committed and readable (it lists its containers); only readers other than stackcube, which
        # take containers from the configuration alone, miss them until the next write saves them
        why = exc.message.splitlines()[0] if isinstance(exc, icechunk.IcechunkError) and exc.message else str(exc)
        warnings.warn(
            f"{repo}: the commit {snapshot} is done, but the repository configuration could not be updated with "
            f"its source locations ({why}); stackcube reads it, other Icechunk readers need them declared: the next "
            "build or refresh saves them again",
            StackcubeWarning,
            stacklevel=3,
        )
    return repository, snapshot


def accounts_of(plan: CubePlan, prefixes: list[str]) -> dict[str, str]:
    """The Azure storage account of each ``az://`` container prefix, from the sources' manifests; one container
    name on two accounts cannot be told apart by Icechunk, and is refused."""
    accounts: dict[str, str] = {}
    for source in plan.sources:
        href, account = source.manifest.href, source.manifest.account
        if account is None or not href.startswith("az://"):
            continue
        prefix = next(p for p in prefixes if href.startswith(p))
        if accounts.setdefault(prefix, account) != account:
            msg = (
                f"sources under {prefix} live on two Azure storage accounts ({accounts[prefix]}, {account}); a cube "
                "can hold one account per container name: build one cube per account"
            )
            raise SourceError(msg)
    return accounts


def check_target(repo: RepoLike, *, tag: str | None = None, settings: Settings | None = None) -> None:
    """Before any header is read: refuse a repository location that cannot take the cube (a file, a directory of
    other things) and a tag it already has, so a build fails in a second instead of after its plan."""
    found = isinstance(repo, icechunk.Repository) or exists(repo, settings)  # refuses what cannot be one
    if found and tag is not None:
        check_tag_is_free(open_repository(repo, settings=settings), tag, repo)


def _start_branch(repository: icechunk.Repository, branch: str, parent: str | None, repo: RepoLike) -> bool:
    """A build on a branch the repository does not have starts it at main's tip (True); a refresh (``parent``) of
    one is a :class:`~stackcube.errors.VersionNotFoundError` listing the branches there are."""
    if branch in repository.list_branches():
        return False
    if parent is not None:
        raise version_not_found(repository, branch=branch, repo=repo)
    try:
        repository.create_branch(branch, repository.lookup_branch("main"))
    except icechunk.IcechunkError as exc:
        failure = RepositoryError(f"branch {branch!r} cannot be created in {repo}: {exc.message.splitlines()[0]}")
    else:
        return True
    raise caused_by(failure, None)  # outside the except block: the message says what Icechunk did


def _write(
    repository: icechunk.Repository,
    plan: CubePlan,
    prefixes: list[str],
    accounts: dict[str, str],
    *,
    branch: str,
    message: str | None,
    tag: str | None,
    progress: bool,
    metadata: dict[str, Any] | None,
    parent: str | None,
    lock: Callable[[], AbstractContextManager[None]],
    workers: Workers | None = None,
    staged: bool = False,
) -> str:
    session = repository.writable_session(branch)
    base = session.snapshot_id
    if parent is not None and session.snapshot_id != parent:
        msg = f"branch {branch} moved from {parent} to {session.snapshot_id} while this write was prepared"
        raise ConcurrentUpdateError(msg)
    root = zarr.open_group(session.store, mode="a")
    keep = {a.name for a in plan.arrays} | {u.name for u in plan.unions} | {SOURCES}
    for name in list(root.group_keys()):
        if name not in keep:
            del root[name]
    root.attrs.update(CubeMetadata.of(plan, prefixes, accounts).to_attrs())
    _create_nodes(session, plan)
    total = _references(plan)
    blocks: list[Refs] = []
    amend = True  # the build's commit replaces the scratch branch's tip (the arrays' snapshot, when it has no stage)
    with progress_bar(total, "writing virtual references", "ref", enabled=progress) as advance:
        for array in plan.arrays:
            for n, level in enumerate(array.levels):
                path = level_path(array.name, n)
                if workers is None and not staged:
                    for refs in refs_of(level, path, steps=level.shape[0]):
                        set_refs(session.store, refs, advance)
                elif staged:  # stages of whole manifest pieces, so that a stage does not rewrite the last one's
                    piece = piece_steps(array)
                    blocks += refs_of(level, path, steps=piece * max(1, STAGE_REFS // (piece * level.step_chunks)))
                else:
                    blocks += refs_of(level, path, steps=block_steps(level))
        if workers is not None:
            session, amend = _write_on_workers(repository, session, blocks, workers, advance)
        elif staged:
            session, amend = _write_staged(repository, session, blocks, advance)
    counts = ", ".join(f"{a.name} {counted(a.shape[0], 'date')} x {counted(a.shape[1], 'band')}" for a in plan.arrays)
    message = message or f"stackcube build: {counts}"
    if workers is not None or staged:
        return _commit_forked(
            repository,
            session,
            branch=branch,
            base=base,
            message=message,
            metadata=metadata,
            tag=tag,
            lock=lock,
            amend=amend,
        )
    return commit(repository, session, branch=branch, base=base, message=message, metadata=metadata, tag=tag, lock=lock)


def commit(
    repository: icechunk.Repository,
    session: icechunk.Session,
    *,
    branch: str,
    base: str,
    message: str,
    metadata: dict[str, Any] | None,
    tag: str | None,
    lock: Callable[[], AbstractContextManager[None]],
) -> str:
    """Commit ``session`` (started at ``base``) on ``branch``, and tag it; a writer that committed first is a
    :class:`~stackcube.errors.ConcurrentUpdateError`, and nothing of this write is on the branch."""
    try:
        with lock():
            snapshot = session.commit(message, metadata=metadata or None)
            if tag is not None:
                _tag_or_undo(repository, tag, snapshot, branch, base)
    except icechunk.ConflictError as exc:
        msg = f"another writer committed to branch {branch} first ({exc}); nothing of this write was committed"
        failure = ConcurrentUpdateError(msg)
    else:
        return snapshot
    raise caused_by(failure, None)  # outside the except block: the message quotes Icechunk's error


def check_tag_is_free(repository: icechunk.Repository, tag: str, repo: RepoLike) -> None:
    """Refuse, before anything is written, a tag that exists: tags do not move."""
    if tag in repository.list_tags():
        msg = (
            f"{repo} already has a tag {tag!r} (snapshot {repository.lookup_tag(tag)}): tags never move; nothing "
            "was committed; give another tag, or build without one"
        )
        raise RepositoryError(msg)


def _tag_or_undo(repository: icechunk.Repository, tag: str, snapshot: str, branch: str, base: str) -> None:
    """Tag the new snapshot; if that fails (a name Icechunk refuses, a writer that took it meanwhile), move the
    branch back to where it was, so the write is all or nothing."""
    try:
        repository.create_tag(tag, snapshot)
    except icechunk.IcechunkError as exc:
        why = exc.message
    else:
        return
    try:
        repository.reset_branch(branch, base, from_snapshot_id=snapshot)
    except icechunk.IcechunkError:  # another writer moved the branch since: leave its work alone
        failure = RepositoryError(
            f"tag {tag!r} could not be created ({why}); branch {branch} moved on and keeps {snapshot}"
        )
    else:
        failure = RepositoryError(
            f"tag {tag!r} could not be created ({why.splitlines()[0]}); nothing was committed to {branch}"
        )
    # outside the except blocks: the message says what Icechunk did, its errors are no __context__ of ours
    raise caused_by(failure, None)


def _create_nodes(session: icechunk.Session, plan: CubePlan) -> None:
    """Every node of the cube but the root, without references yet: the source table, each array's node, its
    levels' coordinates and data arrays, the unions' tile tables; written at once (:mod:`stackcube.store.nodes`).
    A union's members, and arrays whose coordinates are small, store their data arrays only, their node keeping
    the rest (:func:`kept_arrays`): on object storage each stored array is one more manifest the commit writes."""
    # the source table alone first, and let go of: its manifests' JSON is about 10 kB a source (192 MB of 20,000),
    # which the levels' coordinates need not sit on top of
    write_groups(session.store, [(SOURCES, sources_table(plan.sources), TABLE_ENCODING)])
    _give_back_memory()
    tops: list[Group] = []
    levels: list[Group] = []
    data: list[tuple[str, str, dict[str, Any]]] = []
    members = {m for u in plan.unions for m in u.members}
    encodings = Encodings()  # a union's members share their bands, scales and properties: each encoded once
    for array in plan.arrays:
        member = array.name in members
        datasets = [level_dataset(level, indexes=not member) for level in array.levels]  # a member's: kept
        coordinates = inline_coordinates(datasets, encodings)
        kept = kept_arrays(datasets, member=member, encodings=encodings)
        if kept is None and member:  # its levels store their coordinates after all: with indexes, as others do
            datasets = [level_dataset(level) for level in array.levels]
        if kept is not None:
            coordinates[ARRAYS] = kept
        tops.append((array.name, xr.Dataset(attrs=ArrayLayout.of(array, coordinates).to_attrs()), {}))
        for n, (level, coords) in enumerate(zip(array.levels, datasets, strict=True)):
            stored = coords if kept is None else xr.Dataset()
            levels.append((level_path(array.name, n), stored, coordinate_encoding(stored)))
            data.append((level_path(array.name, n), DATA, data_array(level, coords, level.shape)))
    arrays = {a.name: a for a in plan.arrays}
    for union in plan.unions:
        for n in range(union.n_levels):
            levels.append((level_path(union.name, n), union_tiles([arrays[m].levels[n] for m in union.members]), {}))
    write_groups(session.store, tops)  # first: writing a group replaces what is under it
    write_groups(session.store, levels, arrays=data)


def data_array(level: ArrayPlan, coords: xr.Dataset, shape: tuple[int, ...], *, tiff: bool = False) -> dict[str, Any]:
    """How a level's data array is created (at ``shape``): its chunks, dtype, fill value, codecs and attributes.

    Its codecs are Zarr's own when its segments need no TIFF-specific step (:func:`stackcube.tiff.standard_codecs`),
    so that readers without stackcube decode it too; else, or with ``tiff`` (how cubes were written before, which
    a refresh appends to as they are), the ``stackcube.tiff`` codec with the level's recipe."""
    standard = None if tiff else standard_codecs(level.recipe, ndim=len(DIMS), lengths=level.lengths)
    codecs = (
        {"serializer": TiffSegmentCodec(recipe=level.recipe), "compressors": None}
        if standard is None
        else standard.create_keywords()
    )
    return {
        "shape": shape,
        "chunks": level.chunks,
        "dtype": level.dtype,
        "fill_value": level.fill_value if level.fill_value is not None else 0,
        **codecs,
        "dimension_names": DIMS,
        "attributes": data_attrs(level, [str(n) for n in coords.coords]),
    }


def write_or_nothing[T](repo: RepoLike, doing: str, write: Callable[[], T]) -> T:
    """``write()``, Icechunk's errors while ``doing`` it to ``repo`` as a :class:`RepositoryError` saying nothing was
    committed (transient when asking again may succeed), raised outside the ``except`` block with a redacted stand-in
    of Icechunk's as its cause: no raw error of Icechunk's as cause or context (a context manager could not do it:
    it raises while the ``with`` statement handles the error)."""
    try:
        return write()
    except icechunk.IcechunkError as exc:
        failure = _not_committed(f"{doing} {repo}", exc)
    raise failure


def _not_committed(doing: str, exc: icechunk.IcechunkError) -> RepositoryError:
    """Icechunk's ``exc`` while ``doing`` a write as a RepositoryError saying nothing was committed, a redacted
    stand-in of ``exc`` as its cause (transient when asking again may succeed)."""
    error = caused_by(RepositoryError(f"{doing} failed, nothing was committed: {exc.message[:300]}"), exc)
    error.transient = transient(exc)
    return error


BLOCK_REFS = 250_000
"""References per task when workers write them (about 10 MB of plan arrays shipped per task)."""


def block_steps(level: ArrayPlan) -> int:
    """Time steps of ``level`` per task when workers write its references: :data:`BLOCK_REFS` references (a
    step's chunks: every band's tiles), at least one step."""
    return max(1, BLOCK_REFS // level.step_chunks)


@dataclass(frozen=True)
class Refs:
    """The references of some time steps of one level: plain data, shipped to a worker when workers write."""

    path: str
    start: int
    """The first time step."""
    index: np.ndarray
    """int32 (time, band, y, x): which source each chunk reads, -1 for none."""
    offsets: np.ndarray
    lengths: np.ndarray
    sources: dict[int, tuple[str, Any]]
    """Source number -> (href, what its reads are checked against)."""

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.index >= 0))


def _references(plan: CubePlan) -> int:
    """References the plan's arrays hold, at every level."""
    return sum(level.n_chunks for array in plan.arrays for level in array.levels)


def refs_of(level: ArrayPlan, path: str, *, steps: int, first: int = 0, at: int = 0) -> list[Refs]:
    """A level's references in blocks of ``steps`` time steps, from time step ``first`` on, written ``at`` steps
    further along the stored array (after its stored steps, when ``level`` holds only new ones)."""
    table = level.sources
    out = []
    for start in range(first, level.shape[0], steps):
        index = level.source_index[start : start + steps]
        used = np.unique(index[index >= 0]).tolist()
        checks = {
            i: (table.href[i], _checksum(table.href[i], table.validator[i], table.etag[i], table.last_modified[i]))
            for i in used
        }
        out.append(
            Refs(
                path,
                at + start,
                index,
                level.offsets[start : start + steps],
                level.lengths[start : start + steps],
                checks,
            )
        )
    return out


def set_refs(store: Any, refs: Refs, advance: Callable[[int], object] = lambda n: None) -> None:
    """Write one block's references into ``store`` (a session's, or a fork's on a worker), a source at a time."""
    nt, nb, ny, nx = refs.index.shape
    for t in range(nt):
        for b in range(nb):
            index = refs.index[t, b]
            for i in np.unique(index[index >= 0]).tolist():
                mine = index == i
                href, checksum = refs.sources[i]
                failed = store.set_virtual_refs_arr(
                    f"{refs.path}/{DATA}",
                    (1, 1, ny, nx),
                    np.where(mine, href, "").ravel().tolist(),
                    np.where(mine, refs.offsets[t, b], 0).astype(np.uint64).ravel(),
                    np.where(mine, refs.lengths[t, b], 0).astype(np.uint64).ravel(),
                    arr_offset=(refs.start + t, b, 0, 0),
                    checksum=checksum,
                )
                if failed:
                    msg = f"{href}: Icechunk refused {len(failed)} references (no container?)"
                    raise SourceError(msg)
                advance(int(np.count_nonzero(mine)))


def _write_block(fork: icechunk.ForkSession, refs: Refs) -> icechunk.ForkSession:
    """On a worker: one block's references into a fork of the build's session, which goes back to be merged."""
    set_refs(fork.store, refs)
    return fork


def _write_on_workers(
    repository: icechunk.Repository,
    session: icechunk.Session,
    blocks: list[Refs],
    workers: Workers,
    advance: Callable[[int], object],
) -> tuple[icechunk.Session, bool]:
    """Have ``workers`` write the references into forks of one session, merged here, a stage of at most
    :data:`WORKER_STAGE_REFS` at a time (:func:`_in_stages`), so that this process holds one stage's references,
    not the build's.

    Icechunk forks only a session without changes, and the arrays must exist before references go in: the
    metadata written so far becomes a snapshot off every branch (``flush``), a scratch branch points at it, the
    forks are made from a session on that branch, and each stage's merged forks are committed before the next
    stage's forks are made.
    """
    stages = _snapshots(blocks, min(COMMIT_REFS, WORKER_STAGE_REFS))
    return _in_stages(repository, session, stages, lambda writer, stage: _write_run(writer, stage, workers, advance))


WORKER_STAGE_REFS = 1_000_000
"""References a build on workers merges into one stage, at most: four of the workers' blocks (:data:`BLOCK_REFS`),
so that a stage keeps a few workers busy while this process holds no more than a stage's references (10.24 million
references on 2 workers: 25.7 s at a 2.3 GB peak in stages of a million, 23.7 s at 3.0 GB in stages of 2 million,
35.5 s at 9.9 GB merged at once)."""


def _write_run(writer: icechunk.Session, run: list[Refs], workers: Workers, advance: Callable[[int], object]) -> None:
    """``run``'s blocks written by ``workers`` into forks of ``writer`` (which has no changes), merged into it."""
    forks: list[icechunk.ForkSession] = []

    def done(n: int, fork: icechunk.ForkSession) -> None:
        forks.append(fork)
        advance(run[n].count)

    run_each(workers, _write_block, [(writer.fork(), refs) for refs in run], done)
    writer.merge(*forks)


STAGE_MESSAGE = "stackcube build: references being written"
"""The message of a big build's snapshots on the way to its commit (marked by
:data:`~stackcube.store.repo.STAGE_METADATA`)."""

COMMIT_REFS = 40_000_000
"""References one snapshot adds, at most: Icechunk's transaction log holds a table per chunk a commit changes and
refuses more than 50 million (a 100,000-item Sentinel-2 cube, 65 million references, failed there in one snapshot).
The stages of a build (:data:`STAGE_REFS` in one process, :data:`WORKER_STAGE_REFS` on workers) stay far below it."""


def _snapshots(blocks: list[Refs], most: int | None = None) -> list[list[Refs]]:
    """``blocks`` in runs of at most ``most`` references (default :data:`COMMIT_REFS`; a block larger alone), in
    order: a snapshot each."""
    most = COMMIT_REFS if most is None else most
    runs: list[list[Refs]] = [[]]
    held = 0
    for refs in blocks:
        if not refs.count:  # nothing to write (a stage of such blocks alone would be an empty commit)
            continue
        if runs[-1] and held + refs.count > most:
            runs.append([])
            held = 0
        runs[-1].append(refs)
        held += refs.count
    return runs


STAGE_ABOVE = 1_000_000
"""A build of more references than this, in one process, commits them in stages of :data:`STAGE_REFS` (snapshots on
a scratch branch, which the branch then moves to, as a build on workers does): Icechunk keeps a session's every
change in memory until its commit, about 500 bytes a reference. Stages bound that, and are faster too: Icechunk's
commit costs about the manifest pieces it writes times the references it holds (5.12 million references: 35 s at
2.6 GB in one commit, 25 s at 1.0 GB in stages of 500,000, 22 s at 1.0 GB in stages of 250,000). A stage is a
commit, not an amend, because an amend carries every reference of the snapshot it replaces in its transaction log
(40 s at 1.9 GB in amends of 500,000)."""
STAGE_REFS = 250_000
"""References per stage, at most (a block of whole manifest pieces may hold more alone). A stage's session holds
about 500 bytes a reference until its commit: 20,000 Landsat-sized items (6.8 million references) peaked at
1,518 MB in stages of 500,000 and 1,492 MB in stages of 250,000 (``benchmarks/build_bench``)."""


def _give_back_memory() -> None:
    """Return the memory a stage's session (or the source table's text) freed to the system. glibc's allocator
    keeps what Icechunk frees (the change set, the manifests built) for reuse, and a stage's pieces are rarely
    reused as they were: without this, 10 million references in stages grew as in one session. A no-op where the C
    library has no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim``, looked up once (``find_library`` runs a compiler or ``ldconfig``)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def _write_staged(
    repository: icechunk.Repository, session: icechunk.Session, blocks: list[Refs], advance: Callable[[int], object]
) -> tuple[icechunk.Session, bool]:
    """Write ``blocks`` of references in this process, a stage of at most :data:`STAGE_REFS` at a time
    (:func:`_in_stages`)."""

    def write(writer: icechunk.Session, stage: list[Refs]) -> None:
        for refs in stage:
            set_refs(writer.store, refs, advance)

    return _in_stages(repository, session, _snapshots(blocks, STAGE_REFS), write)


def _in_stages(
    repository: icechunk.Repository,
    session: icechunk.Session,
    stages: list[list[Refs]],
    write: Callable[[icechunk.Session, list[Refs]], None],
) -> tuple[icechunk.Session, bool]:
    """``write`` each stage's blocks into a session on a scratch branch started at ``session``'s metadata (flushed
    to a snapshot): the first stage amends that snapshot (it holds no reference), each later one is a snapshot on
    the last (:data:`STAGE_MESSAGE`, :data:`~stackcube.store.repo.STAGE_METADATA`), and the memory a stage freed
    goes back to the system. Return the session holding the last stage, which :func:`_commit_forked` makes the
    build's commit, and whether it amends (True: a single stage, on the arrays' snapshot; an amend of a stage would
    carry two stages' references). On any failure the scratch branch is removed: nothing of this write is on any
    other branch."""
    scratch = start_scratch(repository, session.flush("stackcube build: arrays, references being written"))
    try:
        writer = repository.writable_session(scratch)
        for n, stage in enumerate(stages):
            write(writer, stage)
            if n < len(stages) - 1:
                if n:
                    writer.commit(STAGE_MESSAGE, metadata=STAGE_METADATA)
                else:
                    writer.amend(STAGE_MESSAGE, metadata=STAGE_METADATA)
                writer = repository.writable_session(scratch)
                _give_back_memory()
    except BaseException as exc:
        remove_branch(repository, scratch, exc)
        raise
    return writer, len(stages) == 1


def _commit_forked(
    repository: icechunk.Repository,
    writer: icechunk.Session,
    *,
    branch: str,
    base: str,
    message: str,
    metadata: dict[str, Any] | None,
    tag: str | None,
    lock: Callable[[], AbstractContextManager[None]],
    amend: bool = True,
) -> str:
    """The one commit of a build on workers (or the last of a build in stages): the flushed metadata and the merged
    references become one snapshot on the scratch branch (an amend, whose parent is ``base``; a commit on the last
    stage with ``amend=False``), and ``branch`` moves to it only if it is still at ``base`` (else nothing of this
    write is on it)."""
    scratch = str(writer.branch)
    try:
        if amend:
            snapshot = writer.amend(message, metadata=metadata or None)
        else:
            snapshot = writer.commit(message, metadata=metadata or None)
        with lock():
            try:
                repository.reset_branch(branch, snapshot, from_snapshot_id=base)
            except icechunk.IcechunkError as exc:
                if repository.lookup_branch(branch) == base:
                    raise  # not a race: the repository's own failure (write_plan says nothing was committed)
                msg = f"another writer committed to branch {branch} first ({exc}); nothing of this write was committed"
                lost: ConcurrentUpdateError | None = ConcurrentUpdateError(msg)
            else:
                lost = None
            if lost is not None:
                raise caused_by(lost, None)  # outside the except block: the message quotes Icechunk's error
            if tag is not None:
                _tag_or_undo(repository, tag, snapshot, branch, base)
    except BaseException as exc:
        remove_branch(repository, scratch, exc)
        raise
    remove_branch(repository, scratch)
    return snapshot


def _checksum(href: str, validator: str, etag: str, last_modified: str) -> Any:
    """What Icechunk checks a source against when it reads one of its chunks: its ``validator`` (the one its host
    honours, :attr:`stackcube.tiff.TiffManifest.validator`), or nothing for an unprotected source.

    Local files are checked by their object_store ETag (inode, modification time to the microsecond, size), not by
    "unmodified since": a file replaced by one with an older time (``cp -p``, a restore) must still fail.
    """
    if validator == "etag" and etag:
        if href.startswith(("http:", "https:", "file:")):
            # Icechunk strips one pair of quotes from an ETag and sends the rest as If-Match; HTTP servers (nginx,
            # RFC 9110) and object_store's local files compare quoted entity-tags, so a quoted ETag goes in one
            # more pair of quotes
            return f'"{etag}"' if etag.startswith('"') else f'""{etag}""'
        return etag
    if validator == "last-modified" and last_modified:
        when = datetime.fromisoformat(last_modified)
        if when.microsecond:
            # Icechunk keeps whole seconds and refuses anything modified after: round up, not down
            when = when.replace(microsecond=0) + timedelta(seconds=1)
        return when
    return None
