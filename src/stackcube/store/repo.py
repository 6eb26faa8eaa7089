"""Repositories: opening or creating the Icechunk repository of a cube, with virtual chunk containers for exactly the
URL prefixes its sources live under (:mod:`~stackcube.store.containers`), and the ``allow`` check.

Reading authorizes exactly the containers a repository declares (never a wildcard), anonymously or with the
environment's credentials (Icechunk reads them; stackcube never does); no credential is written into the
repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import icechunk

from stackcube._remedies import build
from stackcube._retry import without_timings
from stackcube.errors import RepositoryError, VersionNotFoundError, caused_by
from stackcube.settings import Credentials, Settings, current
from stackcube.store.containers import check_allowed, container_prefixes, declare_containers

__all__ = [
    "ONE_REQUEST",
    "RepoLike",
    "Credentials",
    "branch_head",
    "check_allowed",
    "container_prefixes",
    "exclusive",
    "exists",
    "memory_repository",
    "open_repository",
    "quiet_logs",
    "readonly_session",
    "repo_name",
    "repo_url",
    "save_containers",
    "transient",
    "version_not_found",
    "with_containers",
    "for_writing",
    "URL_DICTIONARY_FROM",
]

type RepoLike = str | os.PathLike[str] | icechunk.Storage | icechunk.Repository
"""Where a cube lives: a local path, an ``s3://bucket/prefix`` URL, an ``icechunk.Storage`` or a Repository."""

ONE_REQUEST = 1 << 30
"""Icechunk splits a chunk fetch into ranged GETs of an ideal size; a source tile is one GET, so never split."""


def _storage(repo: str | os.PathLike[str] | icechunk.Storage, settings: Settings) -> icechunk.Storage:
    if isinstance(repo, icechunk.Storage):
        return repo
    text = os.fspath(repo)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        s3 = settings.s3
        return icechunk.s3_storage(
            bucket=parsed.netloc,
            prefix=parsed.path.strip("/") or None,
            region=s3.region,
            endpoint_url=s3.endpoint,
            allow_http=s3.allow_http,
            force_path_style=bool(s3.endpoint),
            from_env=s3.signed,
            anonymous=not s3.signed,
        )
    path = _local_path(text)
    if path is not None:
        if path.exists() and not path.is_dir():
            msg = f"{text} is a file, not an Icechunk repository (a directory); give a directory path"
            raise RepositoryError(msg)
        return icechunk.local_filesystem_storage(str(path))
    msg = f"repository {text!r}: use a local path, an s3:// URL, an icechunk.Storage or an icechunk.Repository"
    raise RepositoryError(msg)


def open_repository(
    repo: RepoLike,
    *,
    prefixes: Iterable[str] = (),
    create: bool = False,
    allow: Iterable[str] | None = None,
    reading: bool = False,
    credentials: Credentials | None = None,
    accounts: Mapping[str, str] | None = None,
    settings: Settings | None = None,
) -> icechunk.Repository:
    """Open (or create) a repository whose containers cover ``prefixes``, authorizing exactly its containers.

    A given ``icechunk.Repository`` is returned as it is unless it lacks a container for one of ``prefixes`` or
    would split a chunk into several requests. Containers are added in memory: the saved configuration is only
    changed by :func:`save_containers` (a cube's readers need not it: the cube lists its containers). With
    ``allow`` (URL prefixes), a repository that declares a container outside all of them is refused before
    anything is read through it. ``reading``: Icechunk does not retry (stackcube's read path does, in one layer,
    :mod:`stackcube.store.read`). ``credentials`` (:data:`Credentials`) authorize the containers they name;
    ``accounts`` are the Azure storage accounts of ``az://`` prefixes.
    """
    settings = settings or current()
    try:
        return _open(
            repo,
            prefixes,
            create=create,
            allow=allow,
            reading=reading,
            credentials=credentials,
            accounts=accounts or {},
            settings=settings,
        )
    except icechunk.IcechunkError as exc:
        msg = f"{repo_name(repo)} cannot be used as an Icechunk repository: {_first_line(exc)}"
        if "clean prefix" in str(exc):
            msg = (
                f"{repo_name(repo)} is not empty and not an Icechunk repository; give a new or empty directory or "
                "prefix"
            )
        failure = _failure(msg, exc)
    raise failure  # outside the except block: Icechunk's own error is no __context__ of ours


