"""Which segments Zarr's own codecs decode (tiff._standard): the rule, field by field of the recipe, and every
qualifying IFD of the corpus (and of GDAL's own files) read through zarr-python with those codecs alone, equal to
tifffile's or rasterio's decode, bit for bit."""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.windows
import tifffile
import zarr
from rasterio.transform import from_origin
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import MemoryStore

from stackcube.errors import TiffError
from stackcube.tiff import IfdManifest, Recipe, StandardCodecs, read_tiff, standard_codecs, tiff_only_reason
from tests.conftest import CORPUS, corpus_files, require
from tests.tiff.test_conformance import assert_identical, tifffile_reference
from tests.tiff.test_generated import write_sparse

BASE = Recipe(
    compression=8,
    predictor=1,
    byteorder="<",
    dtype="uint16",
    bitspersample=16,
    samples=1,
    segment_length=256,
    segment_width=512,
    image_length=1000,
    image_width=1000,
    tiled=True,
    photometric=1,
)
"""A Deflate COG's recipe: qualifies as ``bytes`` + ``numcodecs.zlib``."""

BYTES_LE = {"name": "bytes", "configuration": {"endian": "little"}}
BYTES_BE = {"name": "bytes", "configuration": {"endian": "big"}}
BYTES_1 = {"name": "bytes"}
ZLIB = {"name": "numcodecs.zlib", "configuration": {"level": 6}}
ZSTD = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}
TRANSPOSE = {"name": "transpose", "configuration": {"order": [0, 2, 3, 1]}}

