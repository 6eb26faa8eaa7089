"""Icechunk stage: a CubePlan becomes a committed repository of virtual references, and opens back as a DataTree.

The only module that imports icechunk. Layout written for each grid group ``G`` of the plan::

    /                    attrs: stackcube version, the search that made the cube
    /G                   attrs: ``multiscales`` layout of its levels (zarr-conventions), ``proj:code``
    /G/0/data            (time, band, y, x) virtual chunks, each checked against its source's ETag
    /G/0/time, band, y, x   pixel-centre coordinates; /G/0/spatial_ref (crs_wkt, GeoTransform) for rioxarray/odc-geo
    /G/0/id              item ids per time step; other item properties along time
    /G/0/source_href     per (time, band): where the chunks come from, and /G/0/source_etag: what they were
    /G/1, /G/2, ...      the same for the sources' internal overviews, when every source has that level on one
                         shared tile grid (full resolution is /G/0)
    /sources             every indexed source: item, asset, href, ETag, properties, TIFF manifest (for refreshes)

Groups on one pixel lattice but not one tile grid are described in the root attributes as *unions*
(:class:`stackcube.plan.UnionPlan`); reading assembles each as one array (:mod:`stackcube.union`), and
``open_cube`` adds it to the tree as ``/<union>/0``.

Virtual chunk containers are declared for exactly the URL prefixes the sources live under, and reading
authorizes exactly those (never a wildcard), anonymously or with the environment's credentials; no credential
is written into the repository.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import icechunk
import numpy as np
import pyproj
import xarray as xr
import zarr
from zarr.storage import WrapperStore

from stackcube._version import __version__
from stackcube.errors import (
    ConcurrentUpdateError,
    RepositoryError,
    SourceChangedError,
    SourceError,
    UntrustedSourceError,
)
from stackcube.grid import Source
from stackcube.plan import CubePlan, GroupPlan
from stackcube.tiff import TiffManifest, TiffSegmentCodec

__all__ = [
    "SOURCES",
    "StoredCube",
    "check_allowed",
    "array_names",
    "container_prefixes",
    "cube_info",
    "assemble_union",
    "open_datatree",
    "open_level",
    "open_repository",
    "read_stored",
    "write_plan",
]

type RepoLike = str | os.PathLike[str] | icechunk.Storage | icechunk.Repository


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


def _s3_settings() -> dict[str, Any]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "endpoint_url": endpoint,
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        "force_path_style": bool(endpoint),
    }


def _has_aws_credentials() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))


def _container(prefix: str) -> icechunk.VirtualChunkContainer:
    scheme = urlparse(prefix).scheme
    store: Any
    if scheme in {"http", "https"}:
        store = icechunk.http_store()
    elif scheme == "s3":
        store = icechunk.s3_store(**_s3_settings(), anonymous=not _has_aws_credentials())
    elif scheme == "file":
        store = icechunk.local_filesystem_store(urlparse(prefix).path)
    else:
        msg = f"sources under {prefix} cannot be read by Icechunk (scheme {scheme!r})"
        raise SourceError(msg)
    return icechunk.VirtualChunkContainer(prefix, store)


def _credential(prefix: str) -> Any:
    scheme = urlparse(prefix).scheme
    if scheme in {"http", "https"}:
        return icechunk.credentials.HttpAccess
    if scheme == "file":
        return icechunk.credentials.LocalFileSystemAccess
    if scheme == "s3":
        if _has_aws_credentials():
            return icechunk.Credentials.S3(icechunk.s3_credentials(from_env=True))
        return icechunk.Credentials.S3(icechunk.s3_anonymous_credentials())
    return None


def _storage(repo: str | os.PathLike[str] | icechunk.Storage) -> icechunk.Storage:
    if isinstance(repo, icechunk.Storage):
        return repo
    text = os.fspath(repo)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        settings = _s3_settings()
        return icechunk.s3_storage(
            bucket=parsed.netloc,
            prefix=parsed.path.strip("/") or None,
            region=settings["region"],
            endpoint_url=settings["endpoint_url"],
            allow_http=settings["allow_http"],
            force_path_style=settings["force_path_style"],
            from_env=_has_aws_credentials(),
            anonymous=not _has_aws_credentials(),
        )
    if parsed.scheme in {"", "file"}:
        return icechunk.local_filesystem_storage(str(Path(parsed.path if parsed.scheme else text).resolve()))
    msg = f"repository {text!r}: use a local path, an s3:// URL, an icechunk.Storage or an icechunk.Repository"
    raise SourceError(msg)


def open_repository(
    repo: RepoLike, *, prefixes: Iterable[str] = (), create: bool = False, allow: Iterable[str] | None = None
) -> icechunk.Repository:
    """Open (or create) a repository whose containers cover ``prefixes``, authorizing exactly its containers.

    A given ``icechunk.Repository`` is returned as it is unless it lacks a container for one of ``prefixes`` or
    would split a chunk into several requests.
    The configuration is saved only when a container was added. With ``allow`` (URL prefixes), a repository
    that declares a container outside all of them is refused before anything is read through it.
    """
    given = repo if isinstance(repo, icechunk.Repository) else None
    storage = given.storage if given is not None else _storage(repo)  # type: ignore[arg-type]
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
        config.set_virtual_chunk_container(_container(prefix))
    access = {prefix: _credential(prefix) for prefix in sorted(known.union(added))}
    if given is not None:
        repository = given.reopen(config=config, authorize_virtual_chunk_access=access)
    elif exists:
        repository = icechunk.Repository.open(storage, config=config, authorize_virtual_chunk_access=access)
    else:
        repository = icechunk.Repository.create(storage, config=config, authorize_virtual_chunk_access=access)
    if added or not exists:
        repository.save_config()
    return repository


ONE_REQUEST = 1 << 30
"""Icechunk splits a chunk fetch into ranged GETs of an ideal size; a source tile is one GET, so never split."""


def _whole_chunk_requests(config: icechunk.RepositoryConfig) -> bool:
    """Make ``config`` fetch every chunk with one request (other storage settings kept); return whether it did."""
    settings = config.storage or icechunk.StorageSettings()
    concurrency = settings.concurrency or icechunk.StorageConcurrencySettings()
    if concurrency.ideal_concurrent_request_size == ONE_REQUEST:
        return True
    concurrency.ideal_concurrent_request_size = ONE_REQUEST
    settings.concurrency = concurrency
    config.storage = settings
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


def _checksum(href: str, etag: str, last_modified: str) -> Any:
    if etag and urlparse(href).scheme != "file":
        if urlparse(href).scheme in {"http", "https"}:
            # Icechunk strips one pair of quotes from an ETag and sends the rest as If-Match; HTTP servers (nginx,
            # RFC 9110) compare quoted entity-tags, so the quoted ETag goes in one more pair of quotes
            return f'"{etag}"' if etag.startswith('"') else f'""{etag}""'
        return etag
    if last_modified:
        # local files: obstore and Icechunk derive different ETags from the same inode, so use the modification time
        from datetime import timedelta

        when = datetime.fromisoformat(last_modified)
        if when.microsecond:
            # Icechunk keeps whole seconds and refuses anything modified after: round up, not down
            when = when.replace(microsecond=0) + timedelta(seconds=1)
        return when
    return None


def _crs_attrs(crs: str) -> dict[str, Any]:
    return {"proj:code": crs} if crs.startswith("EPSG:") else {"proj:wkt2": crs}


# Registrations of the Zarr conventions the group attributes follow (https://github.com/zarr-conventions)
_CONVENTIONS = [
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


def multiscales_attrs(group: GroupPlan) -> dict[str, Any]:
    """Attributes of a group node: its levels as a zarr-conventions ``multiscales`` layout, with CRS and grids."""
    base = group.transform
    layout = []
    for n, level in enumerate((group, *group.overviews)):
        a, _, c, _, e, f = level.transform
        entry: dict[str, Any] = {"asset": str(n)}
        if n:
            entry["derived_from"] = "0"
        # relative to level 0: pixel size ratio and the origin's shift in this level's pixels (y, x)
        entry["transform"] = {
            "scale": [e / base[4], a / base[0]],
            "translation": [(f - base[5]) / e + 0.0, (c - base[2]) / a + 0.0],
        }
        entry["spatial:shape"] = list(level.shape[2:])
        entry["spatial:transform"] = list(level.transform)
        layout.append(entry)
    return {
        "zarr_conventions": _CONVENTIONS,
        "multiscales": {"layout": layout},
        "spatial:dimensions": ["y", "x"],
        **_crs_attrs(group.crs),
    }


def _coords(group: GroupPlan) -> xr.Dataset:
    """A level's coordinates: time, band, y and x, ``spatial_ref``, item ids and properties, and provenance.

    Each level holds all of them (they are small): DataTree children inherit only indexed coordinates, and a
    level opened alone (``xr.open_zarr(..., group="G/1")``) is then complete.
    """
    per_band_href = np.full(group.shape[:2], "", dtype=object)
    per_band_etag = np.full(group.shape[:2], "", dtype=object)
    per_chunk = group.shape[1] // group.source_index.shape[1]
    for t in range(group.shape[0]):
        for nb in range(group.source_index.shape[1]):
            used = sorted(set(group.source_index[t, nb].ravel().tolist()) - {-1})
            for k in range(per_chunk):
                per_band_href[t, nb * per_chunk + k] = " ".join(group.sources.href[i] for i in used)
                per_band_etag[t, nb * per_chunk + k] = " ".join(group.sources.etag[i] for i in used)
    coords: dict[str, Any] = {
        "time": ("time", group.time),
        "band": ("band", np.array(group.bands, dtype=object)),
        "id": ("time", np.array([",".join(ids) for ids in group.items], dtype=object)),
        "source_href": (("time", "band"), per_band_href),
        "source_etag": (("time", "band"), per_band_etag),
    }
    for name, values in group.properties.items():
        if name in coords or name in {"datetime", "x", "y", "spatial_ref"}:
            continue
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int, float} and kinds:
            coords[name] = ("time", np.array([np.nan if v is None else v for v in values], dtype=float))
        elif kinds == {str}:
            coords[name] = ("time", np.array(["" if v is None else v for v in values], dtype=object))
    a, b, c, d, e, f = group.transform
    wkt = pyproj.CRS.from_user_input(group.crs).to_wkt()
    coords["y"] = ("y", group.y)
    coords["x"] = ("x", group.x)
    coords["spatial_ref"] = xr.Variable(
        (),
        np.int64(0),
        {"crs_wkt": wkt, "spatial_ref": wkt, "GeoTransform": " ".join(repr(v) for v in (c, a, b, f, d, e))},
    )
    ds = xr.Dataset(coords=coords)
    ds["x"].attrs.update(standard_name="projection_x_coordinate", axis="X")
    ds["y"].attrs.update(standard_name="projection_y_coordinate", axis="Y")
    return ds


def _data_attrs(group: GroupPlan, coord_names: Iterable[str]) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "grid_mapping": "spatial_ref",
        "coordinates": " ".join(n for n in coord_names if n not in {"time", "band", "y", "x"}),
    }
    fill = group.fill_value
    if fill is not None and not (isinstance(fill, float) and math.isnan(fill)):
        attrs["_FillValue"] = fill
    if group.scale_offset is not None:
        attrs["scale_factor"], attrs["add_offset"] = group.scale_offset
    return attrs


def _write_group(session: icechunk.Session, group: GroupPlan, bar: Any = None) -> None:
    xr.Dataset(attrs=multiscales_attrs(group)).to_zarr(
        session.store, group=group.name, mode="w", zarr_format=3, consolidated=False
    )
    for n, level in enumerate((group, *group.overviews)):
        _write_level(session, level, f"{group.name}/{n}", bar)


def _write_level(session: icechunk.Session, level: GroupPlan, path: str, bar: Any) -> None:
    coords = _coords(level)
    coords.to_zarr(session.store, group=path, mode="w", zarr_format=3, consolidated=False)
    node = zarr.open_group(session.store, path=path, mode="r+")
    node.create_array(
        "data",
        shape=level.shape,
        chunks=level.chunks,
        dtype=level.dtype,
        fill_value=level.fill_value if level.fill_value is not None else 0,
        serializer=TiffSegmentCodec(recipe=level.recipe),
        compressors=None,
        dimension_names=("time", "band", "y", "x"),
        attributes=_data_attrs(level, [str(n) for n in coords.coords]),
    )
    nt, nb, ny, nx = level.source_index.shape
    sources = level.sources
    for t in range(nt):
        for b in range(nb):
            index = level.source_index[t, b]
            for i in np.unique(index[index >= 0]).tolist():
                mine = index == i
                locations = np.where(mine, sources.href[i], "").ravel().tolist()
                offsets = np.where(mine, level.offsets[t, b], 0).astype(np.uint64).ravel()
                lengths = np.where(mine, level.lengths[t, b], 0).astype(np.uint64).ravel()
                checksum = _checksum(sources.href[i], sources.etag[i], sources.last_modified[i])
                failed = session.store.set_virtual_refs_arr(
                    f"{path}/data",
                    (1, 1, ny, nx),
                    locations,
                    offsets,
                    lengths,
                    arr_offset=(t, b, 0, 0),
                    checksum=checksum,
                )
                if failed:
                    msg = f"{sources.href[i]}: Icechunk refused {len(failed)} references (no container?)"
                    raise SourceError(msg)
                if bar is not None:
                    bar.update(int(mine.sum()))


SOURCES = "sources"
"""Name of the node holding the table of every indexed source (one row per item and asset) and its manifest."""


def _sources_table(sources: Sequence[Source]) -> xr.Dataset:
    def column(values: Iterable[str]) -> tuple[str, np.ndarray]:
        return ("source", np.array(list(values), dtype=object))

    return xr.Dataset(
        {
            "item_id": column(s.item_id for s in sources),
            "asset": column(s.asset for s in sources),
            "band": column(s.band for s in sources),
            "datetime": column(s.datetime.isoformat() for s in sources),
            "href": column(s.manifest.href for s in sources),
            "etag": column(s.manifest.etag or "" for s in sources),
            "properties": column(json.dumps(s.properties, sort_keys=True, default=str) for s in sources),
            "manifest": column(json.dumps(s.manifest.to_dict(), separators=(",", ":")) for s in sources),
        },
        attrs={"description": "every indexed source and its TIFF manifest, so a refresh rereads no unchanged header"},
    )


@dataclass(frozen=True, slots=True)
class StoredCube:
    """What a committed cube says about how it was made: enough to refresh it without restating anything."""

    snapshot_id: str
    """The snapshot this was read from."""
    query: dict[str, Any]
    """The search (``Query.to_dict()``)."""
    options: dict[str, Any]
    """``assets``, ``overlap``, ``sort_by``, ``groupby``."""
    sources: tuple[Source, ...]
    """Every indexed source with its manifest."""


def read_stored(session: icechunk.Session) -> StoredCube:
    """Read a cube's search, options and source table from a session (no source is touched)."""
    root = zarr.open_group(session.store, mode="r")
    info: dict[str, Any] = dict(cast("Any", root.attrs.get("stackcube")) or {})
    if not info:
        msg = "this repository holds no stackcube cube (no 'stackcube' attributes at its root)"
        raise RepositoryError(msg)
    sources: list[Source] = []
    if SOURCES in root.group_keys():
        node = zarr.open_group(session.store, path=SOURCES, mode="r")
        columns = {name: np.asarray(cast("Any", node[name])[...]) for name in node.array_keys()}
        for i in range(len(columns.get("item_id", []))):
            sources.append(
                Source(
                    item_id=str(columns["item_id"][i]),
                    asset=str(columns["asset"][i]),
                    band=str(columns["band"][i]),
                    datetime=datetime.fromisoformat(str(columns["datetime"][i])),
                    properties=json.loads(str(columns["properties"][i])),
                    manifest=TiffManifest.from_dict(json.loads(str(columns["manifest"][i]))),
                )
            )
    return StoredCube(
        snapshot_id=session.snapshot_id,
        query=dict(info.get("query") or {}),
        options=dict(info.get("options") or {}),
        sources=tuple(sources),
    )


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
) -> tuple[icechunk.Repository, str]:
    """Commit the plan on ``branch`` in one commit; return the repository and the snapshot id.

    The commit replaces every group of the cube (groups no longer planned are deleted) and the source table.
    With ``parent``, the commit happens only if the branch is still at that snapshot, else
    :class:`ConcurrentUpdateError`; a commit that loses a race with another writer raises it too. Either way
    nothing of this write is committed: a failed or killed write leaves the branch where it was.
    """
    hrefs = {h for g in plan.groups for h in g.sources.href}  # overview levels read the same sources
    repository = open_repository(repo, prefixes=container_prefixes(hrefs), create=True)
    session = repository.writable_session(branch)
    if parent is not None and session.snapshot_id != parent:
        msg = f"branch {branch} moved from {parent} to {session.snapshot_id} while this write was prepared"
        raise ConcurrentUpdateError(msg)
    root = zarr.open_group(session.store, mode="a")
    keep = {g.name for g in plan.groups} | {SOURCES}
    for name in list(root.group_keys()):
        if name not in keep:
            del root[name]
    root.attrs.update(
        {
            "stackcube": {
                "version": __version__,
                "query": plan.query.to_dict(),
                "options": plan.options,
                "groups": [g.name for g in plan.groups],
                "unions": {u.name: u.to_dict() for u in plan.unions},
            }
        }
    )
    _sources_table(plan.sources).to_zarr(session.store, group=SOURCES, mode="w", zarr_format=3, consolidated=False)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = sum(level.n_chunks for g in plan.groups for level in (g, *g.overviews))
        bar = tqdm(total=total, desc="writing virtual references", unit="ref", leave=False)
    try:
        for group in plan.groups:
            _write_group(session, group, bar)
    finally:
        if bar is not None:
            bar.close()
    counts = ", ".join(f"{g.name} {g.shape[0]} dates x {g.shape[1]} bands" for g in plan.groups)
    try:
        snapshot = session.commit(message or f"stackcube build: {counts}", metadata=metadata or None)
    except icechunk.ConflictError as exc:
        msg = f"another writer committed to branch {branch} first ({exc}); nothing of this write was committed"
        raise ConcurrentUpdateError(msg) from None
    if tag:
        repository.create_tag(tag, snapshot)
    return repository, snapshot