def _failure(msg: str, exc: icechunk.IcechunkError) -> RepositoryError:
    """A RepositoryError saying ``msg``, transient when Icechunk's error is, with a redacted stand-in of that error
    as its cause: its text (a storage URL, an object store's answer) is kept, its credentials are not."""
    failure = caused_by(RepositoryError(msg), exc)
    failure.transient = transient(exc)
    return failure


_K = icechunk.ErrorKind
_TRANSIENT_KINDS = frozenset({_K.IO, _K.OBJECT_STORE, _K.STORAGE_OTHER, _K.THROTTLED, _K.VIRTUAL_CHUNK_FETCH})
_TRANSIENT_WORDS = re.compile(
    r"\b(?:5\d\d|429|408)\b|timed? ?out|connection|reset|broken pipe|body|incomplete|SlowDown|Throttl|"
    r"dispatch failure|error sending request|unexpected end|InternalError|ServiceUnavailable|TooManyRequests|"
    r"RequestTimeout",
    re.IGNORECASE,
)
_REFUSED_WORDS = re.compile(r"\b(?:400|401|403|404|405|410|416)\b|not found|NoSuchKey|denied|Forbidden", re.IGNORECASE)


def transient(exc: icechunk.IcechunkError) -> bool:
    """Whether asking again may succeed: a storage or fetch error that looks like a 5xx, 429, timeout, dropped
    connection or cut-off body (Icechunk's kinds say where it failed, not whether to retry, so its message
    decides), or a body of the wrong size."""
    if exc.kind in {_K.INVALID_OBJECT_SIZE, _K.THROTTLED}:
        return True
    if exc.kind not in _TRANSIENT_KINDS:
        return False
    text = without_timings(str(exc.message or exc))
    return _TRANSIENT_WORDS.search(text) is not None and _REFUSED_WORDS.search(text) is None


def branch_head(repo: RepoLike, branch: str) -> icechunk.SnapshotInfo | None:
    """The snapshot a branch points at (its id, when it was written, its parent); None when there is no repository
    there (yet), or no such branch."""
    try:
        repository = open_repository(repo)
        return repository.lookup_snapshot(repository.lookup_branch(branch))
    except (RepositoryError, icechunk.IcechunkError):
        return None


def branch_tip(repo: RepoLike, branch: str) -> str | None:
    """The snapshot id ``branch`` points at now: one small read where ``repo`` is an opened ``Repository`` (keep one
    to ask often); None when there is no repository there, or no such branch."""
    try:
        repository = repo if isinstance(repo, icechunk.Repository) else open_repository(repo)
        return repository.lookup_branch(branch)
    except (RepositoryError, icechunk.IcechunkError):
        return None


def exists(repo: RepoLike, settings: Settings | None = None) -> bool:
    """Whether there is a repository at ``repo`` (one request); a location that cannot hold one (a file, a
    directory of other things) is a :class:`RepositoryError` saying so."""
    if isinstance(repo, icechunk.Repository):
        return True
    storage = _storage(repo, settings or current())
    failure: RepositoryError | None = None
    try:
        found = icechunk.Repository.exists(storage)
    except icechunk.IcechunkError as exc:
        failure = RepositoryError(f"{repo_name(repo)} cannot be used as an Icechunk repository: {_first_line(exc)}")
    if failure is not None:
        raise caused_by(failure, None)  # outside the except block; the message quotes Icechunk's error
    if not found and isinstance(repo, str | os.PathLike) and urlparse(os.fspath(repo)).scheme in {"", "file"}:
        path = Path(os.fspath(repo).removeprefix("file://"))
        if path.is_dir() and any(path.iterdir()):
            msg = (
                f"{repo_name(repo)} is not empty and not an Icechunk repository; give a new or empty directory or "
                "prefix"
            )
            raise RepositoryError(msg)
    return found