# (recipe field, changes to BASE, the codecs written into the metadata; or the reason it stays stackcube.tiff)
CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]] | str]] = [
    ("compression", {}, [BYTES_LE, ZLIB]),
    ("compression", {"compression": 32946}, [BYTES_LE, ZLIB]),
    ("compression", {"compression": 50000}, [BYTES_LE, ZSTD]),
    ("compression", {"compression": 1}, [BYTES_LE]),
    ("compression", {"compression": 5}, "compression LZW"),
    ("compression", {"compression": 32773}, "compression PACKBITS"),
    ("compression", {"compression": 34925}, "compression LZMA"),
    ("compression", {"compression": 34926}, "compression ZSTD"),  # the other ZSTD code: not the one checked
    ("compression", {"compression": 50013}, "compression PIXTIFF"),  # Deflate too, but not checked
    ("compression", {"compression": 34887}, "compression LERC"),
    ("compression", {"compression": 50001}, "compression WEBP"),
    ("compression", {"compression": 4, "dtype": "bool", "bitspersample": 1}, "compression CCITTFAX4"),
    ("predictor", {"predictor": 2}, "predictor 2"),
    ("predictor", {"predictor": 3, "dtype": "float32", "bitspersample": 32, "sampleformat": 3}, "predictor 3"),
    ("predictor", {"predictor": 34892}, "predictor 34892"),
    ("predictor", {"compression": 50000, "predictor": 2}, "predictor 2"),
    # libtiff and stackcube.tiff ignore a predictor on uncompressed data...
    ("predictor", {"compression": 1, "predictor": 2}, [BYTES_LE]),
    # ... but stackcube.tiff reads floating-point-predicted samples in the machine's byte order
    (
        "predictor",
        {"compression": 1, "predictor": 3, "dtype": "float32", "bitspersample": 32, "sampleformat": 3},
        "predictor 3 on uncompressed samples",
    ),
    ("byteorder", {"byteorder": ">"}, [BYTES_BE, ZLIB]),
    ("byteorder", {"byteorder": ">", "dtype": "uint8", "bitspersample": 8}, [BYTES_1, ZLIB]),  # no order in a byte
    ("dtype", {"dtype": "int8", "bitspersample": 8, "sampleformat": 2}, [BYTES_1, ZLIB]),
    ("dtype", {"dtype": "int64", "bitspersample": 64, "sampleformat": 2}, [BYTES_LE, ZLIB]),
    ("dtype", {"dtype": "uint64", "bitspersample": 64}, [BYTES_LE, ZLIB]),
    ("dtype", {"dtype": "float16", "bitspersample": 16, "sampleformat": 3}, [BYTES_LE, ZLIB]),
    ("dtype", {"dtype": "float64", "bitspersample": 64, "sampleformat": 3}, [BYTES_LE, ZLIB]),
    ("dtype", {"dtype": "int16", "sampleformat": 1}, "decoded as int16"),  # not what SampleFormat says
    ("bitspersample", {"bitspersample": 12}, "12-bit samples"),
    ("bitspersample", {"dtype": "bool", "bitspersample": 1}, "1-bit samples"),
    ("bitspersample", {"dtype": "uint8", "bitspersample": 4}, "4-bit samples"),
    ("bitspersample", {"dtype": "float32", "bitspersample": 24, "sampleformat": 3}, "24-bit samples"),
    ("bitspersample", {"dtype": "uint32", "bitspersample": 32}, [BYTES_LE, ZLIB]),
    ("sampleformat", {"sampleformat": 4}, [BYTES_LE, ZLIB]),  # void: read as unsigned, as stackcube.tiff does
    ("sampleformat", {"dtype": "complex64", "bitspersample": 64, "sampleformat": 6}, "complex samples"),
    ("sampleformat", {"dtype": "complex128", "bitspersample": 128, "sampleformat": 6}, "128-bit samples"),
    ("sampleformat", {"dtype": "complex64", "bitspersample": 32, "sampleformat": 5}, "complex samples"),
    ("sampleformat", {"sampleformat": 7}, "SampleFormat=7"),
    ("samples", {"samples": 3}, [TRANSPOSE, BYTES_LE, ZLIB]),
    ("samples", {"samples": 4, "compression": 1, "byteorder": ">"}, [TRANSPOSE, BYTES_BE]),
    ("segment_length", {"tiled": False, "segment_length": 8}, [BYTES_LE, ZLIB]),  # 1000 rows: 125 whole strips
    ("segment_length", {"tiled": False, "segment_length": 64}, "short last strip (1000 rows in strips of 64)"),
    ("segment_width", {"segment_width": 17}, [BYTES_LE, ZLIB]),
    ("image_length", {"tiled": False, "segment_length": 1001, "image_length": 1001}, [BYTES_LE, ZLIB]),  # 1 strip
    ("image_length", {"image_length": 1001}, [BYTES_LE, ZLIB]),  # tiles: edge tiles are whole, as Zarr's chunks
    ("image_width", {"image_width": 1}, [BYTES_LE, ZLIB]),
    ("tiled", {"tiled": False, "segment_length": 1000}, [BYTES_LE, ZLIB]),
    ("tiled", {"tiled": False, "segment_length": 999}, "short last strip"),
    ("photometric", {"photometric": 0}, [BYTES_LE, ZLIB]),  # min-is-white stays as stored, in both
    ("photometric", {"photometric": 3}, [BYTES_LE, ZLIB]),  # palette indices stay indices
    ("photometric", {"photometric": 6, "samples": 3, "dtype": "uint8", "bitspersample": 8}, [TRANSPOSE, BYTES_1, ZLIB]),
    ("planarconfig", {"planarconfig": 2}, [BYTES_LE, ZLIB]),  # a band per segment: samples is 1
    ("fillorder", {"fillorder": 2}, "FillOrder=2"),
    ("extrasamples", {"samples": 4, "extrasamples": (2,)}, [TRANSPOSE, BYTES_LE, ZLIB]),
    (
        "subsampling",
        {"photometric": 6, "subsampling": (2, 2), "samples": 3, "dtype": "uint8", "bitspersample": 8},
        "YCbCr subsampling",
    ),
    ("jpegtables", {"jpegtables": b"\xff\xd8\xff\xd9"}, "JPEG tables"),
    ("jpegtables", {"compression": 7, "jpegtables": b"\xff\xd8\xff\xd9"}, "compression JPEG"),
    ("lerc_compression", {"lerc_compression": 1}, "a LERC stage"),
    ("t4options", {"compression": 1, "t4options": 4}, "T4Options"),
    ("eer", {"compression": 1, "eer": (8, 2, 2)}, "EER bits"),
]


def test_every_field_of_the_recipe_has_its_cases() -> None:
    assert {field for field, _, _ in CASES} == {f.name for f in dataclasses.fields(Recipe)}


def _codecs_written(codecs: StandardCodecs, recipe: Recipe) -> list[dict[str, Any]]:
    """The codecs a cube's (time, band, y, x) array made with ``codecs`` names in its metadata."""
    array = zarr.create_array(
        MemoryStore(),
        shape=(1, recipe.samples, 2 * recipe.segment_length, recipe.segment_width),
        chunks=(1, recipe.samples, recipe.segment_length, recipe.segment_width),
        dtype=recipe.dtype,
        fill_value=0,
        zarr_format=3,
        **codecs.create_keywords(),
    )
    written = array.metadata.to_dict()["codecs"]
    return [
        {**c, "configuration": {k: list(v) if isinstance(v, tuple) else v for k, v in c["configuration"].items()}}
        if "configuration" in c
        else dict(c)
        for c in written
    ]


