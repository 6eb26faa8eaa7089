"""Zarr v3's own codecs for segments that need no TIFF-specific step, so readers without stackcube decode them.

A segment (tile or strip) qualifies when what :func:`~stackcube.tiff.decode_segment` does to it is exactly what a
chain of standard codecs does, for every segment a file may hold:

- ``bytes``: uncompressed samples of 8, 16, 32 or 64 bits (unsigned, signed or IEEE float), read in the file's
  byte order (the codec's ``endian``) and reshaped; nothing else happens to them in ``stackcube.tiff`` either.
- ``bytes`` + ``zstd``: Compression 50000, a Zstandard frame, decompressed first (zarr's core ``zstd`` codec).
- ``bytes`` + ``numcodecs.zlib``: Compression 8 or 32946 (Deflate), which TIFF stores as a zlib stream (RFC 1950),
  not gzip: the ``numcodecs.zlib`` codec, not the core ``gzip`` one.
- ``transpose`` in front of any of these when a segment interleaves several samples (chunky): it stores
  (y, x, sample) while the chunk is (band, y, x), or (time, band, y, x) in a cube.

Anything else stays ``stackcube.tiff`` (:func:`tiff_only_reason` says why): another compression; a predictor on
compressed data (and a floating-point predictor on uncompressed data, whose samples ``stackcube.tiff`` reads in the
machine's byte order); packed, 24-bit or complex samples; FillOrder 2; YCbCr subsampling; the settings of JPEG, LERC,
CCITT or EER; a short last strip, which ``stackcube.tiff`` pads with the fill value where the ``bytes`` codec
refuses a chunk of the wrong size; and uncompressed segments whose byte count is not the segment's size
(``stackcube.tiff`` reads the first ones, ``bytes`` refuses). A missing segment is a chunk without a reference,
which every Zarr reader fills with the array's fill value, as it does for ``stackcube.tiff``; edge tiles are
stored whole in TIFF, as edge chunks are in Zarr. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import imagecodecs
import numpy as np
import tifffile
import zarr
import zarr.registry
from zarr.abc.codec import ArrayArrayCodec, BytesBytesCodec
from zarr.codecs import BytesCodec, TransposeCodec, ZstdCodec
from zarr.codecs.numcodecs import Zlib as ZarrZlib

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer

from stackcube.tiff._model import Recipe

__all__ = ["StandardCodecs", "Zlib", "standard_codecs", "tiff_only_reason"]

NONE = 1
DEFLATE = frozenset({8, 32946})
ZSTD = 50000
FLOAT_PREDICTORS = frozenset({3, 34894, 34895})
# SampleFormat -> the NumPy kind of its samples: unsigned, signed, IEEE float, void (read as unsigned)
KINDS = {1: "u", 2: "i", 3: "f", 4: "u"}
ZLIB_LEVEL = 6
"""The level ``numcodecs.zlib`` carries in its configuration; used only to encode, which stackcube never does."""


@dataclass(frozen=True, slots=True)
class StandardCodecs:
    """A chain of Zarr v3's own codecs that decodes a segment exactly as ``stackcube.tiff`` does."""

    filters: tuple[ArrayArrayCodec, ...]
    """``transpose`` when a segment interleaves samples, else none."""
    serializer: BytesCodec
    """``bytes``, with the file's byte order (none for 8-bit samples)."""
    compressors: tuple[BytesBytesCodec, ...]
    """``zstd`` or ``numcodecs.zlib``, or none."""

    @property
    def name(self) -> str:
        """The chain in short, as ``benchmarks/codec_survey.py`` prints it: ``transpose+bytes+zlib``."""
        names = [*("transpose" for _ in self.filters), "bytes"]
        names += ["zstd" if isinstance(c, ZstdCodec) else "zlib" for c in self.compressors]
        return "+".join(names)

    def create_keywords(self) -> dict[str, Any]:
        """``zarr.create_array``'s ``filters``, ``serializer`` and ``compressors``."""
        return {
            "filters": self.filters or None,
            "serializer": self.serializer,
            "compressors": self.compressors or None,
        }


def standard_codecs(recipe: Recipe, *, ndim: int = 4, lengths: np.ndarray | None) -> StandardCodecs | None:
    """Zarr's own codecs for the segments ``recipe`` describes, or None when they need ``stackcube.tiff``.

    Parameters
    ----------
    recipe
        How each segment is encoded (one IFD's, or a cube level's).
    ndim
        Dimensions of the array, whose last three are (band, y, x): 4 in a cube (time first), 3 for one IFD.
    lengths
        Byte counts of every segment the array references (0 for none): uncompressed segments qualify only when
        each is the segment's size; None (not known) keeps uncompressed segments on ``stackcube.tiff``.

    Examples
    --------
    >>> from stackcube.tiff import read_tiff
    >>> ifd = read_tiff("cog.tif").ifds[0]  # doctest: +SKIP
    >>> standard_codecs(ifd.recipe, lengths=ifd.lengths).name  # doctest: +SKIP
    'transpose+bytes+zlib'
    """
    if tiff_only_reason(recipe, lengths) is not None:
        return None
    dtype = np.dtype(recipe.dtype)
    endian: Literal["little", "big"] | None = None
    if dtype.itemsize > 1:
        endian = "little" if recipe.byteorder == "<" else "big"
    filters: tuple[ArrayArrayCodec, ...] = ()
    if recipe.samples > 1:  # (..., y, x, sample) stored, (..., band, y, x) presented
        lead = tuple(range(ndim - 3))
        filters = (TransposeCodec(order=(*lead, ndim - 2, ndim - 1, ndim - 3)),)
    compressors: tuple[BytesBytesCodec, ...] = ()
    if recipe.compression == ZSTD:
        compressors = (ZstdCodec(level=0, checksum=False),)
    elif recipe.compression in DEFLATE:
        compressors = (ZarrZlib(level=ZLIB_LEVEL),)
    return StandardCodecs(filters, BytesCodec(endian=endian), compressors)


