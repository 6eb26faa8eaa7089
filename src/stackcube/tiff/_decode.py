"""Decode the bytes of one TIFF segment (tile or strip) into a (band, y, x) block. Pure: bytes in, array out.

The steps and their order follow tifffile's ``TiffPage.decode`` (the reference we are checked against), with the
same imagecodecs functions, looked up through tifffile's own COMPRESSION/PREDICTOR tables. What is written by hand
here is only what no library does for a segment taken out of its file: finding the shape of an edge segment
from its size alone (the codec does not know the chunk's position), LERC's second compression stage as GDAL
writes it, and chroma-subsampled YCbCr without JPEG, which tifffile refuses.
"""

from __future__ import annotations

from collections.abc import Buffer, Callable
from typing import Any, cast

import imagecodecs
import numpy as np
import tifffile

from stackcube.errors import CorruptTiffError, UnsupportedTiffError
from stackcube.tiff._model import Recipe

__all__ = ["EER_COMPRESSIONS", "JPEG_COMPRESSIONS", "check_decodable", "decode_segment"]

JPEG_COMPRESSIONS = frozenset({6, 7, 33007, 34892})
CCITT_COMPRESSIONS = frozenset({2, 3, 4})
EER_COMPRESSIONS = frozenset({65000, 65001, 65002})
JETRAW = 48124
# compressions whose decoders return shaped images; predictors and fill order do not apply to them
IMAGE_COMPRESSIONS = frozenset(tifffile.TIFF.IMAGE_COMPRESSIONS) - EER_COMPRESSIONS - {JETRAW}
LERC = 34887
# typed: the two decoders are overloaded differently, so mypy cannot join them into one callable on its own
_LERC_STAGE: dict[int, Callable[[Buffer], Buffer]] = {1: imagecodecs.deflate_decode, 2: imagecodecs.zstd_decode}
_JPEG_FALLBACK_ERRORS = ("Unsupported JPEG data precision", "Unsupported color conversion", "SOF type")


def check_decodable(recipe: Recipe) -> None:
    """Raise UnsupportedTiffError when ``recipe`` names a feature :func:`decode_segment` cannot decode."""
    if recipe.compression not in {1, *JPEG_COMPRESSIONS}:
        try:
            tifffile.TIFF.DECOMPRESSORS[recipe.compression]
        except KeyError:
            name = _enum_name(tifffile.COMPRESSION, recipe.compression)
            msg = f"Compression={recipe.compression} ({name}) is not supported"
            raise UnsupportedTiffError(msg) from None
        if recipe.compression in EER_COMPRESSIONS and len(recipe.eer) != 3:
            msg = f"Compression={recipe.compression} (EER) without its skip, horizontal and vertical bits"
            raise CorruptTiffError(msg)
        if recipe.compression == JETRAW and not imagecodecs.JETRAW.available:
            # tifffile refuses it too: its decoder is imagecodecs' Jetraw codec, absent from these wheels
            msg = f"Compression={JETRAW} (JETRAW) needs imagecodecs built with Jetraw, which this installation lacks"
            raise UnsupportedTiffError(msg)
    if recipe.predictor != 1 and recipe.compression not in IMAGE_COMPRESSIONS | JPEG_COMPRESSIONS:
        if recipe.predictor not in tifffile.TIFF.UNPREDICTORS:
            msg = f"Predictor={recipe.predictor} is not supported"
            raise UnsupportedTiffError(msg)
        if recipe.bitspersample == 24 and np.dtype(recipe.dtype).kind == "f":
            msg = "Predictor with 24-bit floating point samples is not supported"
            raise UnsupportedTiffError(msg)
    if _is_subsampled(recipe):
        if recipe.bitspersample != 8 or recipe.planarconfig != 1 or recipe.predictor != 1:
            msg = (
                f"YCbCrSubSampling={recipe.subsampling} is supported for 8-bit chunky data without predictor; "
                f"found {recipe.bitspersample}-bit, PlanarConfiguration={recipe.planarconfig}, "
                f"Predictor={recipe.predictor}"
            )
            raise UnsupportedTiffError(msg)
        if recipe.subsampling[0] not in {1, 2, 4} or recipe.subsampling[1] not in {1, 2, 4}:
            msg = f"YCbCrSubSampling={recipe.subsampling} is not a valid subsampling"
            raise CorruptTiffError(msg)


def decode_segment(data: Any, recipe: Recipe, fill_value: Any = 0) -> np.ndarray:
    """Decode one stored segment into an array of shape (samples, segment_length, segment_width).

    Parts of an edge segment that the file does not store (the rows below the image in the last strip, or the
    remainder of a tile that an image codec stored cropped) are filled with ``fill_value``, as tifffile does.
    """
    if recipe.compression in JPEG_COMPRESSIONS:
        block = _decode_jpeg(data, recipe)
    elif recipe.compression in IMAGE_COMPRESSIONS:
        block = _decode_image(data, recipe)
    elif recipe.compression in CCITT_COMPRESSIONS:
        block = _decode_ccitt(data, recipe)
    elif recipe.compression in EER_COMPRESSIONS:
        shape = (recipe.segment_length, recipe.segment_width)
        block = imagecodecs.eer_decode(data, shape, *recipe.eer, superres=False).astype(recipe.dtype)[..., np.newaxis]
    elif recipe.compression == JETRAW:
        block = np.zeros((recipe.segment_length, recipe.segment_width, 1), np.uint16)  # as tifffile: a given buffer
        imagecodecs.jetraw_decode(data, out=block)
    elif _is_subsampled(recipe):
        block = _decode_ycbcr_subsampled(data, recipe)
    else:
        block = _decode_other(data, recipe)
    return _pad(block, recipe, fill_value).transpose(2, 0, 1)