def _open(
    repo: RepoLike,
    prefixes: Iterable[str],
    *,
    create: bool,
    allow: Iterable[str] | None,
    reading: bool,
    credentials: Credentials | None,
    accounts: Mapping[str, str],
    settings: Settings,
) -> icechunk.Repository:
    given = repo if isinstance(repo, icechunk.Repository) else None
    storage = given.storage if given is not None else _storage(repo, settings)  # type: ignore[arg-type]
    if given is None and not create:
        # opening is one read of the repository's info, which holds its configuration too: no separate existence
        # check or configuration fetch (each a round trip to object storage); reopened below with the containers
        # authorized, in memory
        with contextlib.suppress(icechunk.RepositoryNotFoundError):
            given = icechunk.Repository.open(storage)
        if given is None:  # said out of the except block: Icechunk's error is no __context__ of ours
            msg = f"there is no Icechunk repository at {repo_name(repo)}"
            raise RepositoryError(msg, remedy=build(repo_url(repo)))
    # here without a repository only to create one: created first, not looked for (on object storage, a new
    # location is then 4 requests instead of 6; one that holds a repository already costs one listing more than
    # a look-up, and is opened below, its configuration with it)
    config = given.config if given is not None else icechunk.RepositoryConfig.default()
    known = set((config.virtual_chunk_containers or {}).keys())
    added = [prefix for prefix in dict.fromkeys(prefixes) if prefix not in known]
    if allow is not None:
        check_allowed(sorted(known.union(added)), allow, repo)
    whole = _whole_chunk_requests(config)
    unloaded = _no_preload(config)
    if reading:
        _read_policy(config, settings)
    if given is not None and not added and whole and unloaded and not reading and credentials is None:
        return given
    http = [p for p in known if urlparse(p).scheme in {"http", "https"}]  # today's timeouts and headers
    access = declare_containers(config, [*added, *http], known, settings, credentials=credentials, accounts=accounts)
    if given is not None:
        return _reopened(given, config=config, authorize_virtual_chunk_access=access)
    try:
        created = icechunk.Repository.create(storage, config=config, authorize_virtual_chunk_access=access)
    except icechunk.IcechunkError:
        # a repository there already, or another writer creating it at this moment: wait (briefly) for theirs to
        # be complete, and use it
        for _ in range(50):
            if icechunk.Repository.exists(storage):
                return _open(
                    repo,
                    prefixes,
                    create=False,
                    allow=allow,
                    reading=reading,
                    credentials=credentials,
                    accounts=accounts,
                    settings=settings,
                )
            time.sleep(0.1)
        raise
    _SAVED_WITH[created] = frozenset(_saved_containers(config, credentials))
    return created


_SAVED_WITH: weakref.WeakKeyDictionary[icechunk.Repository, frozenset[str]] = weakref.WeakKeyDictionary()
"""Repositories this process created (and their reopenings), with the containers the configuration saved at their
creation declares: :func:`save_containers` needs not read it back (2 requests on object storage) to find them
there. Another stackcube writer that saves the configuration meanwhile keeps them (it merges); another tool that
saves one without them, while this process still holds the repository, leaves them missing until a write from a
new process (or a new ``open_repository``) saves them again."""


def _saved_containers(config: icechunk.RepositoryConfig, credentials: Credentials | None) -> list[str]:
    """The containers ``config`` declares as :func:`save_containers` would save them: all when no ``credentials``
    were given, else all but http(s) ones (which may hold the caller's headers: that one saves them anew)."""
    return [
        prefix
        for prefix in (config.virtual_chunk_containers or {})
        if credentials is None or urlparse(prefix).scheme not in {"http", "https"}
    ]


def _reopened(repository: icechunk.Repository, **changes: Any) -> icechunk.Repository:
    """``repository.reopen(**changes)``, remembered as created here when ``repository`` was (:data:`_SAVED_WITH`)."""
    return _remembered(repository, repository.reopen(**changes))


def _remembered(repository: icechunk.Repository, again: icechunk.Repository) -> icechunk.Repository:
    """``again`` (``repository`` reopened or opened again), remembered as created here when ``repository`` was."""
    if repository in _SAVED_WITH:
        _SAVED_WITH[again] = _SAVED_WITH[repository]
    return again


@contextlib.contextmanager
def exclusive(repo: RepoLike) -> Iterator[None]:
    """Hold the repository's write lock, where stackcube must provide one: a repository on a local disk, where
    Icechunk cannot update a branch conditionally (it warns that such a repository is not safe for concurrent
    commits), so two processes committing at once could both "succeed" and one commit be lost. The lock is an
    advisory ``flock`` on the repository's directory (created if need be), held for a create, a commit or a
    configuration update only. Object stores (S3, GCS, Azure) need none: their conditional writes make Icechunk's
    commits atomic. A repository given as an ``icechunk.Storage`` or ``Repository`` is not locked (its path is not
    known): use one process per local repository then."""
    path = _local_path(repo)
    if path is None:
        yield
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _local_path(repo: RepoLike) -> Path | None:
    """The directory of a repository given as a local path or ``file://`` URL; None for anything else."""
    if not isinstance(repo, str | os.PathLike):
        return None
    text = os.fspath(repo)
    parsed = urlparse(text)
    if parsed.scheme not in {"", "file"}:
        return None
    return Path(parsed.path if parsed.scheme else text).expanduser().resolve()


