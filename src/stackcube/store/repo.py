"""Repositories: opening or creating the Icechunk repository of a cube, with virtual chunk containers for exactly the
URL prefixes its sources live under, and the ``allow`` check.

Reading authorizes exactly the containers a repository declares (never a wildcard), anonymously or with the
environment's credentials (Icechunk reads them; stackcube never does); no credential is written into the
repository.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import icechunk

from stackcube.errors import RepositoryError, SourceError, UntrustedSourceError
from stackcube.settings import Settings, current

__all__ = [
    "ONE_REQUEST",
    "RepoLike",
    "check_allowed",
    "container_prefixes",
    "memory_repository",
    "open_repository",
    "quiet_logs",
]

type RepoLike = str | os.PathLike[str] | icechunk.Storage | icechunk.Repository
"""Where a cube lives: a local path, an ``s3://bucket/prefix`` URL, an ``icechunk.Storage`` or a Repository."""

ONE_REQUEST = 1 << 30
"""Icechunk splits a chunk fetch into ranged GETs of an ideal size; a source tile is one GET, so never split."""


def container_prefixes(hrefs: Iterable[str]) -> list[str]:
    """The longest common directory prefix of the hrefs of each scheme and host (each ends with ``/``)."""
    by_host: dict[str, list[list[str]]] = {}
    for href in hrefs:
        parsed = urlparse(href)
        root = f"{parsed.scheme}://{parsed.netloc}/"
        by_host.setdefault(root, []).append(parsed.path.lstrip("/").split("/")[:-1])
    prefixes = []
    for root, dirs in sorted(by_host.items()):
        common = os.path.commonprefix(dirs)  # noqa: RUF071 - on lists of path parts it compares whole parts
        prefixes.append(root + "".join(f"{part}/" for part in common))
    return prefixes


def _container(prefix: str, settings: Settings) -> icechunk.VirtualChunkContainer:
    scheme = urlparse(prefix).scheme
    store: Any
    if scheme in {"http", "https"}:
        store = icechunk.http_store()
    elif scheme == "s3":
        s3 = settings.s3
        store = icechunk.s3_store(
            region=s3.region,
            endpoint_url=s3.endpoint,
            allow_http=s3.allow_http,
            force_path_style=bool(s3.endpoint),
            anonymous=not s3.signed,
        )
    elif scheme == "file":
        store = icechunk.local_filesystem_store(urlparse(prefix).path)
    else:
        msg = f"sources under {prefix} cannot be read by Icechunk (scheme {scheme!r}); use file, http(s) or s3 URLs"
        raise SourceError(msg)
    return icechunk.VirtualChunkContainer(prefix, store)


def _credential(prefix: str, settings: Settings) -> Any:
    scheme = urlparse(prefix).scheme
    if scheme in {"http", "https"}:
        return icechunk.credentials.HttpAccess
    if scheme == "file":
        return icechunk.credentials.LocalFileSystemAccess
    if scheme == "s3":
        if settings.s3.signed:
            return icechunk.Credentials.S3(icechunk.s3_credentials(from_env=True))
        return icechunk.Credentials.S3(icechunk.s3_anonymous_credentials())
    return None


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
    if parsed.scheme in {"", "file"}:
        return icechunk.local_filesystem_storage(str(Path(parsed.path if parsed.scheme else text).resolve()))
    msg = f"repository {text!r}: use a local path, an s3:// URL, an icechunk.Storage or an icechunk.Repository"
    raise RepositoryError(msg)


def open_repository(
    repo: RepoLike,
    *,
    prefixes: Iterable[str] = (),
    create: bool = False,
    allow: Iterable[str] | None = None,
    settings: Settings | None = None,
) -> icechunk.Repository:
    """Open (or create) a repository whose containers cover ``prefixes``, authorizing exactly its containers.

    A given ``icechunk.Repository`` is returned as it is unless it lacks a container for one of ``prefixes`` or
    would split a chunk into several requests. The configuration is saved only when a container was added. With
    ``allow`` (URL prefixes), a repository that declares a container outside all of them is refused before
    anything is read through it.
    """
    settings = settings or current()
    given = repo if isinstance(repo, icechunk.Repository) else None
    storage = given.storage if given is not None else _storage(repo, settings)  # type: ignore[arg-type]
    exists = given is not None or icechunk.Repository.exists(storage)
    if not exists and not create:
        msg = f"there is no Icechunk repository at {repo}; build one with stackcube.build_cube"
        raise RepositoryError(msg)
    if given is not None:
        config = given.config
    else:
        config = (icechunk.Repository.fetch_config(storage) if exists else None) or icechunk.RepositoryConfig.default()
    known = set((config.virtual_chunk_containers or {}).keys())
    added = [prefix for prefix in dict.fromkeys(prefixes) if prefix not in known]
    if allow is not None:
        check_allowed(sorted(known.union(added)), allow, repo)
    whole = _whole_chunk_requests(config)
    if given is not None and not added and whole:
        return given
    for prefix in added:
        config.set_virtual_chunk_container(_container(prefix, settings))
    access = {prefix: _credential(prefix, settings) for prefix in sorted(known.union(added))}
    if given is not None:
        repository = given.reopen(config=config, authorize_virtual_chunk_access=access)
    elif exists:
        repository = icechunk.Repository.open(storage, config=config, authorize_virtual_chunk_access=access)
    else:
        repository = icechunk.Repository.create(storage, config=config, authorize_virtual_chunk_access=access)
    if added or not exists:
        repository.save_config()
    return repository


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


def check_allowed(prefixes: Iterable[str], allow: Iterable[str], repo: Any = "the repository") -> None:
    """Refuse container ``prefixes`` that do not lie under one of the ``allow`` prefixes."""
    allowed = [a if a.endswith("/") else f"{a}/" for a in allow]
    outside = [p for p in prefixes if not any(p.startswith(a) for a in allowed)]
    if outside:
        msg = (
            f"{repo} reads sources under {', '.join(outside)}, outside the allowed prefixes "
            f"{', '.join(allowed) or '(none)'}; add them to allow= only if you trust this cube"
        )
        raise UntrustedSourceError(msg)


def memory_repository() -> icechunk.Repository:
    """A new, empty repository in memory (a cube that lives as long as the process)."""
    return icechunk.Repository.create(icechunk.in_memory_storage())


def quiet_logs() -> None:
    """Show only Icechunk's errors on stderr (it warns, e.g., that a local repository is not safe for concurrent
    commits); ``ICECHUNK_LOG``, when set, wins."""
    if "ICECHUNK_LOG" not in os.environ:
        icechunk.set_logs_filter("error")