@pytest.mark.parametrize(
    ("field", "changes", "expected"),
    CASES,
    ids=[f"{f}-{'-'.join(f'{k}={v}' for k, v in c.items()) or 'base'}" for f, c, _ in CASES],
)
def test_the_rule_field_by_field(field: str, changes: dict[str, Any], expected: list[dict[str, Any]] | str) -> None:
    recipe = dataclasses.replace(BASE, **changes)
    lengths = _whole(recipe)
    codecs = standard_codecs(recipe, lengths=lengths)
    why = tiff_only_reason(recipe, lengths)
    if isinstance(expected, str):
        assert codecs is None
        assert why is not None
        assert expected in why
        return
    assert why is None
    assert codecs is not None
    assert _codecs_written(codecs, recipe) == expected
    assert codecs.name == "+".join(
        {"numcodecs.zlib": "zlib"}.get(c["name"], c["name"]) for c in expected
    )  # as the survey prints it


def _whole(recipe: Recipe) -> np.ndarray:
    """Byte counts of two by two segments of ``recipe``, each the whole segment's size (what an uncompressed file
    holds)."""
    size = recipe.segment_length * recipe.segment_width * recipe.samples * np.dtype(recipe.dtype).itemsize
    return np.full((2, 2), size, np.uint64)


def test_a_single_ifd_array_transposes_its_three_axes() -> None:
    codecs = standard_codecs(dataclasses.replace(BASE, samples=3), ndim=3, lengths=None)
    assert codecs is not None
    assert [f.to_dict() for f in codecs.filters] == [{"name": "transpose", "configuration": {"order": (1, 2, 0)}}]


def test_uncompressed_segments_of_another_size_stay_tiff() -> None:
    """stackcube.tiff reads the first segment-size bytes of a longer uncompressed segment; ``bytes`` refuses it."""
    recipe = dataclasses.replace(BASE, compression=1)
    size = 256 * 512 * 2
    assert standard_codecs(recipe, lengths=np.array([[size, 0], [size, size]], np.uint32)) is not None  # 0: none
    longer = np.array([[size, 0], [size + 2, size]], np.uint32)
    assert standard_codecs(recipe, lengths=longer) is None
    assert tiff_only_reason(recipe, longer) == f"uncompressed segments of other sizes than {size} bytes"
    # compressed segments are any size
    assert standard_codecs(BASE, lengths=longer) is not None
    # byte counts not known: uncompressed stays stackcube.tiff, compressed is any size anyway
    assert standard_codecs(recipe, lengths=None) is None
    assert tiff_only_reason(recipe) == "uncompressed segments whose byte counts are not known"
    assert standard_codecs(BASE, lengths=None) is not None


# --- reading through zarr-python with the standard codecs alone ---------------------------------------------------
def read_standard(path: Path, ifd: IfdManifest, codecs: StandardCodecs) -> np.ndarray:
    """The IFD as a (band, y, x) array read by zarr-python from an in-memory store holding its segments' bytes as
    chunks (none where the file has none), with ``codecs`` alone."""
    store = MemoryStore()
    array = zarr.create_array(
        store,
        shape=ifd.shape,
        chunks=ifd.chunk_shape,
        dtype=ifd.dtype,
        fill_value=ifd.fill_value if ifd.fill_value is not None else 0,
        zarr_format=3,
        **codecs.create_keywords(),
    )
    buffer = default_buffer_prototype().buffer
    with path.open("rb") as f:
        for (b, y, x), offset in np.ndenumerate(ifd.offsets):
            length = int(ifd.lengths[b, y, x])
            if length:
                f.seek(int(offset))
                zarr.core.sync.sync(store.set(f"c/{b}/{y}/{x}", buffer.from_bytes(f.read(length))))
    return np.asarray(array[...])


FILES = [p for p in corpus_files("tiff") if p.suffix.lower() in {".tif", ".tiff", ".ovr", ".msk"}]


def _ids(path: Path) -> str:
    return str(path.relative_to(CORPUS / "tiff")) if FILES else str(path)