def _is_subsampled(recipe: Recipe) -> bool:
    return (
        recipe.photometric == 6 and recipe.compression not in JPEG_COMPRESSIONS and tuple(recipe.subsampling) != (1, 1)
    )


def _enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return "unknown"


def _decode_jpeg(data: Any, recipe: Recipe) -> np.ndarray:
    colorspace: int | None = None
    outcolorspace: int | str | None = None
    # as tifffile's jpeg_decode_colorspace: libjpeg converts YCbCr to RGB; RGB JPEG without JFIF is raw RGB
    if not recipe.extrasamples:
        if recipe.photometric == 6:
            outcolorspace = 2
        elif recipe.photometric == 2:
            if bytes(data[6:10]) != b"JFIF":
                colorspace = 2
            outcolorspace = 2
        elif recipe.photometric == 5:
            outcolorspace = 4
        elif recipe.photometric > 3:
            outcolorspace = tifffile.PHOTOMETRIC(recipe.photometric).name
    if recipe.planarconfig != 1:
        outcolorspace = 1
    try:
        out = imagecodecs.jpeg_decode(
            data, tables=recipe.jpegtables, colorspace=colorspace, outcolorspace=outcolorspace
        )
    except Exception as exc:
        if not any(text in str(exc) for text in _JPEG_FALLBACK_ERRORS):
            raise
        out = imagecodecs.ljpeg_decode(data)
    return _as_hws(out)


def _decode_image(data: Any, recipe: Recipe) -> np.ndarray:
    if recipe.compression == 50001 and recipe.samples == 4:
        # WebP segments may omit an all-opaque alpha channel
        out = imagecodecs.webp_decode(data, hasalpha=True)
    else:
        out = tifffile.TIFF.DECOMPRESSORS[recipe.compression](data)
    return _as_hws(out)


def _decode_ccitt(data: Any, recipe: Recipe) -> np.ndarray:
    # CCITT decoders need the segment's height and width; bits beyond a short last strip fall outside the image
    if recipe.fillorder == 2:
        data = imagecodecs.bitorder_decode(bytes(data))
    height, width = recipe.segment_length, recipe.segment_width
    if recipe.compression == 2:
        out = imagecodecs.ccittrle_decode(data, height, width)
    elif recipe.compression == 3:
        out = imagecodecs.ccittfax3_decode(data, height, width, t4options=recipe.t4options)
    else:
        out = imagecodecs.ccittfax4_decode(data, height, width)
    return _reshape(np.asarray(out).reshape(-1), recipe)


