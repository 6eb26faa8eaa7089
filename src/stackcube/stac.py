"""A cube described as a STAC Collection, so that catalogs list it and STAC tools open it.

:func:`to_stac` follows the convention in use for virtual Icechunk stores (xpystac's test collection, from NASA's
virtual Zarr workshop):

- one collection-level asset of type ``application/vnd.zarr+icechunk`` whose href is the repository as users open
  it, with ``version`` (the snapshot id, or the tag asked for), roles ``data``, ``references``, ``virtual`` (and
  ``latest-version`` when it is a branch's tip), ``storage:refs`` naming where it lives and ``vrt:hrefs`` naming
  one asset per source container (the URL prefixes the cube reads its tiles from);
- the storage extension's ``storage:schemes`` for the S3 and Azure locations;
- the datacube extension: ``cube:dimensions`` (time, band, and x and y per array) and ``cube:variables`` (one per
  array, level 0), with the extent, the bands and the platforms found in the cube.

Nothing here reads a source: the Collection comes from the cube's metadata and coordinates (one open without dask).
No credential is written: an href with one is refused, and a repository opened through an ``icechunk.Storage`` needs
``href=``, the URL users open it at.

Written by hand: pystac builds and validates the Collection, but no library derives one from an Icechunk
repository (VirtualiZarr and xpystac read such Collections; none writes them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack
from urllib.parse import urlparse

import numpy as np

from stackcube._hrefs import redact, secret_params
from stackcube._keywords import check_keywords
from stackcube.errors import OutputError, Remedy, SignedHrefError
from stackcube.settings import Settings, current
from stackcube.store import OpenArgs, OpenOptions, open_datatree
from stackcube.store.layout import CubeMetadata, level_path
from stackcube.store.repo import RepoLike, repo_url

if TYPE_CHECKING:
    import pystac
    import xarray as xr

__all__ = ["EXTENSIONS", "ICECHUNK", "check_output", "merged_bbox", "stac_text", "to_stac", "write_stac"]

ICECHUNK = "application/vnd.zarr+icechunk"
"""The media type of a Collection asset that is an Icechunk repository."""
EXTENSIONS = (
    "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
    "https://stac-extensions.github.io/storage/v2.0.0/schema.json",
    "https://stac-extensions.github.io/virtual-assets/v1.0.0/schema.json",
    "https://stac-extensions.github.io/version/v1.2.0/schema.json",
)
"""The STAC extensions a cube's Collection declares (the versions xpystac's Icechunk collection uses); storage only
where the repository or a source is in an object store (S3, Azure)."""
STORAGE = EXTENSIONS[1]
CUBE_ASSET = "cube"
"""The key of the Icechunk asset: one name however often a refresh rewrites the Collection."""
_KEYWORDS = frozenset({"branch", "tag", "snapshot", "allow", "credentials"})
"""What :func:`to_stac` takes of :class:`~stackcube.store.OpenArgs`: which version, and what opening it takes."""
_VALUES = 1000
"""Time steps listed as ``values`` of the time dimension at most (a long series gives its extent alone)."""


def to_stac(
    repo: RepoLike,
    *,
    id: str | None = None,
    title: str | None = None,
    description: str | None = None,
    license: str = "other",
    href: str | None = None,
    settings: Settings | None = None,
    **kwargs: Unpack[OpenArgs],
) -> pystac.Collection:
    """A STAC Collection describing a cube, with its Icechunk repository as the collection's ``cube`` asset.

    Parameters
    ----------
    repo
        The cube: a local path, an ``s3://`` URL, an ``icechunk.Storage`` or an ``icechunk.Repository``.
    id, title, description, license
        The Collection's; by default the repository's name, a title naming its arrays, a description of the
        search that made it, and ``other``.
    href
        Where users open the repository (default: ``repo`` itself, a local path made absolute); needed when
        ``repo`` is an ``icechunk.Storage`` or ``Repository``. Never a URL carrying a credential.
    settings
        Where S3 is (an endpoint other than AWS makes the scheme ``custom-s3``): the current settings by default.
    **kwargs
        Which version, as :func:`stackcube.open_cube` takes it: ``branch`` (default ``main``: the asset's version is
        its tip, with the ``latest-version`` role), ``tag`` (the asset's version is the tag) or ``snapshot``;
        ``allow`` and ``credentials`` as for opening.

    Returns
    -------
    pystac.Collection
        Declares the datacube, storage, virtual-assets and version extensions (:data:`EXTENSIONS`). Save it with
        ``collection.save_object(dest_href=...)`` or :func:`write_stac`.

    Examples
    --------
    >>> collection = to_stac("demo-output/cube.icechunk")  # doctest: +SKIP
    >>> collection.assets["cube"].extra_fields["version"]  # doctest: +SKIP
    '9D8PE8KYYZY0YSS9T5H0'
    >>> xr.open_dataset(collection.assets["cube"].href, engine="stackcube", group="EPSG32735_10m")  # doctest: +SKIP
    """
    import pystac

    settings = settings or current()
    check_keywords(kwargs, _KEYWORDS, "to_stac")
    options = OpenOptions.from_args({**kwargs, "chunks": False}, "to_stac")
    location = _location(repo, href)
    tree = open_datatree(repo, options, settings=settings)
    metadata = CubeMetadata.from_attrs(tree.attrs)
    snapshot = str(tree.attrs["snapshot_id"])
    levels = {name: tree[level_path(name, 0)].to_dataset() for name in metadata.array_names}
    several = len(levels) > 1
    dimensions: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    boxes = []
    times: list[np.datetime64] = []
    for name, ds in levels.items():
        # one array: time, band, y, x; several: each its own (their CRS, bands and dates may differ), named as
        # the array's group holds them
        prefix = f"{name}/" if several else ""
        crs, box, spatial = _spatial(ds, prefix)
        boxes.append(box)
        steps = list(ds["time"].to_numpy())
        times += steps
        dimensions[f"{prefix}time"] = _time(steps)
        dimensions[f"{prefix}band"] = {"type": "bands", "values": [str(b) for b in ds["band"].to_numpy().tolist()]}
        dimensions |= spatial
        variables[name] = {
            "type": "data",
            "dimensions": [f"{prefix}time", f"{prefix}band", f"{prefix}y", f"{prefix}x"],  # as stored
            "description": f"{name}: {crs}, {ds.sizes['y']} x {ds.sizes['x']} px, level 0 of "
            f"{_count(tree, name, metadata)} (xr.open_dataset(href, engine='stackcube', group={name!r}))",
        }
    first, last = (min(times), max(times)) if times else (None, None)
    whole = merged_bbox(boxes)
    collection = pystac.Collection(
        id=id or _name(location),
        title=title or f"stackcube cube: {', '.join(levels)}",
        description=description or _description(metadata),
        license=license,
        extent=pystac.Extent(
            pystac.SpatialExtent([whole, *boxes] if several else [whole]),
            pystac.TemporalExtent([[_utc(first), _utc(last)]]),
        ),
        summaries=pystac.Summaries(_summaries(levels.values())),
    )
    collection.extra_fields["cube:dimensions"] = dimensions
    collection.extra_fields["cube:variables"] = variables
    schemes: dict[str, dict[str, Any]] = {}
    containers = []
    for prefix in metadata.containers:
        key = _unique(_key(prefix), collection.assets)
        refs = _scheme(prefix, settings, metadata.accounts.get(prefix), schemes)
        collection.add_asset(
            key,
            pystac.Asset(
                prefix,
                # a folder of the sources, not one file: no media type, and not the role data (clients open those)
                title=f"the sources under {prefix}",
                roles=["source"],
                extra_fields={"storage:refs": refs} if refs else {},
            ),
        )
        containers.append({"key": key, "href": f"#/assets/{key}"})
    tag = kwargs.get("tag")
    latest = not tag and not kwargs.get("snapshot")
    refs = _scheme(location, settings, None, schemes)
    collection.add_asset(
        CUBE_ASSET,
        pystac.Asset(
            location,
            title=f"the cube's Icechunk repository ({'tag ' + tag if tag else 'snapshot ' + snapshot})",
            description="virtual references into the sources' TIFF tiles; open with stackcube installed "
            "(it registers the Zarr codec stackcube.tiff and the xarray engine stackcube)",
            media_type=ICECHUNK,
            roles=["data", "references", "virtual", *(["latest-version"] if latest else [])],
            extra_fields={
                "version": tag or snapshot,
                **({"storage:refs": refs} if refs else {}),
                "vrt:hrefs": containers,
            },
        ),
    )
    # the storage extension only where there is an object store to describe: it requires storage:schemes
    collection.stac_extensions = [e for e in EXTENSIONS if schemes or e != STORAGE]
    if schemes:
        collection.extra_fields["storage:schemes"] = schemes
    return collection


def write_stac(collection: pystac.Collection, path: str | os.PathLike[str]) -> Path:
    """Write ``collection`` as one JSON file at ``path`` (no links to a catalog: a cube's Collection stands alone);
    returns the path. An :class:`~stackcube.errors.OutputError` names a path that cannot be written."""
    out = check_output(path)
    try:
        out.write_text(stac_text(collection))
    except OSError as exc:
        msg = f"cannot write the STAC Collection to {out}: {exc.strerror or exc}; give another path"
        raise OutputError(msg) from None
    return out


def stac_text(collection: pystac.Collection) -> str:
    """``collection`` as the JSON :func:`write_stac` writes and ``stackcube stac`` prints: hrefs as they are, no
    link to itself or to a root catalog (``collection`` itself is left as it is)."""
    import json

    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [link for link in data.get("links", []) if link.get("rel") not in {"self", "root"}]
    return json.dumps(data, indent=2) + "\n"


def check_output(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file that can be written (its folder made); an :class:`~stackcube.errors.OutputError` names it
    when it is a folder or its folder cannot be made: asked before a refresh, so the refresh is not lost to it."""
    out = Path(path)
    if out.is_dir():
        msg = f"{out} is a folder; give the path of the STAC Collection's file, such as {out / 'collection.json'}"
        raise OutputError(msg)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot make the folder {out.parent} for the STAC Collection: {exc.strerror or exc}; give another path"
        raise OutputError(msg) from None
    if not os.access(out if out.exists() else out.parent, os.W_OK):
        msg = f"cannot write the STAC Collection to {out}: no permission; give another path"
        raise OutputError(msg)
    return out


def merged_bbox(boxes: Sequence[Sequence[float]]) -> list[float]:
    """The smallest [west, south, east, north] holding every box, across the antimeridian where that is smaller
    (west > east then, as STAC spells such a box); a box may cross it itself."""
    south, north = min(b[1] for b in boxes), max(b[3] for b in boxes)
    arcs: list[tuple[float, float]] = []
    for west, _, east, _ in boxes:
        arcs += [(west, 180.0), (-180.0, east)] if west > east else [(west, east)]
    arcs.sort()
    merged = [list(arcs[0])]
    for west, east in arcs[1:]:
        if west <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], east)
        else:
            merged.append([west, east])
    # the largest stretch of longitude no box covers, the wrap-around one included; the bbox is the rest
    gaps = [(merged[0][0] + 360.0 - merged[-1][1], len(merged) - 1)]
    gaps += [(merged[n + 1][0] - merged[n][1], n) for n in range(len(merged) - 1)]
    size, after = max(gaps)
    if size <= 0:
        return [-180.0, south, 180.0, north]
    west, east = merged[(after + 1) % len(merged)][0], merged[after][1]
    return [west, south, east, north]