class _GuardedStore(WrapperStore[Any]):
    """Turns Icechunk's refusal of a changed source into :class:`SourceChangedError` naming it."""

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        try:
            return await self._store.get(key, prototype, byte_range)
        except icechunk.IcechunkError as exc:
            text = str(exc)
            if "checksum of the object owning the virtual chunk has changed" in text:
                source = text.split("changed (", 1)[-1].split(")", 1)[0]
                msg = (
                    f"{source} changed since the cube was built (its ETag no longer matches); refresh the cube "
                    "(stackcube refresh) to index the new version"
                )
                raise SourceChangedError(msg) from None
            raise


def cube_info(
    repo: RepoLike, *, branch: str | None = None, tag: str | None = None, snapshot: str | None = None
) -> dict[str, Any]:
    """The cube's root ``stackcube`` attributes (search, options, groups, unions): one metadata read."""
    session = _read_session(repo, branch, tag, snapshot, None)
    return dict(cast("Any", zarr.open_group(session.store, mode="r").attrs.get("stackcube")) or {})


def array_names(info: dict[str, Any]) -> list[str]:
    """The arrays a stored cube presents (its root ``stackcube`` attributes): unions, then groups on their own."""
    unions = dict(info.get("unions") or {})
    members = {m for union in unions.values() for m in union["members"]}
    return [*unions, *(g for g in info.get("groups") or [] if g not in members)]


