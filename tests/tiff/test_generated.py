"""Generated fixtures: GDAL (through rasterio) and tifffile write, stackcube reads through Zarr, bit for bit.

Sweeps compression x predictor x dtype x planar configuration x byte order x tiles/strips (with a short last strip
and edge tiles), plus what the corpus lacks: LERC with Zstd/Deflate, LZMA, JPEG-XL, WebP, CIE L*a*b*, float16,
int64/uint64, packed 1-7/12/14-bit samples, sparse files, chroma-subsampled YCbCr without JPEG.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.transform import from_origin

from stackcube.tiff import open_manifest, read_tiff

HEIGHT, WIDTH = 203, 301  # neither divides by the block sizes: edge tiles and a short last strip


def samples(dtype: str, count: int, seed: int) -> np.ndarray:
    """Deterministic content spanning the dtype's range, different per band, with some repetition to compress."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    shape = (count, HEIGHT, WIDTH)
    if dt.kind == "f":
        base = np.linspace(-1000, 1000, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH)
        data = np.stack([base * (b + 1) + rng.normal(0, 1, (HEIGHT, WIDTH)) for b in range(count)])
        data[:, 5, 5] = np.nan
        return data.astype(dt)
    info = np.iinfo(dt)
    low, high = max(info.min, -(2**40)), min(info.max, 2**40)
    data = rng.integers(low, high, size=shape, dtype=dt, endpoint=True)
    data[:, : HEIGHT // 2] //= 7  # smoother half
    return data


def read_stackcube(path: Path, ifd: int = 0) -> np.ndarray:
    return open_manifest(read_tiff(path), ifd).values


def assert_bits_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    a = np.ascontiguousarray(actual).view(np.uint8)
    b = np.ascontiguousarray(expected).view(np.uint8)
    assert np.array_equal(a, b), f"{int((a != b).sum())} bytes differ"


# --- GDAL -------------------------------------------------------------------------------------------------------
GDAL_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64", "int64", "uint64"]
GDAL_LOSSLESS = ["NONE", "DEFLATE", "LZW", "ZSTD", "LZMA", "PACKBITS", "LERC", "LERC_ZSTD", "LERC_DEFLATE"]
PREDICTOR_CODECS = {"DEFLATE", "LZW", "ZSTD", "LZMA"}


def gdal_cases():
    layouts = list(itertools.product([True, False], ["PIXEL", "BAND"], ["LITTLE", "BIG"]))
    for i, (compress, dtype) in enumerate(itertools.product(GDAL_LOSSLESS, GDAL_DTYPES)):
        if compress.startswith("LERC") and dtype in {"int64", "uint64"}:
            continue  # LERC has no 64-bit integers
        tiled, interleave, endian = layouts[i % len(layouts)]
        if compress.startswith("LERC") and np.dtype(dtype).kind == "f":
            endian = "LITTLE"  # see test_gdal_big_endian_float_lerc_loses_samples
        predictors = [1]
        if compress in PREDICTOR_CODECS:
            predictors = [1, 3] if np.dtype(dtype).kind == "f" else [1, 2]
        for predictor in predictors:
            yield pytest.param(
                compress,
                dtype,
                predictor,
                tiled,
                interleave,
                endian,
                id=f"{compress}-{dtype}-p{predictor}-{'tiles' if tiled else 'strips'}-"
                f"{interleave.lower()}-{endian.lower()}",
            )


def write_gdal(path: Path, data: np.ndarray, **options) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": "EPSG:32635",
        "transform": from_origin(600000, 9500000, 10, 10),
    }
    with rasterio.open(path, "w", **profile, **options) as ds:
        ds.write(data)
    return path


