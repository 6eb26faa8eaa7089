"""TIFF stage: header bytes -> :class:`TiffManifest` (where every tile or strip lives and how to decode it).

- :func:`read_tiff` / :func:`read_tiff_async`: one ranged GET for a COG header, a few more for other layouts;
  :func:`head_async`: what the object is now (size, ETag, Last-Modified), for a refresh's checks.
- :func:`open_tiff`: one IFD as an ``xarray.DataArray`` read through Zarr from the virtual references.
- :class:`TiffParser`: the same extractor as a VirtualiZarr parser.
- The Zarr codec ``stackcube.tiff`` (:class:`TiffSegmentCodec`) decodes one segment; it is registered through
  the ``zarr.codecs`` entry point.

Modules, each importing only the ones before it: ``_model`` (plain data), ``_geo`` and ``_decode`` (pure
georeferencing and decoding), ``_parse`` (pure header parsing), ``_source`` and ``_read`` (I/O), ``_codec`` and
``_zarr`` (Zarr).
"""

from stackcube.tiff._codec import CODEC_NAME, TiffSegmentCodec
from stackcube.tiff._decode import decode_segment
from stackcube.tiff._model import Geo, IfdManifest, Recipe, TiffManifest
from stackcube.tiff._read import head_async, read_tiff, read_tiff_async
from stackcube.tiff._source import ObjectInfo, clear_stores, normalize_href
from stackcube.tiff._zarr import TiffParser, manifest_store, open_manifest, open_tiff, open_tiff_async

__all__ = [
    "CODEC_NAME",
    "Geo",
    "IfdManifest",
    "ObjectInfo",
    "Recipe",
    "TiffManifest",
    "TiffParser",
    "TiffSegmentCodec",
    "clear_stores",
    "decode_segment",
    "head_async",
    "manifest_store",
    "normalize_href",
    "open_manifest",
    "open_tiff",
    "open_tiff_async",
    "read_tiff",
    "read_tiff_async",
]