@pytest.mark.corpus
@pytest.mark.parametrize("path", FILES or [CORPUS / "tiff"], ids=_ids)
def test_every_qualifying_ifd_of_the_corpus_reads_through_zarr_as_tifffile_decodes_it(path: Path) -> None:
    require(path.is_file(), f"the corpus is missing at {CORPUS / 'tiff'}")
    try:
        manifest = read_tiff(path)
    except TiffError:
        return  # stackcube refuses the file (tests/tiff/test_conformance.py says why): no array is written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile's notes on odd tags
        with tifffile.TiffFile(path) as tif:
            for ifd in manifest.ifds:
                codecs = standard_codecs(ifd.recipe, ndim=3, lengths=ifd.lengths)
                if codecs is None or ifd.damage is not None:
                    continue
                page = tif.pages[ifd.path[0]]
                for i in ifd.path[1:]:
                    page = page.pages[i]
                expected = tifffile_reference(page)
                assert_identical(read_standard(path, ifd, codecs), expected, f"{path.name} IFD {ifd.path}")


# what the survey (benchmarks/codec_survey.py) says of IFD 0 of some corpus files
KNOWN = [
    ("rio-tiler/cog_rgba.tif", "transpose+bytes+zlib"),
    ("rio-tiler/cog_tags.tif", "bytes+zlib"),
    ("rio-tiler/cog_scale_epsg4326.tif", "transpose+bytes"),
    ("image-tiff/images/int16_zstd.tif", "bytes+zstd"),
    ("image-tiff/images/seq/seq-1c-16b-bigendian-68f373a0.tiff", "bytes"),
    ("image-tiff/images/gradient-1c-32b-float.tiff", "bytes"),
    ("rio-tiler/web.tif", "predictor 2"),
    ("rio-tiler/lowres.tif", "short last strip (130 rows in strips of 32)"),
    ("rio-tiler/cog_rgb.tif", "compression JPEG"),
    ("image-tiff/images/seq/seq-1c-12b-47c39b31.tiff", "12-bit samples"),
]


@pytest.mark.corpus
@pytest.mark.parametrize(("name", "verdict"), KNOWN, ids=[n for n, _ in KNOWN])
def test_known_corpus_files_get_their_verdict(name: str, verdict: str) -> None:
    path = CORPUS / "tiff" / name
    require(path.is_file(), f"the corpus is missing at {CORPUS / 'tiff'}")
    ifd = read_tiff(path).ifds[0]
    codecs = standard_codecs(ifd.recipe, ndim=3, lengths=ifd.lengths)
    assert (codecs.name if codecs is not None else tiff_only_reason(ifd.recipe, ifd.lengths)) == verdict


# --- GDAL's own files: every lossless encoding Zarr's codecs take, both byte orders, tiles and whole strips --------
HEIGHT, WIDTH = 200, 301  # 200 rows: strips of 50 are whole; tiles of 64 x 128 leave edge tiles
DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64", "int64", "uint64"]


def gdal_cases():
    layouts = list(itertools.product([True, False], ["PIXEL", "BAND"], ["LITTLE", "BIG"]))
    for i, (compress, dtype) in enumerate(itertools.product(["NONE", "DEFLATE", "ZSTD"], DTYPES)):
        tiled, interleave, endian = layouts[i % len(layouts)]
        yield pytest.param(
            compress,
            dtype,
            tiled,
            interleave,
            endian,
            id=f"{compress}-{dtype}-{'tiles' if tiled else 'strips'}-{interleave.lower()}-{endian.lower()}",
        )


def gdal_samples(dtype: str, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        data = rng.normal(0, 1000, (count, HEIGHT, WIDTH)).astype(dt)
        data[:, 5, 5] = np.nan
        return data
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), (count, HEIGHT, WIDTH), dtype=dt)


@pytest.mark.parametrize(("compress", "dtype", "tiled", "interleave", "endian"), list(gdal_cases()))
def test_gdal_files_read_through_zarr_as_rasterio_reads_them(tmp_path, compress, dtype, tiled, interleave, endian):
    data = gdal_samples(dtype, 3, seed=len(compress) * 100 + DTYPES.index(dtype))
    path = tmp_path / "x.tif"
    layout: dict[str, Any] = {"tiled": True, "blockxsize": 128, "blockysize": 64} if tiled else {"blockysize": 50}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=WIDTH,
        height=HEIGHT,
        count=3,
        dtype=dtype,
        crs="EPSG:32635",
        transform=from_origin(600000, 9500000, 10, 10),
        compress=compress,
        interleave=interleave,
        endianness=endian,
        **layout,
    ) as ds:
        ds.write(data)
    ifd = read_tiff(path).ifds[0]
    codecs = standard_codecs(ifd.recipe, ndim=3, lengths=ifd.lengths)
    assert codecs is not None, tiff_only_reason(ifd.recipe, ifd.lengths)
    assert codecs.filters == () if interleave == "BAND" else len(codecs.filters) == 1
    with rasterio.open(path) as ds:
        expected = ds.read()
    assert_identical(read_standard(path, ifd, codecs), expected, path.name)
    assert_identical(read_standard(path, ifd, codecs), data, path.name)