def _read_session(
    repo: RepoLike,
    branch: str | None,
    tag: str | None,
    snapshot: str | None,
    allow: Iterable[str] | None,
) -> icechunk.Session:
    repository = open_repository(repo, allow=allow)
    if sum(x is not None for x in (branch, tag, snapshot)) > 1:
        msg = "give at most one of branch, tag and snapshot"
        raise ValueError(msg)
    if tag is not None:
        return repository.readonly_session(tag=tag)
    if snapshot is not None:
        return repository.readonly_session(snapshot_id=snapshot)
    return repository.readonly_session(branch=branch or "main")


def _xarray_chunks(chunks: Any) -> Any:
    """None: dask, one chunk per source tile; False: no dask (a read is one Zarr call fetching its tiles at once)."""
    if chunks is None:
        return {}
    return None if chunks is False else chunks


_OPEN: dict[str, Any] = {"engine": "zarr", "consolidated": False, "zarr_format": 3, "decode_coords": "all"}


def open_datatree(
    repo: RepoLike,
    *,
    branch: str | None = None,
    tag: str | None = None,
    snapshot: str | None = None,
    mask_and_scale: bool = True,
    chunks: Any = None,
    allow: Iterable[str] | None = None,
) -> xr.DataTree:
    """Open a cube lazily: one child per grid group, dask chunks aligned with the source tiles."""
    session = _read_session(repo, branch, tag, snapshot, allow)
    store = _GuardedStore(session.store)
    tree = xr.open_datatree(cast("Any", store), chunks=_xarray_chunks(chunks), mask_and_scale=mask_and_scale, **_OPEN)
    unions = dict(tree.attrs.get("stackcube", {}).get("unions") or {})
    for name, union in unions.items():
        for level in range(1 + len(union.get("overviews") or [])):
            ds = assemble_union(store, name, union, level=level, chunks=chunks, mask_and_scale=mask_and_scale)
            tree[f"{name}/{level}"] = xr.DataTree(dataset=ds)
    tree.attrs["snapshot_id"] = session.snapshot_id
    return tree