def tiff_only_reason(recipe: Recipe, lengths: np.ndarray | None = None) -> str | None:
    """Why the segments ``recipe`` describes need ``stackcube.tiff`` (reasons joined by commas), or None when
    Zarr's own codecs decode them exactly as it does (:func:`standard_codecs`).

    Examples
    --------
    >>> from stackcube.tiff import read_tiff
    >>> tiff_only_reason(read_tiff("lzw.tif").ifds[0].recipe)  # doctest: +SKIP
    'compression LZW, predictor 2'
    """
    why = []
    compression = recipe.compression
    if compression not in {NONE, ZSTD, *DEFLATE}:
        why.append(f"compression {_compression_name(compression)}")
    if recipe.predictor != 1 and compression != NONE:
        why.append(f"predictor {recipe.predictor}")
    elif recipe.predictor in FLOAT_PREDICTORS:  # stackcube.tiff reads such samples in the machine's byte order
        why.append(f"predictor {recipe.predictor} on uncompressed samples")
    why += _sample_reasons(recipe)
    if recipe.fillorder != 1:
        why.append(f"FillOrder={recipe.fillorder}")
    if tuple(recipe.subsampling) != (1, 1):
        why.append("YCbCr subsampling")
    others = recipe.jpegtables is not None or recipe.lerc_compression or recipe.t4options or recipe.eer
    if others and compression in {NONE, ZSTD, *DEFLATE}:  # with their own compression, that compression says it
        why.append("settings of another compression (JPEG tables, a LERC stage, T4Options or EER bits)")
    if not recipe.tiled and recipe.image_length % recipe.segment_length:
        why.append(f"short last strip ({recipe.image_length} rows in strips of {recipe.segment_length})")
    if compression == NONE and not why:
        size = recipe.segment_length * recipe.segment_width * recipe.samples * np.dtype(recipe.dtype).itemsize
        if lengths is None:  # stackcube.tiff reads a longer segment's first bytes, where bytes refuses it
            why.append("uncompressed segments whose byte counts are not known")
        elif np.any((np.asarray(lengths) != 0) & (np.asarray(lengths) != size)):
            why.append(f"uncompressed segments of other sizes than {size} bytes")
    return ", ".join(why) or None


def _sample_reasons(recipe: Recipe) -> list[str]:
    """What makes the samples something the ``bytes`` codec does not read: packed, 24-bit or complex."""
    bits, fmt, dtype = recipe.bitspersample, recipe.sampleformat, np.dtype(recipe.dtype)
    if bits not in {8, 16, 32, 64}:
        return [f"{bits}-bit samples"]
    if fmt in {5, 6}:
        return ["complex samples"]
    if fmt not in KINDS:
        return [f"SampleFormat={fmt}"]
    if dtype.kind != KINDS[fmt] or dtype.itemsize * 8 != bits:
        return [f"{bits}-bit samples of SampleFormat={fmt} decoded as {dtype}"]
    return []


def _compression_name(value: int) -> str:
    try:
        return str(tifffile.COMPRESSION(value).name)
    except ValueError:
        return str(value)


class Zlib(ZarrZlib):
    """``numcodecs.zlib`` as a process with stackcube decodes it: with libdeflate into the chunk's known size, as
    ``stackcube.tiff`` inflates Deflate, where numcodecs inflates with Python's zlib module in about 2.5 times the
    time (a 512 x 512 uint16 tile: 2.07 ms against 0.84 ms). The name and configuration in the metadata are
    numcodecs', and so is every other result: a stream that does not inflate to exactly the chunk's size (or does
    not inflate) goes to numcodecs, whose answer or error it gets. Written by hand: neither zarr nor numcodecs
    offers libdeflate."""

    def _decode_sync(self, chunk_data: Buffer, chunk_spec: ArraySpec) -> Buffer:
        size = math.prod(chunk_spec.shape) * chunk_spec.dtype.to_native_dtype().itemsize
        try:
            out = imagecodecs.deflate_decode(chunk_data.as_numpy_array(), out=size)
        except imagecodecs.DeflateError:  # more than the chunk's size, or no zlib stream: numcodecs says what
            out = None
        if out is None or len(out) != size:
            return super()._decode_sync(chunk_data, chunk_spec)
        return chunk_spec.prototype.buffer.from_bytes(out)


ZLIB = f"{Zlib.__module__}.{Zlib.__qualname__}"
"""How zarr's configuration names :class:`Zlib`."""


def _decode_zlib_with_libdeflate() -> None:
    """Register :class:`Zlib` for ``numcodecs.zlib`` and make it zarr's choice where zarr's own is still the
    configured one (a choice the user made is kept). Undone, after stackcube's import, by
    ``zarr.config.set({"codecs": {**zarr.config.get("codecs"), "numcodecs.zlib": "zarr.codecs.numcodecs.Zlib"}})``
    (the key holds a dot: a dotted path would nest it)."""
    zarr.registry.register_codec("numcodecs.zlib", Zlib, qualname=ZLIB)
    codecs = dict(zarr.config.get("codecs", {}))  # "numcodecs.zlib" is one key: a dotted path would nest it
    if codecs.get("numcodecs.zlib") in {None, "zarr.codecs.numcodecs.Zlib"}:
        zarr.config.set({"codecs": {**codecs, "numcodecs.zlib": ZLIB}})


_decode_zlib_with_libdeflate()
