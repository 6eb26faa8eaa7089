"""A union level's tile table read back (:func:`read_tile_refs`): which source, offset and length hold each member
tile, so that reads fetch adjacent tiles with merged ranged GETs instead of one Icechunk read each.

The table is the cube's own word, and a cube may come from someone else: every href it names must lie in a
container the cube declares (:func:`declared_container`), and those containers within ``allow=``, before any
request is made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlparse

import numpy as np
import zarr
import zarr.errors

from stackcube._hrefs import credential_for, redact
from stackcube.errors import UntrustedSourceError
from stackcube.settings import Credentials, Settings, with_credentials
from stackcube.store.guard import GuardedStore
from stackcube.store.layout import TILES, CubeMetadata
from stackcube.store.repo import check_allowed
from stackcube.union import SourceRef, TileRefs

__all__ = ["declared_container", "read_tile_refs"]


def read_tile_refs(
    store: GuardedStore,
    path: str,
    metadata: CubeMetadata,
    *,
    allow: tuple[str, ...] | None,
    credentials: Credentials | None,
    settings: Settings,
) -> TileRefs | None:
    """The tile table of the union level at ``path`` (:func:`~stackcube.store.layout.union_tiles`), for reads by
    merged ranged GETs, its hrefs checked against the cube's containers and those against ``allow``.

    None for a cube written before the table, or where a source takes a credential only Icechunk can use (an
    Icechunk S3 or GCS credential, a refreshable Azure token): those tiles are read through Icechunk, one GET each.

    Parameters
    ----------
    store
        The cube's store, as every read goes through it.
    path
        The union level's node, e.g. ``union_EPSG32735_10m/0``.
    metadata
        The cube's description: the containers it declares, their Azure accounts.
    allow
        URL prefixes the caller lets the cube read from (None: any the cube declares).
    credentials
        What reading the sources takes, per container prefix, given at open (or the settings').
    settings
        How to read (retries, timeouts); the reads take ``credentials`` with them.

    Raises UntrustedSourceError, before any request, for an href under none of the declared containers, or a
    declared container outside ``allow``.

    Examples
    --------
    >>> refs = read_tile_refs(store, "union_EPSG32735_10m/0", metadata, allow=None, credentials=None,
    ...                       settings=current())  # doctest: +SKIP
    >>> refs.sources[0].href  # doctest: +SKIP
    'file:///.../offsets/data/A.tif'
    """
    try:
        group = zarr.open_group(store, path=path, mode="r")
        if not set(TILES) <= set(group.array_keys()):
            return None
        tiles, sources = (np.asarray(cast("zarr.Array[Any]", group[name])[...]) for name in TILES)
    except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None
    where = store.repo or "the cube"
    refs = []
    for text in sources.tolist():
        source = json.loads(str(text))
        href = str(source["href"])
        prefix = declared_container(href, metadata, where, path)
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
    if allow is not None:  # each declared prefix once (every href lies under one), before any request
        check_allowed(metadata.containers, allow, where)
    return TileRefs(tiles, tuple(refs), with_credentials(settings, credentials), repo=store.repo)


def declared_container(href: str, metadata: CubeMetadata, repo: str, path: str) -> str:
    """The container of the cube's that holds ``href`` (a source a union's tile table names); a tile table is the
    cube's own word, so an href under no declared container (a cube altered to send readers elsewhere) is refused
    before any request (the declared containers were checked against ``allow=``).

    Examples
    --------
    >>> declared_container("https://elsewhere.example/a.tif", metadata, "cube.icechunk", "u/0")  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    stackcube.errors.UntrustedSourceError: cube.icechunk: the tile table of u/0 names https://elsewhere.example/...
    """
    prefix = max((p for p in metadata.containers if href.startswith(p)), key=len, default=None)
    if prefix is None:
        msg = (
            f"{repo}: the tile table of {path} names {redact(href)}, under none of the source prefixes the cube "
            f"declares ({', '.join(metadata.containers) or 'none'}); the cube was altered, and nothing was read"
        )
        raise UntrustedSourceError(msg)
    return prefix