def _missing_last(entry: tuple[Any, ...]) -> tuple[bool, Any]:
    value = entry[0]
    missing = value is None or (isinstance(value, float) and math.isnan(value))  # sorts after every value
    return missing, 0 if missing else value


def assemble_union(
    store: Any, name: str, union: dict[str, Any], *, level: int = 0, chunks: Any = None, mask_and_scale: bool = True
) -> xr.Dataset:
    """The members of a union placed at their pixel offsets on the union grid, as one lazy (time, band, y, x) array.

    For each time step, the members with data at that step are laid over each other in order (search order, or
    ``sort_by`` ascending; reversed for ``overlap="last"``); a pixel takes the first member that covers it with a
    valid value, so nodata never hides a valid pixel underneath. Pixels no member covers are the fill value.
    Values are copied, never resampled (:func:`stackcube.union.union_array`), and each member tile is read with
    one GET per computation.
    """
    import dask.array

    from stackcube.union import block_size, union_array

    # members are opened as bare Zarr arrays (one metadata read each; bands, ids and sort keys come from the
    # union's description): opening hundreds of members as xarray Datasets would cost more than reading the union
    if level:
        union = {**union, **union["overviews"][level - 1]}  # the level's offsets, transform and shape
    sort_by = union.get("sort_by")
    arrays = []
    attrs: dict[str, Any] = {}
    for member in union["members"]:
        data_array = zarr.open_array(store, path=f"{member}/{level}/data", mode="r")
        attrs = attrs or dict(data_array.attrs)
        arrays.append(dask.array.from_zarr(data_array).rechunk({0: 1, 1: 1}))
    member_bands = [list(b) for b in union["member_bands"]]
    ids = union["member_ids"]
    keys = union["member_keys"] if sort_by else [None] * len(arrays)
    _, _, height, width = union["shape"]
    bands = union["bands"]
    fill = union["fill_value"] if union["fill_value"] is not None else 0
    has_nodata = union["fill_value"] is not None
    times = np.array(union["time"], dtype="datetime64[ns]")
    steps: list[list[tuple[int, int]]] = []
    step_ids: list[str] = []
    for step in union["steps"]:
        present = [(keys[m][t] if keys[m] else 0, m, t) for m, t in step]
        if sort_by:
            present.sort(key=_missing_last)
        if union.get("overlap") == "last":
            present.reverse()
        steps.append([(m, t) for _, m, t in present])
        step_ids.append(",".join(ids[m][t] for _, m, t in present))
    tile = max(max(a.chunks[2]) for a in arrays)
    data = xr.DataArray(
        union_array(
            arrays,
            member_bands=member_bands,
            offsets=[tuple(o) for o in union["offsets"]],
            steps=steps,
            bands=bands,
            shape=(height, width),
            fill=fill,
            nodata=has_nodata,
            block=block_size(tile),
        ),
        dims=("time", "band", "y", "x"),
    )
    if isinstance(chunks, dict) and chunks:  # None or False: the union's own blocks (it is always dask)
        data = data.chunk(chunks)
    a, b, c, d, e, f = union["transform"]
    wkt = pyproj.CRS.from_user_input(union["crs"]).to_wkt()
    data = data.assign_coords(
        time=("time", times),
        band=("band", np.array(bands, dtype=object)),
        y=("y", f + e * (np.arange(height) + 0.5)),
        x=("x", c + a * (np.arange(width) + 0.5)),
        id=("time", np.array(step_ids, dtype=object)),
        spatial_ref=xr.Variable(
            (),
            np.int64(0),
            {"crs_wkt": wkt, "spatial_ref": wkt, "GeoTransform": " ".join(repr(v) for v in (c, a, b, f, d, e))},
        ),
    )
    data.attrs = {k: v for k, v in attrs.items() if k not in {"coordinates", "spatial:dimensions"}}
    data.attrs["grid_mapping"] = "spatial_ref"
    if mask_and_scale:
        if has_nodata:
            data = data.where(data != fill)
        scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
        if scale is not None or offset is not None:
            data = data * (scale if scale is not None else 1) + (offset if offset is not None else 0)
        for key in ("_FillValue", "scale_factor", "add_offset", "missing_value"):
            data.attrs.pop(key, None)
    return xr.Dataset({"data": data}, attrs={"union": name, "members": list(union["members"])})