def _location(repo: RepoLike, href: str | None) -> str:
    """Where users open the repository: ``href`` as given, else ``repo`` (a local path made absolute); refused with
    a credential."""
    given = href if href is not None else repo_url(repo)
    if given is None:
        msg = (
            f"to_stac({repo!r}) cannot tell where users open this repository: pass href=, its URL "
            "(s3://bucket/prefix or a path)"
        )
        raise ValueError(msg)
    secrets = secret_params(given)
    if secrets:
        msg = (
            f"the repository's href carries a credential ({', '.join(secrets)}), which a STAC Collection must not "
            "publish"
        )
        raise SignedHrefError(msg, remedy=Remedy("pass href= the URL without it", "give --href the URL without it"))
    if href is not None:  # as given: a URL, or a path relative to where the Collection will be
        return href
    scheme = urlparse(given).scheme
    if len(scheme) > 1 and scheme != "file":  # a URL (a one-letter scheme is a Windows drive)
        return given
    return str(Path(given.removeprefix("file://")).resolve())


def _name(location: str) -> str:
    """A Collection id from where the repository is: its last path part, without ``.icechunk``."""
    last = location.rstrip("/").rsplit("/", 1)[-1].removesuffix(".icechunk")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-") or "cube"


def _description(metadata: CubeMetadata) -> str:
    query = metadata.query.to_dict()
    search = ", ".join(f"{k} {v}" for k, v in query.items() if v and k != "catalog")
    catalog = metadata.query.catalog
    if catalog and ("://" not in catalog or catalog.startswith("file://")):  # a path on the builder's disk
        catalog = f"a static STAC catalog ({Path(catalog.removeprefix('file://')).name})"
    origin = catalog or "a list of STAC items"
    text = f"A virtual datacube of Cloud-Optimized GeoTIFFs built by stackcube from {origin}"
    return redact(text + (f" ({search})." if search else "."))  # a cube stores no credential; said twice


