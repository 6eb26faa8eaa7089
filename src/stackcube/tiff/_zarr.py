"""A TiffManifest as Zarr: VirtualiZarr manifest arrays, a ManifestStore, ``open_tiff`` and the VirtualiZarr parser.

Values read this way go through Zarr: the ManifestStore fetches each chunk's byte range from the source file
and the ``stackcube.tiff`` codec decodes it. tifffile only ever sees header bytes.
"""

from __future__ import annotations

import os
from typing import Any, cast

import numpy as np
import xarray as xr
from obspec_utils.registry import ObjectStoreRegistry
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup, ManifestStore
from xarray.backends.zarr import ZarrBackendEntrypoint
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.dtype import parse_dtype

from stackcube._georef import spatial_coords, to_affine
from stackcube.errors import CorruptTiffError
from stackcube.tiff._codec import TiffSegmentCodec
from stackcube.tiff._model import IfdManifest, TiffManifest
from stackcube.tiff._read import read_tiff, read_tiff_async
from stackcube.tiff._source import resolve

__all__ = [
    "TiffParser",
    "ifd_group_name",
    "manifest_array",
    "manifest_store",
    "open_manifest",
    "open_tiff",
    "open_tiff_async",
    "registry_for",
]

VARIABLE = "data"
"""Name of the array variable holding an IFD's samples."""


def ifd_group_name(path: tuple[int, ...]) -> str:
    """Group name of an IFD in a whole-file store: ``ifd0``, ``ifd1``, ``ifd1.0`` (SubIFD 0 of IFD 1)."""
    return "ifd" + ".".join(map(str, path))


def manifest_array(manifest: TiffManifest, ifd: IfdManifest) -> ManifestArray:
    """Return one IFD as a VirtualiZarr ManifestArray with dims (band, y, x); a damaged IFD raises
    CorruptTiffError naming it."""
    if ifd.damage is not None:
        msg = f"{manifest.href}: {ifd.damage}"
        raise CorruptTiffError(msg)
    missing = ifd.lengths == 0
    paths = np.where(missing, "", manifest.href).astype(np.dtypes.StringDType())
    chunks = ChunkManifest.from_arrays(
        paths=cast("Any", paths), offsets=ifd.offsets, lengths=ifd.lengths, validate_paths=False
    )
    zdtype = parse_dtype(ifd.dtype, zarr_format=3)
    fill = ifd.fill_value if ifd.fill_value is not None else zdtype.default_scalar()
    metadata = ArrayV3Metadata(
        shape=ifd.shape,
        data_type=zdtype,
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": ifd.chunk_shape}},
        chunk_key_encoding={"name": "default"},
        fill_value=fill,
        codecs=[TiffSegmentCodec(recipe=ifd.recipe)],
        attributes=ifd_attrs(manifest, ifd),
        dimension_names=("band", "y", "x"),
        storage_transformers=None,
    )
    return ManifestArray(metadata=metadata, chunkmanifest=chunks)


def ifd_attrs(manifest: TiffManifest, ifd: IfdManifest) -> dict[str, Any]:
    """JSON-compatible attributes of one IFD: role, georeferencing, nodata, GDAL metadata, provenance."""
    attrs: dict[str, Any] = {"tiff_ifd": list(ifd.path), "tiff_role": ifd.role, "tiff_level": ifd.level}
    if ifd.geo is not None:
        if ifd.geo.crs is not None:
            attrs["crs"] = ifd.geo.crs
        if ifd.geo.transform is not None:
            attrs["transform"] = list(ifd.geo.transform)
    if ifd.fill_value is not None:
        value = ifd.fill_value
        attrs["nodata"] = value if np.isfinite(value) else str(value)
    for key, value in ifd.attrs.items():
        attrs[key] = value
    attrs["source_href"] = manifest.href
    if manifest.etag is not None:
        attrs["source_etag"] = manifest.etag
    return attrs


def registry_for(manifest: TiffManifest, store: Any = None) -> ObjectStoreRegistry[Any]:
    """A registry that serves ``manifest.href`` (from ``store`` if given)."""
    location = resolve(manifest.href, store)
    scheme, rest = manifest.href.split("://", 1)
    prefix = f"{scheme}://{rest.split('/', 1)[0]}" + ("/" if scheme == "file" else "")
    return ObjectStoreRegistry({prefix: location.store})


def manifest_store(
    manifest: TiffManifest,
    *,
    ifd: int | tuple[int, ...] | None = 0,
    registry: ObjectStoreRegistry[Any] | None = None,
) -> ManifestStore:
    """Return a ManifestStore holding one IFD as the array ``data`` at the root, or every IFD as a group.

    With every IFD, a damaged one is left out and named in the root's ``damaged_ifds`` attribute.
    """
    registry = registry if registry is not None else registry_for(manifest)
    if ifd is None:
        groups = {
            ifd_group_name(entry.path): ManifestGroup(arrays={VARIABLE: manifest_array(manifest, entry)})
            for entry in manifest.ifds
            if entry.damage is None
        }
        group = ManifestGroup(groups=groups, attributes=_file_attrs(manifest))
    else:
        array = manifest_array(manifest, manifest.ifd(ifd))
        group = ManifestGroup(arrays={VARIABLE: array}, attributes=_file_attrs(manifest))
    return ManifestStore(group=group, registry=registry)