def save_containers(
    repository: icechunk.Repository,
    prefixes: Iterable[str],
    settings: Settings | None = None,
    accounts: Mapping[str, str] | None = None,
) -> None:
    """Make the saved configuration declare containers for ``prefixes`` (for readers other than stackcube, which
    take a cube's containers from the cube), keeping every container another writer saved meanwhile: the saved
    configuration is read again and merged just before it is saved, and checked after. Only the saved
    configuration and the containers are saved, never ``repository``'s settings for this process."""
    settings = settings or current()
    if set(prefixes) <= _SAVED_WITH.get(repository, frozenset()):
        return  # created here with them
    for attempt in range(SAVE_ATTEMPTS + 1):
        config = icechunk.Repository.fetch_config(repository.storage) or icechunk.RepositoryConfig.default()
        known = set((config.virtual_chunk_containers or {}).keys())
        missing = [p for p in dict.fromkeys(prefixes) if p not in known]
        if not missing:
            return
        if attempt == SAVE_ATTEMPTS:
            break
        access = declare_containers(config, missing, known, settings, accounts=accounts or {})  # no caller credential
        _whole_chunk_requests(config)
        # opened from storage, not reopened: ``reopen`` merges this over the caller's configuration, whose settings
        # for this process alone (a write's manifest splitting and cache, a read's policy) would be saved with it
        icechunk.Repository.open(repository.storage, config=config, authorize_virtual_chunk_access=access).save_config()
    msg = (
        f"the repository configuration still lacks {', '.join(missing)} after {SAVE_ATTEMPTS} saves (other writers "
        "saved theirs over it each time)"
    )
    raise RepositoryError(msg)


SAVE_ATTEMPTS = 5
"""Times :func:`save_containers` saves the configuration before it says it could not."""


URL_DICTIONARY_FROM = 65_535
"""Chunks a manifest holds from which a write has Icechunk compress its chunks' URLs with a dictionary trained for
it (by default from 1,000; 65,535 is the most Icechunk takes). Measured on a piece of 58,080 references, each
commit rewriting it: 0.058 s with the dictionary, 0.044 s without, and the manifest file 4% larger without
(Icechunk compresses the whole file anyway, and a cube's URLs repeat): an append's commit is mostly rewriting
the last piece of each level."""


WRITE_CACHED_REFS = 1_000_000
"""References of manifests a big write keeps in Icechunk's cache (by default 15 million, about 85 bytes each).
Icechunk caches every manifest a commit writes, so a build in stages grew by about 85 bytes a reference committed
until the cache was full: 6.8 million references in 14 stages of a script of Icechunk's alone peaked at 943 MB
with the default cache and at 205 MB with this one. A write reads a manifest back only to rewrite a piece it
appends to, once per commit, so a million references (15 pieces of
:data:`~stackcube.store.layout.MANIFEST_REFS`) are plenty. A repository opened to read keeps Icechunk's default
(the one a build returns keeps this one); the saved configuration never holds it."""