@pytest.mark.parametrize(("compress", "dtype", "predictor", "tiled", "interleave", "endian"), list(gdal_cases()))
def test_gdal_sweep(tmp_path, compress, dtype, predictor, tiled, interleave, endian) -> None:
    data = samples(dtype, 3, seed=hash((compress, dtype)) % 2**32)
    options = {"compress": compress, "interleave": interleave, "endianness": endian}
    if predictor != 1:
        options["predictor"] = predictor
    if tiled:
        options.update(tiled=True, blockxsize=128, blockysize=64)
    else:
        options["blockysize"] = 50  # 203 rows: the last strip holds 3
    path = write_gdal(tmp_path / "x.tif", data, **options)
    with rasterio.open(path) as ds:
        expected = ds.read()
    actual = read_stackcube(path)
    assert_bits_equal(actual, expected)
    assert_bits_equal(actual, data)


def test_gdal_big_endian_float_lerc_loses_samples(tmp_path) -> None:
    """GDAL hands LERC byte-swapped doubles; those that look like NaN are stored as invalid and lost.

    GDAL then reads them back as a byte-swapped NaN (a denormal); stackcube returns NaN, as LERC's mask says.
    Every other sample is bit-identical to GDAL.
    """
    data = samples("float64", 1, seed=1)
    path = write_gdal(
        tmp_path / "lerc.tif", data, compress="LERC", endianness="BIG", tiled=True, blockxsize=128, blockysize=64
    )
    with rasterio.open(path) as ds:
        gdal = ds.read()
    actual = read_stackcube(path)
    lost = ~((gdal == data) | (np.isnan(gdal) & np.isnan(data)))
    assert lost.any()
    assert np.isnan(actual[lost]).all()
    assert (gdal[lost].view(np.uint64) == np.float64(np.nan).view(np.uint64).byteswap()).all()
    assert_bits_equal(actual[~lost], gdal[~lost])