def _as_hws(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim == 2:
        return out[:, :, np.newaxis]
    if out.ndim == 4 and out.shape[0] == 1:
        return cast("np.ndarray", out[0])
    return out


def _decode_lerc(data: Any, recipe: Recipe) -> np.ndarray:
    # the LERC blob holds samples in the file's byte order; its validity mask marks samples that libtiff's LERC
    # decoder (GDAL's) turns into NaN for floating point
    values, valid = imagecodecs.lerc_decode(data, masks=True)
    values = np.ascontiguousarray(values)
    values = values.view(values.dtype.newbyteorder(recipe.byteorder))
    if valid is not None and values.dtype.kind == "f" and not np.all(valid):
        valid = np.asarray(valid)
        if valid.ndim < values.ndim:
            valid = valid.reshape(valid.shape + (1,) * (values.ndim - valid.ndim))
        values = np.where(valid, values, np.array(np.nan, values.dtype)).astype(values.dtype)
    return values


def _unpack(data: Any, recipe: Recipe) -> np.ndarray:
    dtype = np.dtype(recipe.dtype)
    bps = recipe.bitspersample
    if recipe.sampleformat == 5:
        # complex integers: pairs of integers, presented as complex floats (as tifffile and GDAL do)
        pairs = np.dtype(f"{recipe.byteorder}i{bps // 16}")
        buffer = memoryview(data).cast("B")
        usable = (len(buffer) // (2 * pairs.itemsize)) * 2 * pairs.itemsize
        return np.frombuffer(buffer[:usable], pairs).astype(f"f{dtype.itemsize // 2}").view(dtype)
    if bps in {8, 16, 32, 64, 128}:
        # the floating-point predictor works on the raw byte order
        stored = dtype if recipe.predictor in {3, 34894, 34895} else dtype.newbyteorder(recipe.byteorder)
        buffer = memoryview(data).cast("B")
        usable = (len(buffer) // stored.itemsize) * stored.itemsize  # LZW strips may lack their EOI code
        return np.frombuffer(buffer[:usable], stored)
    if bps == 24 and dtype.kind == "f":
        return imagecodecs.float24_decode(data, byteorder=recipe.byteorder)
    runlen = recipe.segment_width * recipe.samples
    return imagecodecs.packints_decode(data, dtype, bps, runlen=runlen)


def _decode_other(data: Any, recipe: Recipe) -> np.ndarray:
    if recipe.fillorder == 2:
        data = imagecodecs.bitorder_decode(bytes(data))
    if recipe.compression == LERC:
        if recipe.lerc_compression:
            data = _LERC_STAGE[recipe.lerc_compression](data)
        data = _decode_lerc(data, recipe)
    elif recipe.compression != 1:
        size = recipe.segment_length * recipe.segment_width * recipe.samples
        itemsize = recipe.bitspersample // 8 if recipe.sampleformat == 5 else np.dtype(recipe.dtype).itemsize
        data = tifffile.TIFF.DECOMPRESSORS[recipe.compression](data, out=size * itemsize)
    flat = _unpack(data, recipe)
    block = _reshape(flat, recipe)
    block = block.astype(np.dtype(recipe.dtype).newbyteorder("="), copy=False)
    # libtiff ignores a predictor on uncompressed data, and so does a cube built before the header reader did
    if recipe.predictor != 1 and recipe.compression != 1:
        if not block.flags.writeable:
            block = block.copy()
        block = tifffile.TIFF.UNPREDICTORS[recipe.predictor](block, axis=-2, out=block)
    return block


def _reshape(flat: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Shape a flat segment as (rows, columns, samples), finding the size of a short last strip from its length.

    Tiles are whole whatever their place (TIFF 6.0 pads edge tiles): a tile that decodes short is corrupt (a
    BitsPerSample wider than the data, say), and is refused rather than read as an edge tile of the wrong size.
    """
    length, width, samples = recipe.segment_length, recipe.segment_width, recipe.samples
    full = length * width * samples
    if flat.size >= full:
        return flat[:full].reshape(length, width, samples)
    rem_length = recipe.image_length - (-(-recipe.image_length // length) - 1) * length
    # only the last strip may be short, and then by exactly what remains of the image
    if not recipe.tiled and flat.size >= rem_length * width * samples > 0:
        return flat[: rem_length * width * samples].reshape(rem_length, width, samples)
    expected = (
        f"a tile of {length} x {width} x {samples}"
        if recipe.tiled
        else (f"a strip of {length} x {width} x {samples}, or the last of {rem_length} rows")
    )
    msg = (
        f"corrupted segment: {flat.size} samples decoded, expected {full} ({expected}); the file is corrupt "
        "(its BitsPerSample or segment sizes do not match its data): rewrite it, or leave it out"
    )
    raise CorruptTiffError(msg)


def _decode_ycbcr_subsampled(data: Any, recipe: Recipe) -> np.ndarray:
    """Expand chroma-subsampled YCbCr data units (TIFF 6.0 section 21) to full-resolution Y, Cb, Cr samples.

    Chroma is replicated over its block, as libtiff does before colour conversion; values stay YCbCr, as
    tifffile returns YCbCr samples for non-subsampled YCbCr images.
    """
    if recipe.compression != 1:
        data = tifffile.TIFF.DECOMPRESSORS[recipe.compression](data)
    sh, sv = recipe.subsampling
    width = recipe.segment_width
    raw = np.frombuffer(memoryview(data).cast("B"), np.uint8)
    unit = sh * sv + 2
    blocks_x = -(-width // sh)
    blocks_y = min(-(-recipe.segment_length // sv), raw.size // (unit * blocks_x))
    if blocks_y == 0:
        msg = f"corrupted YCbCr segment: {raw.size} bytes is less than one row of {blocks_x} data units"
        raise CorruptTiffError(msg)
    units = raw[: blocks_y * blocks_x * unit].reshape(blocks_y, blocks_x, unit)
    luma = units[:, :, : sh * sv].reshape(blocks_y, blocks_x, sv, sh).transpose(0, 2, 1, 3)
    luma2d = luma.reshape(blocks_y * sv, blocks_x * sh)
    chroma = np.repeat(np.repeat(units[:, :, sh * sv :], sv, axis=0), sh, axis=1)
    out = np.empty((blocks_y * sv, blocks_x * sh, 3), np.uint8)
    out[:, :, 0] = luma2d
    out[:, :, 1:] = chroma
    rows = min(out.shape[0], recipe.segment_length)
    return out[:rows, :width]


def _pad(block: np.ndarray, recipe: Recipe, fill_value: Any) -> np.ndarray:
    shape = (recipe.segment_length, recipe.segment_width, recipe.samples)
    if block.shape == shape:
        return block
    if block.ndim != 3 or block.shape[2] != recipe.samples:
        msg = f"decoded segment has shape {block.shape}, expected (rows, columns, {recipe.samples})"
        raise CorruptTiffError(msg)
    block = block[: shape[0], : shape[1]]
    out = np.full(shape, fill_value if fill_value is not None else 0, dtype=block.dtype)
    out[: block.shape[0], : block.shape[1]] = block
    return out