def test_a_sparse_file_reads_the_fill_value_where_it_has_no_tile(tmp_path) -> None:
    """GDAL leaves out tiles never written (SPARSE_OK): no chunk there, so Zarr gives the fill value, as rasterio."""
    path = tmp_path / "sparse.tif"
    write_sparse(path, "ZSTD")
    ifd = read_tiff(path).ifds[0]
    assert (ifd.lengths == 0).sum() == ifd.lengths.size - 1
    codecs = standard_codecs(ifd.recipe, ndim=3, lengths=ifd.lengths)
    assert codecs is not None
    with rasterio.open(path) as ds:
        expected = ds.read()
    assert_identical(read_standard(path, ifd, codecs), expected, path.name)


# --- numcodecs.zlib, decoded with libdeflate in a process with stackcube ------------------------------------------
def _zlib_spec() -> Any:
    from zarr.core.array_spec import ArraySpec

    array = zarr.create_array(MemoryStore(), shape=(1, 1, 64, 64), chunks=(1, 1, 64, 64), dtype="uint16", fill_value=0)
    return ArraySpec(
        shape=(1, 1, 64, 64),
        dtype=array.metadata.dtype,
        fill_value=array.metadata.fill_value,
        config=array.async_array.config,
        prototype=default_buffer_prototype(),
    )


def test_numcodecs_zlib_arrays_open_with_libdeflate_and_keep_numcodecs_metadata() -> None:
    from zarr.codecs.numcodecs import Zlib as ZarrZlib

    from stackcube.tiff._standard import Zlib

    assert zarr.registry.get_codec_class("numcodecs.zlib") is Zlib
    store = MemoryStore()
    data = np.arange(64 * 64, dtype="<u2").reshape(1, 1, 64, 64)
    written = zarr.create_array(
        store, shape=data.shape, chunks=data.shape, dtype="uint16", fill_value=0, compressors=[ZarrZlib(level=6)]
    )
    written[:] = data
    opened = zarr.open_array(store, mode="r")
    assert isinstance(opened.compressors[0], Zlib)
    assert opened.metadata.to_dict() == written.metadata.to_dict()  # numcodecs.zlib, level 6: as written
    np.testing.assert_array_equal(opened[:], data)


@pytest.mark.parametrize(
    "stream",
    ["exact", "shorter", "longer", "trailing bytes", "not zlib", "raw deflate", "empty"],
)
def test_libdeflate_s_zlib_answers_as_numcodecs_does(stream: str) -> None:
    """The chunk's size from libdeflate; every other stream numcodecs' answer, or its error."""
    import zlib

    from zarr.codecs.numcodecs import Zlib as ZarrZlib

    from stackcube.tiff._standard import Zlib

    chunk = np.random.default_rng(1).integers(0, 50, 64 * 64, dtype="<u2").tobytes()
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = {
        "exact": zlib.compress(chunk),
        "shorter": zlib.compress(chunk[:100]),
        "longer": zlib.compress(chunk + b"xx"),
        "trailing bytes": zlib.compress(chunk) + b"junk",
        "not zlib": b"nonsense",
        "raw deflate": raw.compress(chunk) + raw.flush(),
        "empty": b"",
    }[stream]
    spec = _zlib_spec()
    answers = []
    for codec in (Zlib(level=6), ZarrZlib(level=6)):
        try:
            answers.append(
                bytes(codec._decode_sync(default_buffer_prototype().buffer.from_bytes(data), spec).as_numpy_array())
            )
        except Exception as exc:  # numcodecs' error, whichever it is
            answers.append((type(exc), str(exc)))
    assert answers[0] == answers[1]
    if stream == "exact":
        assert answers[0] == chunk


def test_a_chunk_of_its_size_is_inflated_by_libdeflate_alone(monkeypatch) -> None:
    """The exact stream never reaches numcodecs: the speed comes from libdeflate, not a fallback."""
    import zlib

    from zarr.codecs.numcodecs import Zlib as ZarrZlib

    from stackcube.tiff import Zlib

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("numcodecs' zlib was asked")

    monkeypatch.setattr(ZarrZlib, "_decode_sync", refused)
    chunk = np.arange(64 * 64, dtype="<u2").tobytes()
    data = default_buffer_prototype().buffer.from_bytes(zlib.compress(chunk))
    assert bytes(Zlib(level=6)._decode_sync(data, _zlib_spec()).as_numpy_array()) == chunk