def _count(tree: xr.DataTree, name: str, metadata: CubeMetadata) -> str:
    union = metadata.union(name)
    n = union.n_levels if union is not None else len(tree[name].children)
    return f"{n} level{'s' if n != 1 else ''}"


def _spatial(ds: xr.Dataset, prefix: str) -> tuple[str, list[float], dict[str, Any]]:
    """A level-0 dataset's CRS (as named), WGS84 bounding box and x and y dimensions (named with ``prefix``)."""
    from pyproj import CRS, Transformer

    crs = CRS.from_wkt(str(ds["spatial_ref"].attrs["crs_wkt"]))
    gt = [float(v) for v in str(ds["spatial_ref"].attrs["GeoTransform"]).split()]
    width, height = ds.sizes["x"], ds.sizes["y"]
    xs = sorted([gt[0], gt[0] + gt[1] * width])  # an array of a cube is north-up (no rotation terms)
    ys = sorted([gt[3], gt[3] + gt[5] * height])
    west, south, east, north = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform_bounds(
        xs[0], ys[0], xs[1], ys[1], densify_pts=21
    )
    code = crs.to_epsg()
    system: Any = code if code is not None else crs.to_json_dict()
    name = f"EPSG:{code}" if code is not None else crs.name
    spatial = {
        f"{prefix}x": {"type": "spatial", "axis": "x", "extent": xs, "step": gt[1], "reference_system": system},
        f"{prefix}y": {"type": "spatial", "axis": "y", "extent": ys, "step": gt[5], "reference_system": system},
    }
    return name, [west, south, east, north], spatial