def _file_attrs(manifest: TiffManifest) -> dict[str, Any]:
    attrs: dict[str, Any] = {"source_href": manifest.href, "source_size": manifest.size}
    damaged = [entry.damage for entry in manifest.ifds if entry.damage is not None]
    if damaged:
        attrs["damaged_ifds"] = damaged
    if manifest.etag is not None:
        attrs["source_etag"] = manifest.etag
    if manifest.last_modified is not None:
        attrs["source_last_modified"] = manifest.last_modified.isoformat()
    return attrs


class TiffParser:
    """stackcube's TIFF extractor as a VirtualiZarr parser.

    Parameters
    ----------
    ifd
        The IFD to expose as the variable ``data``: an int counts top-level IFDs (as tifffile's ``pages``), a
        tuple walks into SubIFDs. ``None`` exposes every IFD as a group (``ifd0``, ``ifd1``, ``ifd1.0``, ...), for
        ``virtualizarr.open_virtual_datatree``.

    Examples
    --------
    >>> import virtualizarr
    >>> from obspec_utils.registry import ObjectStoreRegistry
    >>> from obstore.store import LocalStore
    >>> from stackcube.tiff import TiffParser
    >>> registry = ObjectStoreRegistry({"file:///": LocalStore()})
    >>> vds = virtualizarr.open_virtual_dataset("file:///data/cog.tif", registry=registry,
    ...                                         parser=TiffParser())  # doctest: +SKIP
    """

    def __init__(self, ifd: int | tuple[int, ...] | None = 0) -> None:
        self.ifd = ifd

    def __call__(self, url: str, registry: ObjectStoreRegistry[Any]) -> ManifestStore:
        store, _ = registry.resolve(url)
        manifest = read_tiff(url, store=store)
        return manifest_store(manifest, ifd=self.ifd, registry=registry)


def open_tiff(
    href: str | os.PathLike[str],
    ifd: int | tuple[int, ...] = 0,
    *,
    store: Any = None,
    chunks: Any = None,
) -> xr.DataArray:
    """Open one IFD of a TIFF as a lazy DataArray (band, y, x) whose values are read through Zarr.

    The header is read once (one ranged GET for a COG); values come from the virtual chunk references,
    one ranged GET per tile or strip, decoded by the ``stackcube.tiff`` codec.

    Parameters
    ----------
    href
        Local path, ``file://``, ``http(s)://`` or ``s3://`` URL.
    ifd
        Which IFD: an int counts top-level IFDs in file order (as ``tifffile.TiffFile(f).pages[i]``); a tuple
        such as ``(1, 0)`` walks into SubIFDs.
    store
        An obstore store to read from instead of the one stackcube makes for the href's scheme and host.
    chunks
        Passed to xarray: None (default) loads lazily without dask, ``{}`` gives dask chunks of one segment.

    Returns
    -------
    xarray.DataArray
        Raw stored values (no nodata masking or scaling); x/y pixel-centre coordinates and a ``spatial_ref``
        coordinate (crs_wkt, GeoTransform) when the IFD is georeferenced.

    Examples
    --------
    >>> from stackcube.tiff import open_tiff
    >>> da = open_tiff("../shared/corpus/tiff/rio-tiler/cog.tif")  # doctest: +SKIP
    >>> da.dims  # doctest: +SKIP
    ('band', 'y', 'x')
    """
    manifest = read_tiff(href, store=store)
    return open_manifest(manifest, ifd, store=store, chunks=chunks)


async def open_tiff_async(
    href: str | os.PathLike[str], ifd: int | tuple[int, ...] = 0, *, store: Any = None, chunks: Any = None
) -> xr.DataArray:
    """Async twin of :func:`open_tiff` (the header read is awaited; values stay lazy)."""
    manifest = await read_tiff_async(href, store=store)
    return open_manifest(manifest, ifd, store=store, chunks=chunks)


def open_manifest(
    manifest: TiffManifest, ifd: int | tuple[int, ...] = 0, *, store: Any = None, chunks: Any = None
) -> xr.DataArray:
    """Open one IFD of an already-read manifest as a DataArray read through Zarr."""
    entry = manifest.ifd(ifd)
    zstore = manifest_store(manifest, ifd=ifd, registry=registry_for(manifest, store))
    ds = xr.open_dataset(
        cast("Any", zstore),
        engine=ZarrBackendEntrypoint,  # a class: no scan of every installed backend (store.read._OPEN says why)
        consolidated=False,
        zarr_format=3,
        mask_and_scale=False,
        decode_times=False,
        chunks=chunks,
    )
    da = ds[VARIABLE]
    da = da.assign_coords(band=np.arange(1, entry.shape[0] + 1))
    return _georeference(da, entry)


def _georeference(da: xr.DataArray, entry: IfdManifest) -> xr.DataArray:
    geo = entry.geo
    if geo is None or geo.transform is None:
        return da
    da = da.assign_coords(spatial_coords(geo.crs, to_affine(geo.transform), entry.shape[1], entry.shape[2]))
    da.encoding["grid_mapping"] = "spatial_ref"
    return da