def for_writing(
    repository: icechunk.Repository,
    splits: Mapping[str, int],
    settings: Settings | None = None,
    accounts: Mapping[str, str] | None = None,
    *,
    big: bool = False,
) -> icechunk.Repository:
    """``repository`` (reopened in memory, nothing saved) as a write wants it: its commit writes up to
    ``max_concurrency`` manifests at once (Icechunk writes one at a time by default, and a union has a dozen small
    arrays per scene: 250 scenes were 3,539 requests one after another on S3), and writes the manifest of each
    array ``splits`` names (``/A/0/data``) in pieces of that many time steps: a commit that appends steps rewrites
    the last piece, not the array's every reference, and a read of one date opens one piece. Icechunk applies the
    split to what is written next; what a commit does not touch keeps the manifests it has. Manifests of fewer
    than :data:`URL_DICTIONARY_FROM` chunks are written without a dictionary for their URLs (all of a cube's
    pieces: :data:`~stackcube.store.layout.MANIFEST_REFS`). A ``big`` write (in stages) is opened afresh, one
    request more, so that it caches at most :data:`WRITE_CACHED_REFS` references of manifests: Icechunk's
    ``reopen`` keeps the caches of the repository it reopens, whatever their new configuration says."""
    settings = settings or current()
    config = repository.config
    manifest = config.manifest or icechunk.ManifestConfig()
    manifest.max_concurrent_manifest_fetches_during_commit = settings.max_concurrency
    manifest.virtual_chunk_location_compression = icechunk.ManifestVirtualChunkLocationCompressionConfig(
        min_num_chunks=URL_DICTIONARY_FROM
    )
    if splits:
        along: Any = icechunk.ManifestSplitDimCondition.DimensionName("^time$")
        match = icechunk.ManifestSplitCondition.path_matches
        by_steps: dict[int, list[str]] = {}
        for path, steps in splits.items():
            by_steps.setdefault(steps, []).append(re.escape(path))
        # one condition per piece size, not per array: Icechunk matches every array written against each
        by_path = {match(f"^(?:{'|'.join(paths)})$"): {along: steps} for steps, paths in by_steps.items()}
        manifest.splitting = icechunk.ManifestSplittingConfig.from_dict(by_path)
    config.manifest = manifest
    known = list((config.virtual_chunk_containers or {}).keys())
    access = declare_containers(config, [], known, settings, accounts=accounts or {})
    if not big:
        return _reopened(repository, config=config, authorize_virtual_chunk_access=access)
    caching = config.caching or icechunk.CachingConfig()
    caching.num_chunk_refs = min(caching.num_chunk_refs or WRITE_CACHED_REFS, WRITE_CACHED_REFS)  # a smaller one kept
    config.caching = caching  # in memory: ``open`` merges it over the saved configuration, and saves nothing
    try:
        opened = icechunk.Repository.open(repository.storage, config=config, authorize_virtual_chunk_access=access)
    except icechunk.IcechunkError as exc:
        failure = _failure(f"{repo_name(repository)} cannot be opened: {_first_line(exc)}", exc)
    else:
        return _remembered(repository, opened)
    raise failure  # outside the except block: Icechunk's own error is no __context__ of ours


def with_containers(
    repository: icechunk.Repository,
    prefixes: Iterable[str],
    settings: Settings | None = None,
    credentials: Credentials | None = None,
    accounts: Mapping[str, str] | None = None,
) -> icechunk.Repository:
    """``repository`` (reopened in memory, nothing saved) with containers for ``prefixes`` it does not declare, and
    every container authorized again when ``credentials`` need the Azure ``accounts`` to answer."""
    settings = settings or current()
    accounts = accounts or {}
    config = repository.config
    known = set((config.virtual_chunk_containers or {}).keys())
    missing = [p for p in dict.fromkeys(prefixes) if p not in known]
    if not missing and not (accounts and credentials is not None):
        return repository
    access = declare_containers(config, missing, known, settings, credentials=credentials, accounts=accounts)
    return repository.reopen(config=config, authorize_virtual_chunk_access=access)


def _no_preload(config: icechunk.RepositoryConfig) -> bool:
    """Make ``config`` preload no manifest when a session opens (in memory; the saved configuration keeps its own);
    return whether it already did. Icechunk's default guess loads the manifests of every coordinate-named array of
    every level, which stackcube never needs at once: opening reads no coordinate array
    (:mod:`stackcube.store.coords`), a manifest is read with the first chunk of its array, and a refresh's first
    read of a 100,000-item cube waited 0.6 s for the preload (1 ms without)."""
    manifest = config.manifest or icechunk.ManifestConfig()
    preload = manifest.preload
    if preload is not None and preload.preload_if == icechunk.ManifestPreloadCondition.false():
        return True
    manifest.preload = icechunk.ManifestPreloadConfig(preload_if=icechunk.ManifestPreloadCondition.false())
    config.manifest = manifest
    return False


def _read_policy(config: icechunk.RepositoryConfig, settings: Settings) -> None:
    """Icechunk's own retries off, and each attempt bounded by ``settings.request_timeout`` (for the repository
    and the S3 sources it reads; HTTP sources take theirs from their container): the read path retries."""
    storage = config.storage or icechunk.StorageSettings()
    storage.retries = icechunk.StorageRetriesSettings(max_tries=1)
    ms = int(settings.request_timeout * 1000)
    storage.timeouts = icechunk.StorageTimeoutSettings(
        connect_timeout_ms=min(10_000, ms), read_timeout_ms=ms, operation_attempt_timeout_ms=ms
    )
    config.storage = storage


def repo_url(repo: RepoLike) -> str | None:
    """The path or URL a user types to reach a repository; None for an Icechunk Storage or Repository."""
    return os.fspath(repo) if isinstance(repo, str | os.PathLike) else None