def _time(steps: list[np.datetime64]) -> dict[str, Any]:
    """An array's time dimension: its extent, and its dates where there are at most :data:`_VALUES`."""
    dim: dict[str, Any] = {
        "type": "temporal",
        "extent": [_iso(min(steps)), _iso(max(steps))] if steps else [None, None],
    }
    if len(steps) <= _VALUES:
        dim["values"] = [_iso(v) for v in sorted(steps)]
    return dim


def _utc(value: Any) -> datetime | None:
    """A time coordinate's value (naive UTC, as xarray decodes it) as an aware datetime, to the microsecond."""
    if value is None:
        return None
    when: datetime = np.datetime64(value, "us").astype(datetime)
    return when.replace(tzinfo=UTC)


def _iso(value: Any) -> str | None:
    when = _utc(value)
    return None if when is None else when.isoformat().replace("+00:00", "Z")


def _summaries(levels: Iterable[xr.Dataset]) -> dict[str, Any]:
    """STAC's common metadata the cube's time steps carry (platform, constellation), every value once."""
    found: dict[str, list[str]] = {}
    for ds in levels:
        for field in ("platform", "constellation"):
            if field in ds.coords:
                values = sorted({str(v) for v in ds[field].to_numpy().ravel().tolist() if v})
                found.setdefault(field, [])
                found[field] += [v for v in values if v not in found[field]]
    return {k: v for k, v in found.items() if v}


def _key(prefix: str) -> str:
    """An asset key from a container prefix: ``sources-`` and its host or bucket."""
    parsed = urlparse(prefix)
    where = parsed.netloc or Path(parsed.path).name or "local"
    return "sources-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", where).strip("-") or "local")


def _unique(key: str, taken: Mapping[str, Any]) -> str:
    n, candidate = 1, key
    while candidate in taken:
        n += 1
        candidate = f"{key}-{n}"
    return candidate


def _scheme(
    location: str, settings: Settings, account: str | None, schemes: dict[str, dict[str, Any]]
) -> list[str] | None:
    """The ``storage:refs`` of an object-storage location, its scheme added to ``schemes``; None elsewhere (an
    http(s) href or a path is its own whole address: the storage extension describes object stores).

    An S3 scheme's region is the one stackcube reads S3 with (``settings.s3.region``, from ``AWS_REGION``), and
    requester pays is said when stackcube pays for its requests: a Collection cannot tell more of a bucket without
    asking it."""
    parsed = urlparse(location)
    scheme: dict[str, Any]
    if parsed.scheme == "s3":
        s3 = settings.s3
        bucket = parsed.netloc
        if s3.endpoint:  # MinIO, Ceph, moto: S3 elsewhere than AWS; the platform is the endpoint
            scheme = {"type": "custom-s3", "platform": redact(s3.endpoint.rstrip("/")), "bucket": bucket}
        else:
            scheme = {"type": "aws-s3", "platform": "https://{bucket}.s3.{region}.amazonaws.com", "bucket": bucket}
        scheme["region"] = s3.region
        if s3.requester_pays:
            scheme["requester_pays"] = True
        key = f"{scheme['type']}-{bucket}"
    elif parsed.scheme == "az" and account and not settings.azure.emulator:
        # an emulator (Azurite) is no platform the extension names: ms-azure is Azure's own endpoint
        scheme = {"type": "ms-azure", "platform": "https://{account}.blob.core.windows.net", "account": account}
        key = f"ms-azure-{account}"
    else:
        return None
    schemes.setdefault(key, scheme)
    return [key]