def open_level(
    repo: RepoLike,
    group: str | None = None,
    level: int = 0,
    *,
    branch: str | None = None,
    tag: str | None = None,
    snapshot: str | None = None,
    mask_and_scale: bool = True,
    chunks: Any = None,
    allow: Iterable[str] | None = None,
) -> xr.Dataset:
    """Open one level of one grid group as a Dataset, reading the metadata of that node only.

    ``group`` may be None when the cube has one grid. Errors name the grids and levels there are.
    """
    session = _read_session(repo, branch, tag, snapshot, allow)
    root = zarr.open_group(session.store, mode="r")
    info: dict[str, Any] = dict(cast("Any", root.attrs.get("stackcube")) or {})
    unions = dict(info.get("unions") or {})
    members = {m for union in unions.values() for m in union["members"]}
    names = array_names(info)
    if group is None:
        if len(names) != 1:
            msg = f"{repo} holds {len(names)} grids ({', '.join(names)}); pass group= one of them"
            raise ValueError(msg)
        group = names[0]
    if group not in names and group not in members:
        msg = f"{repo} has no grid {group!r}; it has: {', '.join(names)}"
        raise ValueError(msg)
    if group in unions:
        count = 1 + len(unions[group].get("overviews") or [])
        if not 0 <= level < count:
            known = ", ".join(str(n) for n in range(count))
            msg = f"grid {group} has levels {known} (0 is full resolution), not {level}"
            raise ValueError(msg)
        ds = assemble_union(
            _GuardedStore(session.store),
            group,
            unions[group],
            level=level,
            chunks=chunks,
            mask_and_scale=mask_and_scale,
        )
        ds.attrs.update(snapshot_id=session.snapshot_id, grid=group, level=level)
        return ds
    layout = cast("Any", zarr.open_group(session.store, path=group, mode="r").attrs.get("multiscales") or {})
    levels = [entry["asset"] for entry in layout.get("layout", [])] or ["0"]
    if str(level) not in levels:
        msg = f"grid {group} has levels {', '.join(levels)} (0 is full resolution), not {level}"
        raise ValueError(msg)
    ds = xr.open_dataset(
        cast("Any", _GuardedStore(session.store)),
        group=f"{group}/{level}",
        chunks=_xarray_chunks(chunks),
        mask_and_scale=mask_and_scale,
        **_OPEN,
    )
    ds.attrs.update(snapshot_id=session.snapshot_id, grid=group, level=level)
    return ds