@pytest.mark.parametrize(
    ("compress", "count", "photometric"),
    [("JPEG", 3, "YCBCR"), ("JPEG", 3, "RGB"), ("JPEG", 1, "MINISBLACK"), ("WEBP", 3, "RGB"), ("WEBP", 4, "RGB")],
)
def test_gdal_lossy_codecs_equal_gdal(tmp_path, compress, count, photometric) -> None:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    data = np.stack([(x + 40 * b + y // 3) % 256 for b in range(count)]).astype(np.uint8)
    options = {"compress": compress, "tiled": True, "blockxsize": 128, "blockysize": 128, "photometric": photometric}
    if compress == "WEBP":
        options.pop("photometric")
        options["webp_lossless"] = True
    path = write_gdal(tmp_path / "lossy.tif", data, **options)
    with rasterio.open(path) as ds:
        expected = ds.read()
    actual = read_stackcube(path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        reference = page.asarray().reshape(page.shaped)[0, 0].transpose(2, 0, 1)
    assert_bits_equal(actual, reference)
    if compress == "WEBP" or photometric != "RGB":
        # libjpeg inside GDAL and imagecodecs may round YCbCr differently; WebP lossless is exact
        assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1


def test_gdal_overviews_and_mask_roles(tmp_path) -> None:
    data = samples("uint16", 1, seed=1)
    path = tmp_path / "ovr.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=WIDTH,
            height=HEIGHT,
            count=1,
            dtype="uint16",
            tiled=True,
            blockxsize=64,
            blockysize=64,
            compress="DEFLATE",
            crs="EPSG:32635",
            transform=from_origin(600000, 9500000, 10, 10),
        ) as ds:
            ds.write(data)
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            mask[20:150, 30:250] = 255
            ds.write_mask(mask)
        with rasterio.open(path, "r+") as ds:
            ds.build_overviews([2, 4], rasterio.enums.Resampling.nearest)
    manifest = read_tiff(path)
    roles = [(e.role, e.level, e.shape[1:]) for e in manifest.ifds]
    assert roles[0] == ("image", 0, (HEIGHT, WIDTH))
    assert ("mask", 0, (HEIGHT, WIDTH)) in roles
    overviews = [r for r in roles if r[0] == "overview"]
    with rasterio.open(path) as ds:
        assert [lvl for _, lvl, _ in overviews] == [1, 2]
        for (_, level, shape), factor in zip(overviews, ds.overviews(1), strict=True):
            assert shape == (-(-HEIGHT // factor), -(-WIDTH // factor)), level
        mask_ifd = next(e for e in manifest.ifds if e.role == "mask")
        values = open_manifest(manifest, mask_ifd.path).values[0]
        assert np.array_equal(values > 0, ds.read_masks(1) > 0)


def write_sparse(path: Path, compress: str) -> None:
    """An int16 file of 64 x 64 tiles with nodata -9999 where GDAL wrote one tile only (SPARSE_OK: the others are
    left out, offset and byte count 0)."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=WIDTH,
        height=HEIGHT,
        count=1,
        dtype="int16",
        nodata=-9999,
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress=compress,
        sparse_ok=True,
        crs="EPSG:32635",
        transform=from_origin(600000, 9500000, 10, 10),
    ) as ds:
        ds.write(np.full((1, 64, 64), 7, np.int16), window=rasterio.windows.Window(64, 64, 64, 64))


def test_gdal_sparse_file_reads_fill_value(tmp_path) -> None:
    path = tmp_path / "sparse.tif"
    write_sparse(path, "DEFLATE")
    manifest = read_tiff(path)
    ifd = manifest.ifds[0]
    assert (ifd.lengths == 0).sum() == ifd.lengths.size - 1
    assert ifd.fill_value == -9999
    with rasterio.open(path) as ds:
        expected = ds.read()
    assert_bits_equal(open_manifest(manifest).values, expected)


# --- tifffile ---------------------------------------------------------------------------------------------------
TIFFFILE_CASES = [
    # compression, dtype, predictor, samples, planarconfig, byteorder, tile
    ("jpegxl", "uint8", None, 3, "contig", "<", (64, 64)),
    ("jpegxl", "uint16", None, 1, "contig", "<", (64, 64)),
    ("webp", "uint8", None, 3, "contig", "<", (64, 64)),
    ("png", "uint8", None, 3, "contig", "<", (64, 64)),
    ("png", "uint16", None, 1, "contig", "<", None),
    ("lzma", "float16", "floatingpoint", 1, "contig", "<", (64, 64)),
    ("zlib", "float16", None, 2, "separate", ">", None),
    ("zlib", "float64", "floatingpoint", 3, "contig", ">", (32, 48)),
    ("zstd", "int64", "horizontal", 1, "contig", ">", (64, 64)),
    ("zstd", "uint64", "horizontal", 2, "contig", "<", None),
    ("lerc", "float32", None, 1, "contig", "<", (64, 64)),
    ("lzw", "int8", "horizontal", 4, "contig", ">", None),
    ("packbits", "uint16", None, 3, "separate", ">", None),
    (None, "float32", None, 3, "separate", ">", (48, 32)),
]


@pytest.mark.parametrize(
    ("compression", "dtype", "predictor", "count", "planar", "byteorder", "tile"), TIFFFILE_CASES, ids=str
)
def test_tifffile_sweep(tmp_path, compression, dtype, predictor, count, planar, byteorder, tile) -> None:
    data = samples(dtype, count, seed=5)
    if compression in {"jpegxl", "webp", "png"}:
        data = np.abs(data)
    path = tmp_path / "t.tif"
    arr = data if planar == "separate" or count == 1 else np.moveaxis(data, 0, -1)
    if count == 1:
        arr = data[0]
    kwargs = {
        "compression": compression,
        "predictor": predictor,
        "planarconfig": planar if count > 1 else None,
        "byteorder": byteorder,
        "tile": tile,
        "rowsperstrip": None if tile else 37,
        "photometric": "rgb" if count == 3 and dtype == "uint8" else "minisblack",
    }
    if compression == "jpegxl":
        kwargs["compressionargs"] = {"lossless": True}
    if compression == "webp":
        kwargs["compressionargs"] = {"lossless": True}
    tifffile.imwrite(path, arr, **{k: v for k, v in kwargs.items() if v is not None})
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        expected = page.asarray().reshape(page.shaped)
    expected = expected[:, 0, :, :, 0] if expected.shape[0] > 1 else expected[0, 0].transpose(2, 0, 1)
    actual = read_stackcube(path)
    if compression != "lerc":  # tifffile ignores LERC's validity mask (NaN reads as 0); the data is the oracle
        assert_bits_equal(actual, expected)
    assert_bits_equal(actual, data)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 10, 12, 14])
def test_packed_integers(tmp_path, bits) -> None:
    rng = np.random.default_rng(bits)
    dtype = np.uint8 if bits <= 8 else np.uint16
    data = rng.integers(0, 2**bits, size=(HEIGHT, WIDTH), dtype=dtype)
    path = tmp_path / "packed.tif"
    tifffile.imwrite(path, data, bitspersample=bits, rowsperstrip=50, photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].bitspersample == bits
    expected = data.astype(bool) if bits == 1 else data  # tifffile, and so stackcube, gives bool for bilevel
    assert_bits_equal(read_stackcube(path)[0], expected)


def test_cielab_equals_tifffile(tmp_path) -> None:
    data = samples("uint8", 3, seed=2)
    path = tmp_path / "lab.tif"
    tifffile.imwrite(path, np.moveaxis(data, 0, -1), photometric=8, compression="zlib", tile=(64, 64))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].photometric == 8
    assert_bits_equal(read_stackcube(path), data)


def write_ycbcr_uncompressed(
    path: Path, luma: np.ndarray, cb: np.ndarray, cr: np.ndarray, sub: tuple[int, int], rows_per_strip: int
) -> None:
    """A minimal little-endian TIFF of chroma-subsampled YCbCr data units, which no writer we have produces."""
    sh, sv = sub
    height, width = luma.shape
    strips = []
    for top in range(0, height, rows_per_strip):
        units = []
        for by in range(top // sv, -(-min(height, top + rows_per_strip) // sv)):
            for bx in range(-(-width // sh)):
                block = np.zeros((sv, sh), np.uint8)
                part = luma[by * sv : by * sv + sv, bx * sh : bx * sh + sh]
                block[: part.shape[0], : part.shape[1]] = part
                units.append(bytes(block.reshape(-1)) + bytes([cb[by, bx], cr[by, bx]]))
        strips.append(b"".join(units))
    tags = [
        (256, 3, 1, width),
        (257, 3, 1, height),
        (258, 3, 3, None),
        (259, 3, 1, 1),
        (262, 3, 1, 6),
        (273, 4, len(strips), None),
        (277, 3, 1, 3),
        (278, 3, 1, rows_per_strip),
        (279, 4, len(strips), None),
        (284, 3, 1, 1),
        (530, 3, 2, None),
    ]
    header = 8
    ifd_size = 2 + 12 * len(tags) + 4
    extra_at = header + ifd_size
    bps = struct.pack("<3H", 8, 8, 8)
    data_at = extra_at + len(bps) + 8 * len(strips)
    offsets, pos = [], data_at
    for s in strips:
        offsets.append(pos)
        pos += len(s)
    extra = {
        258: bps,
        273: struct.pack(f"<{len(strips)}I", *offsets),
        279: struct.pack(f"<{len(strips)}I", *[len(s) for s in strips]),
    }
    blob, entries, cursor = b"", b"", extra_at
    for code, typ, count, value in tags:
        if code == 530:
            entries += struct.pack("<HHIHH", code, typ, count, sh, sv)
        elif value is not None:
            entries += (
                struct.pack("<HHII", code, typ, count, value)
                if typ == 4
                else struct.pack("<HHIHH", code, typ, count, value, 0)
            )
        elif count == 1 and code in (273, 279):
            entries += struct.pack("<HHII", code, typ, count, struct.unpack("<I", extra[code])[0])
        else:
            entries += struct.pack("<HHII", code, typ, count, cursor)
            blob += extra[code]
            cursor += len(extra[code])
    ifd = struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", header) + ifd + blob + b"".join(strips))


@pytest.mark.parametrize("sub", [(2, 2), (2, 1), (4, 2), (1, 2)])
def test_ycbcr_subsampled_without_jpeg(tmp_path, sub) -> None:
    sh, sv = sub
    rng = np.random.default_rng(sum(sub))
    height, width = 37, 53  # partial data units at the right and bottom edges
    luma = rng.integers(0, 256, (height, width), dtype=np.uint8)
    cb = rng.integers(0, 256, (-(-height // sv), -(-width // sh)), dtype=np.uint8)
    cr = rng.integers(0, 256, cb.shape, dtype=np.uint8)
    path = tmp_path / "ycbcr.tif"
    write_ycbcr_uncompressed(path, luma, cb, cr, sub, rows_per_strip=8 if sv != 4 else 16)
    with tifffile.TiffFile(path) as tif, pytest.raises(NotImplementedError):
        tif.pages[0].asarray()  # tifffile refuses; stackcube decodes
    actual = read_stackcube(path)
    assert_bits_equal(actual[0], luma)
    up = (slice(0, height), slice(0, width))
    assert_bits_equal(actual[1], np.repeat(np.repeat(cb, sv, 0), sh, 1)[up])
    assert_bits_equal(actual[2], np.repeat(np.repeat(cr, sv, 0), sh, 1)[up])


# --- damaged files, complex integers, every compression tifffile decodes ------------------------------------------
def test_a_cog_cut_short_keeps_its_overviews_and_refuses_exactly_the_damaged_ifd(tmp_path) -> None:
    """GDAL's COG layout puts the full-resolution tiles last: a file cut short loses only them."""
    import zarr

    from stackcube.errors import CorruptTiffError
    from stackcube.tiff import manifest_store

    data = samples("uint16", 1, seed=5)
    whole = tmp_path / "whole.tif"
    profile = {"width": WIDTH, "height": HEIGHT, "count": 1, "dtype": "uint16", "crs": "EPSG:32635"}
    profile["transform"] = from_origin(600000, 9500000, 10, 10)
    with rasterio.open(whole, "w", driver="COG", blocksize=64, overview_resampling="nearest", **profile) as ds:
        ds.write(data)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:-5000])
    manifest = read_tiff(cut)
    assert manifest.ifds[0].damage is not None
    assert "IFD 0: segment" in manifest.ifds[0].damage
    assert "ends beyond the end of the file" in manifest.ifds[0].damage
    assert all(e.damage is None for e in manifest.ifds[1:])
    with pytest.raises(CorruptTiffError, match=r"cut\.tif: IFD 0: segment \d+ at offset"):
        open_manifest(manifest, 0)
    with rasterio.open(cut) as full, tifffile.TiffFile(cut) as tif:
        for level, entry in enumerate(manifest.ifds[1:]):
            with rasterio.open(cut, overview_level=level) as ds:
                expected = ds.read()
            assert_bits_equal(open_manifest(manifest, entry.path).values, expected)
            assert_bits_equal(open_manifest(manifest, entry.path).values[0], tif.pages[entry.path[0]].asarray())
        assert len(full.overviews(1)) == len(manifest.ifds) - 1
    whole_file = zarr.open_group(manifest_store(manifest, ifd=None), mode="r", zarr_format=3)
    assert whole_file.attrs["damaged_ifds"] == [manifest.ifds[0].damage]
    assert "ifd0" not in set(whole_file.group_keys())  # left out; the overviews are there
    assert {"ifd1", "ifd2"} <= set(whole_file.group_keys())
    assert TiffManifestRoundTrip(manifest)


def TiffManifestRoundTrip(manifest) -> bool:  # noqa: N802 - reads as the assertion it is
    from stackcube.tiff import TiffManifest

    again = TiffManifest.from_dict(manifest.to_dict())
    return [e.damage for e in again.ifds] == [e.damage for e in manifest.ifds]


def complex_pairs(bits: int, count: int) -> np.ndarray:
    """(count, height, width, 2) integers of ``bits`` bits: the real and imaginary parts of complex samples."""
    rng = np.random.default_rng(bits)
    limit = 2 ** (bits - 1) - 1
    return rng.integers(-limit, limit, size=(count, HEIGHT, WIDTH, 2), dtype=f"int{bits}", endpoint=True)


@pytest.mark.parametrize("layout", ["tiles-deflate", "strips-none", "tiles-lzw-band"])
def test_complex_int16_reads_as_gdal_presents_it(tmp_path, layout) -> None:
    """Sentinel-1 SLC products store CInt16: pairs of int16, which GDAL and tifffile present as complex64."""
    pairs = complex_pairs(16, 2)
    data = (pairs[..., 0] + 1j * pairs[..., 1]).astype(np.complex64)
    kind, compress, *band = layout.split("-")
    options: dict = {"compress": compress.upper(), "interleave": "BAND" if band else "PIXEL"}
    options |= {"tiled": True, "blockxsize": 64, "blockysize": 32} if kind == "tiles" else {"blockysize": 50}
    path = tmp_path / "c.tif"
    profile = {"driver": "GTiff", "width": WIDTH, "height": HEIGHT, "count": 2, "dtype": "complex_int16"}
    profile |= {"crs": "EPSG:32635", "transform": from_origin(600000, 9500000, 10, 10)}
    with rasterio.open(path, "w", **profile, **options) as ds:
        ds.write(data)
    with rasterio.open(path) as ds:
        expected = ds.read()
    assert expected.dtype == np.complex64
    assert read_tiff(path).ifds[0].recipe.sampleformat == 5
    assert_bits_equal(read_stackcube(path), expected)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        reference = page.asarray() if page.planarconfig == 2 else np.moveaxis(page.asarray(), -1, 0)
        assert_bits_equal(read_stackcube(path), reference)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_complex_int32_reads_as_gdal_presents_it(tmp_path, compression) -> None:
    """CInt32 (rasterio cannot write it): pairs of int32 written by tifffile, the tags made to say CInt32."""
    pairs = complex_pairs(32, 1)[0]
    path = tmp_path / "c32.tif"
    tifffile.imwrite(path, pairs.reshape(HEIGHT, WIDTH * 2), compression=compression, rowsperstrip=50)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tags = tif.pages[0].tags
        tags[256].overwrite(WIDTH)  # ImageWidth: pairs are samples of 64 bits
        tags[258].overwrite(64)  # BitsPerSample
        tags[339].overwrite(5)  # SampleFormat: complex integer
    ours = read_stackcube(path)
    assert ours.dtype == np.complex128  # as tifffile and GDAL's own NumPy mapping of CInt32: exact
    np.testing.assert_array_equal(ours[0].real, pairs[..., 0])
    np.testing.assert_array_equal(ours[0].imag, pairs[..., 1])
    with tifffile.TiffFile(path) as tif:
        assert_bits_equal(ours[0], tif.pages[0].asarray())
    with warnings_ignored(), rasterio.open(path) as ds:
        gdal = ds.read()
    assert gdal.dtype == np.complex64  # rasterio narrows CInt32 to complex64: equal to ours narrowed the same way
    assert_bits_equal(ours.astype(np.complex64), gdal)


def warnings_ignored():
    """rasterio warns that a file without georeferencing returns the identity transform."""
    import warnings

    context = warnings.catch_warnings()
    context.__enter__()
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)

    class _Exit:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            context.__exit__(*exc)

    return _Exit()


def eer_encode(events: np.ndarray, skipbits: int, horzbits: int, vertbits: int) -> bytes:
    """Electron events (a boolean frame) as the EER bitstream (EER format documentation 3.0, section 4): per event,
    the number of pixels skipped since the last one (``skipbits`` bits, all ones meaning "skip that many, no event")
    and its sub-pixel position (zero here), least significant bit first, padded to whole 16-bit words. Written here
    because imagecodecs decodes EER but does not encode it."""
    bits: list[int] = []
    nbits = horzbits + vertbits
    mask = (1 << skipbits) - 1

    def put(value: int, width: int) -> None:
        bits.extend((value >> k) & 1 for k in range(width))

    def skip(count: int) -> int:
        while count >= mask:
            put(mask, skipbits)
            count -= mask
        return count

    last = 0
    for position in np.flatnonzero(events.ravel()).tolist():
        put(skip(position - last), skipbits)
        put(0, nbits)
        last = position + 1
    put(skip(events.size - last), skipbits)  # reaching the frame's end stops the decoder before the padding
    bits.extend([0] * (-len(bits) % 16))
    return np.packbits(np.array(bits, np.uint8), bitorder="little").tobytes()


def write_eer(path: Path, frames: list[bytes], compression: int, shape: tuple[int, int]) -> None:
    """An EER file as Thermo Fisher writes one: a BigTIFF of 1-bit frames, one strip each, with EER metadata
    (tag 65001); tifffile cannot encode EER, so the strips are written raw and the tags set after."""
    metadata = b"<metadata><item key='sensorPixelSize.width'>1</item></metadata>"
    extratags = [(65001, 7, len(metadata), metadata, True)]
    if compression == 65002:
        extratags += [(65007, 3, 1, 7, True), (65008, 3, 1, 2, True), (65009, 3, 1, 2, True)]
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for frame in frames:
            tif.write(np.frombuffer(frame, np.uint8).reshape(1, -1), extratags=extratags, contiguous=False)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for page in tif.pages:
            page.tags[256].overwrite(shape[1])
            page.tags[257].overwrite(shape[0])
            page.tags[258].overwrite(1)
            page.tags[259].overwrite(compression)
            page.tags[278].overwrite(shape[0])


@pytest.mark.parametrize("compression", [65000, 65001, 65002])
def test_eer_decodes_as_tifffile_does(tmp_path, compression) -> None:
    """Electron-event TIFFs (cryo-EM): what tifffile decodes, stackcube decodes the same, bit for bit."""
    rng = np.random.default_rng(compression)
    shape = (64, 96)
    bits = (8, 2, 2) if compression == 65000 else (7, 2, 2)
    events = [rng.random(shape) < density for density in (0.01, 0.05, 0.002)]
    path = tmp_path / "frames.eer.tif"
    write_eer(path, [eer_encode(e, *bits) for e in events], compression, shape)
    manifest = read_tiff(path)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_eer
        for i, page in enumerate(tif.pages):
            expected = page.asarray()
            np.testing.assert_array_equal(expected.astype(bool), events[i])  # the frames are what was encoded
            assert manifest.ifds[i].recipe.eer == bits
            assert_bits_equal(open_manifest(manifest, i).values[0], expected)


def test_compressions_tifffile_cannot_decode_here_are_refused_as_tifffile_refuses_them(tmp_path) -> None:
    """Jetraw: tifffile's decoder is imagecodecs' Jetraw codec, which these wheels lack; EER outside an EER file."""
    import imagecodecs

    from stackcube.errors import UnsupportedTiffError

    path = tmp_path / "jetraw.tif"
    tifffile.imwrite(path, np.ones((32, 32), np.uint16))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags[259].overwrite(48124)
    with tifffile.TiffFile(path) as tif:
        if not imagecodecs.JETRAW.available:
            with pytest.raises(Exception):  # noqa: B017, PT011 - whatever tifffile raises, it does not decode
                tif.pages[0].asarray()
    if not imagecodecs.JETRAW.available:
        with pytest.raises(UnsupportedTiffError, match=r"IFD 0: Compression=48124 \(JETRAW\) needs imagecodecs"):
            read_tiff(path)
    not_eer = tmp_path / "not-eer.tif"
    tifffile.imwrite(not_eer, np.ones((32, 32), np.uint8))
    with tifffile.TiffFile(not_eer, mode="r+b") as tif:
        tif.pages[0].tags[259].overwrite(65001)
    with tifffile.TiffFile(not_eer) as tif, pytest.raises(ValueError, match="EER_V1"):
        tif.pages[0].asarray()
    with pytest.raises(UnsupportedTiffError, match=r"IFD 0: Compression=65001 \(EER_V1\) outside an EER file"):
        read_tiff(not_eer)