def repo_name(repo: RepoLike) -> str:
    """How messages name a repository: its path or URL, else what Icechunk says of its storage."""
    if isinstance(repo, str | os.PathLike):
        return os.fspath(repo)
    return str(repo.storage if isinstance(repo, icechunk.Repository) else repo).splitlines()[0]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


STAGE_METADATA = {"stackcube": "stage"}
"""What marks a big build's stage snapshots (references being written, below its commit): part of a cube, which no
read opens (:func:`readonly_session`), a refresh passes over and ``stackcube log`` tells as one line."""


def is_stage(metadata: Mapping[str, Any]) -> bool:
    """Whether a snapshot's ``metadata`` marks it as a build's stage (:data:`STAGE_METADATA`)."""
    return metadata.get("stackcube") == STAGE_METADATA["stackcube"]


def readonly_session(
    repository: icechunk.Repository,
    *,
    branch: str | None = None,
    tag: str | None = None,
    snapshot: str | None = None,
    repo: RepoLike | None = None,
) -> icechunk.Session:
    """A read-only session on a branch's tip (default ``main``), a tag or a snapshot; a name the repository does not
    have is a :class:`VersionNotFoundError` listing the ones it has, and so is a snapshot that is a build's stage
    (asking costs a snapshot opened by id one more request on object storage: the snapshot's metadata)."""
    try:
        if tag is not None:
            return repository.readonly_session(tag=tag)
        if snapshot is None:
            return repository.readonly_session(branch=branch or "main")
        session = repository.readonly_session(snapshot_id=snapshot)
        stage = is_stage(repository.lookup_snapshot(snapshot).metadata)
    except (icechunk.RefNotFoundError, icechunk.SnapshotNotFoundError):
        pass
    except icechunk.IcechunkError as exc:
        if exc.kind not in {icechunk.ErrorKind.INVALID_SNAPSHOT_ID, icechunk.ErrorKind.INVALID_REF_NAME}:
            raise
    else:
        if not stage:
            return session
        # a build's stage (STAGE_METADATA): part of its references, never a cube to read
        name = repo_name(repo if repo is not None else repository)
        msg = (
            f"snapshot {snapshot} of {name} is a stage of a build (part of its references, written before its "
            f"commit), not a cube: open the build's commit above it (stackcube log {name} lists it)"
        )
        raise VersionNotFoundError(msg)
    # out of the except block: Icechunk's error is no __context__ of ours (the message lists what there is)
    raise version_not_found(repository, branch=branch, tag=tag, snapshot=snapshot, repo=repo)


def version_not_found(
    repository: icechunk.Repository,
    *,
    branch: str | None = None,
    tag: str | None = None,
    snapshot: str | None = None,
    repo: RepoLike | None = None,
) -> VersionNotFoundError:
    """The error for a branch, tag or snapshot a repository does not have, with the ones it has."""
    name = repo_name(repo if repo is not None else repository)
    branches, tags = sorted(repository.list_branches()), sorted(repository.list_tags())
    listed = f"its branches: {', '.join(branches) or 'none'}; its tags: {', '.join(tags) or 'none'}"
    if tag is not None:
        return VersionNotFoundError(f"{name} has no tag {tag!r} ({listed})")
    if snapshot is not None:
        return VersionNotFoundError(f"{name} has no snapshot {snapshot!r} (stackcube log {name} lists them; {listed})")
    return VersionNotFoundError(f"{name} has no branch {branch!r} ({listed})")


def _whole_chunk_requests(config: icechunk.RepositoryConfig) -> bool:
    """Make ``config`` fetch every chunk with one request (other storage settings kept); return whether it did."""
    storage = config.storage or icechunk.StorageSettings()
    concurrency = storage.concurrency or icechunk.StorageConcurrencySettings()
    if concurrency.ideal_concurrent_request_size == ONE_REQUEST:
        return True
    concurrency.ideal_concurrent_request_size = ONE_REQUEST
    storage.concurrency = concurrency
    config.storage = storage
    return False


def memory_repository() -> icechunk.Repository:
    """A new, empty repository in memory (a cube that lives as long as the process)."""
    return icechunk.Repository.create(icechunk.in_memory_storage())


def quiet_logs() -> None:
    """Show only Icechunk's errors on stderr (it warns, e.g., that a local repository is not safe for concurrent
    commits, on every open, reads included); ``ICECHUNK_LOG``, when set, wins. Applied when stackcube is imported;
    ``icechunk.set_logs_filter("warn")`` afterwards shows them again."""
    if "ICECHUNK_LOG" not in os.environ:
        icechunk.set_logs_filter("error")


quiet_logs()
