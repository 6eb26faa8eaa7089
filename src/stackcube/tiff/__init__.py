"""TIFF stage: header bytes -> :class:`TiffManifest` (where every tile or strip lives and how to decode it).

- :func:`read_tiff` / :func:`read_tiff_async`: one ranged GET for a COG header, a few more for other layouts;
  :func:`head_async`: what the object is now (size, ETag, Last-Modified), for a refresh's checks.
- :func:`limit`: one of the process's ``max_concurrency`` request slots (:class:`RequestCap`), held by every
  request stackcube sends, from any event loop.
- :func:`open_tiff`: one IFD as an ``xarray.DataArray`` read through Zarr from the virtual references.
- :class:`TiffParser`: the same extractor as a VirtualiZarr parser.
- The Zarr codec ``stackcube.tiff`` (:class:`TiffSegmentCodec`) decodes one segment; it is registered through
  the ``zarr.codecs`` entry point. :func:`standard_codecs` gives Zarr's own codecs instead for segments that need
  no TIFF-specific step (uncompressed, Zstandard or Deflate samples of whole bytes), so that readers without
  stackcube decode them; :func:`tiff_only_reason` says why the others need ``stackcube.tiff``.

Modules, each importing only the ones before it: ``_model`` (plain data), ``_geo``, ``_decode`` and ``_standard``
(pure georeferencing, decoding, and which segments Zarr's own codecs decode), ``_ifd`` (IFDs read directly, the
fast path) and ``_parse`` (pure header parsing: that path, or tifffile for unusual files), ``_source``, ``_read``
(header reads, and tiles by merged ranged GETs) and ``_probe`` (I/O; ``_probe`` asks each host whether it honours
conditional requests), ``_codec`` and ``_zarr`` (Zarr).
"""

from stackcube.tiff._codec import CODEC_NAME, TiffSegmentCodec
from stackcube.tiff._decode import decode_segment
from stackcube.tiff._geo import with_current_crs
from stackcube.tiff._model import (
    Geo,
    IfdManifest,
    Recipe,
    TiffManifest,
    Validator,
    is_weak,
    same_etag,
    same_version,
)
from stackcube.tiff._probe import HostChecks, clear_stores, host_of, probe_hosts
from stackcube.tiff._read import MERGE_GAP, head_async, read_segments, read_tiff, read_tiff_async
from stackcube.tiff._source import ObjectInfo, RequestCap, limit, no_ranges, normalize_href
from stackcube.tiff._standard import StandardCodecs, Zlib, standard_codecs, tiff_only_reason
from stackcube.tiff._zarr import TiffParser, manifest_store, open_manifest, open_tiff, open_tiff_async

__all__ = [
    "CODEC_NAME",
    "MERGE_GAP",
    "Geo",
    "HostChecks",
    "IfdManifest",
    "ObjectInfo",
    "Recipe",
    "RequestCap",
    "StandardCodecs",
    "TiffManifest",
    "TiffParser",
    "TiffSegmentCodec",
    "Validator",
    "clear_stores",
    "decode_segment",
    "head_async",
    "host_of",
    "is_weak",
    "limit",
    "manifest_store",
    "no_ranges",
    "normalize_href",
    "open_manifest",
    "open_tiff",
    "open_tiff_async",
    "probe_hosts",
    "read_segments",
    "read_tiff",
    "read_tiff_async",
    "same_etag",
    "same_version",
    "Zlib",
    "standard_codecs",
    "tiff_only_reason",
    "with_current_crs",
]
