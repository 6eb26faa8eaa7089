"""The direct IFD reader (header parsing's fast path) gives the manifest tifffile's path gives, or leaves the file to
tifffile: on every file of the corpus, on COGs as GDAL writes them, and on mutated headers."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackcube.errors import StackcubeError
from stackcube.tiff._ifd import Unusual, read_ifds
from stackcube.tiff._parse import SparseFile, _parse_with_tifffile, parse_manifest
from tests.conftest import CORPUS, corpus_files, require

FILES = [p for p in corpus_files("tiff") if p.suffix.lower() in {".tif", ".tiff", ".gtiff"}]


def _sparse(data: bytes) -> SparseFile:
    fh = SparseFile(len(data), name="x.tif")
    fh.add(0, data)
    return fh


def _ifds(manifest_ifds) -> list[dict]:
    """IFDs as comparable plain data (the arrays as lists)."""
    out = []
    for ifd in manifest_ifds:
        out.append(
            {
                "path": ifd.path,
                "role": ifd.role,
                "level": ifd.level,
                "shape": ifd.shape,
                "dtype": str(ifd.dtype),
                "chunk_shape": ifd.chunk_shape,
                "offsets": ifd.offsets.tolist(),
                "lengths": ifd.lengths.tolist(),
                "recipe": ifd.recipe.to_config(),
                "fill_value": repr(ifd.fill_value),
                "geo": ifd.geo,
                "attrs": ifd.attrs,
                "damage": ifd.damage,
            }
        )
    return out


def _direct(data: bytes) -> bool:
    """Whether the fast path takes this file (its pages' structure is derived when first used: derive it here)."""
    try:
        pages, _, _ = read_ifds(_sparse(data))
        for page in pages:
            page.derive()
    except Unusual:
        return False
    return True


@pytest.mark.corpus
def test_every_corpus_file_parses_as_with_tifffile() -> None:
    require(bool(FILES), f"the corpus is missing at {CORPUS / 'tiff'}")
    direct = 0
    for path in FILES:
        data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                expected = _ifds(_parse_with_tifffile(str(path), _sparse(data))[0])
            except StackcubeError as exc:
                with pytest.raises(type(exc)):
                    parse_manifest(str(path), _sparse(data))
                continue
            got = parse_manifest(str(path), _sparse(data))
        assert _ifds(got.ifds) == expected, path
        direct += _direct(data)
    # the GeoTIFFs and COGs of the corpus take the fast path; the exotic ones (OME, ImageJ, LSM, JPEG, palettes,
    # masks, SubIFDs, EER...) are read by tifffile
    assert direct >= 40, direct


def test_a_gdal_cog_takes_the_fast_path_and_gives_tifffiles_manifest(tmp_path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "cog.tif"
    data = (np.arange(700 * 600, dtype=np.uint32).reshape(700, 600) % 4093).astype(np.uint16)
    profile = {"driver": "COG", "width": 600, "height": 700, "count": 1, "dtype": "uint16", "crs": "EPSG:32631"}
    profile |= {"transform": from_origin(500000, 4500000, 10, 10), "blocksize": 256, "compress": "DEFLATE"}
    profile |= {"predictor": 2, "nodata": 0, "overview_resampling": "nearest"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[None])
        dst.update_tags(1, scale_factor="0.0001")
    raw = path.read_bytes()
    assert _direct(raw)
    manifest = parse_manifest(str(path), _sparse(raw))
    assert len(manifest.ifds) >= 2
    assert _ifds(manifest.ifds) == _ifds(_parse_with_tifffile(str(path), _sparse(raw))[0])


def _cog(path: Path, **change) -> bytes:
    """A GDAL COG with overviews, ``change`` applied to its profile; or, with ``scales`` (GDAL metadata, which the
    COG driver does not keep), a tiled GeoTIFF with overviews."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    scales = change.pop("scales", None)
    profile = {"driver": "COG", "width": 600, "height": 700, "count": 1, "dtype": "uint16", "crs": "EPSG:32631"}
    profile |= {"transform": from_origin(500000, 4500000, 10, 10), "blocksize": 256, "compress": "DEFLATE"}
    profile |= {"nodata": 0, "overview_resampling": "nearest"} | change
    if scales:
        del profile["blocksize"], profile["overview_resampling"]
        profile |= {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write((np.arange(700 * 600, dtype=np.uint32).reshape(1, 700, 600) % 4093).astype(profile["dtype"]))
        if scales:
            dst.scales = scales
            dst.build_overviews([2, 4], Resampling.nearest)
    return path.read_bytes()


def test_files_that_share_a_structure_or_crs_each_get_their_own_manifest(tmp_path) -> None:
    """The fast path keeps what it derived from one file's structure and GeoKeys for the next file that has the same:
    files differing in tie point, nodata, GDAL metadata, CRS, size, type or compression, parsed one after the other
    (and again), give tifffile's manifest each."""
    from rasterio.transform import from_origin

    changes = [
        {},
        {"transform": from_origin(600000, 4400000, 10, 10)},
        {"transform": from_origin(500000, 4500000, 20, 20)},
        {"nodata": 7},
        {"nodata": None},
        {"scales": (0.0001,)},
        {"scales": (0.0002,)},
        {"crs": "EPSG:32632"},
        {"width": 500},
        {"dtype": "int16", "nodata": -1},
        {"compress": "LZW", "predictor": 2},
    ]
    headers = [_cog(tmp_path / f"{i}.tif", **change) for i, change in enumerate(changes)]
    expected = [_ifds(_parse_with_tifffile("x.tif", _sparse(raw))[0]) for raw in headers]
    assert all(_direct(raw) for raw in headers)
    assert len({repr(e) for e in expected}) == len(changes)  # every change shows in the manifest
    for _ in range(2):
        for raw, want in zip(headers, expected, strict=True):
            assert _ifds(parse_manifest("x.tif", _sparse(raw)).ifds) == want


def test_a_pages_structure_is_derived_from_the_tags_its_key_holds(tmp_path, monkeypatch) -> None:
    """The structure kept for equal keys is only right if the key holds every tag it is derived from: record the
    tags read while deriving it, on every corpus file the fast path takes and on a GDAL COG."""
    from stackcube.tiff import _ifd
    from stackcube.tiff._parse import _layout

    read: set[int] = set()
    for name in ("valueof", "get", "count", "__getitem__", "__contains__", "array"):
        original = getattr(_ifd._Tags, name)

        def record(self, code, *args, _original=original):
            read.add(code)
            return _original(self, code, *args)

        monkeypatch.setattr(_ifd._Tags, name, record)
    files = [p.read_bytes() for p in FILES] + [_cog(tmp_path / "cog.tif", scales=(0.5,))]
    derived = 0
    for data in files:
        try:
            pages, _, _ = read_ifds(_sparse(data))
        except Unusual:
            continue
        for page in pages:
            read.clear()
            try:
                _layout(page, "IFD 0")
            except (Unusual, StackcubeError):
                continue
            derived += 1
            assert read <= _ifd.STRUCTURE, sorted(read - _ifd.STRUCTURE)
            assert {code for code, *_ in page.key[1:]} == _ifd.STRUCTURE & set(page.tags._raw)
    assert derived >= 40


@functools.cache
def cog_header() -> bytes:
    """A small GDAL COG (two bands, LZW, overviews)."""
    import tempfile

    import rasterio
    from rasterio.transform import from_origin

    path = Path(tempfile.mkdtemp()) / "cog.tif"
    profile = {"driver": "COG", "width": 300, "height": 200, "count": 2, "dtype": "int16", "crs": "EPSG:4326"}
    profile |= {"transform": from_origin(10, 50, 0.001, 0.001), "blocksize": 64, "compress": "LZW", "nodata": -1}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.arange(2 * 200 * 300, dtype=np.int16).reshape(2, 200, 300))
    return path.read_bytes()


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_headers_parse_as_with_tifffile_or_are_left_to_it(edits) -> None:
    """Bytes of the header changed at random: whenever the fast path takes the file, the manifest (or the error)
    is the one tifffile's path gives."""
    blob = bytearray(cog_header())
    for at, value in edits:
        blob[at] = value
    raw = bytes(blob)
    if not _direct(raw):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = _ifds(_parse_with_tifffile("x.tif", _sparse(raw))[0])
        except StackcubeError as exc:
            with pytest.raises(StackcubeError) as raised:
                parse_manifest("x.tif", _sparse(raw))
            assert type(raised.value) is type(exc)
            return
        try:
            got = _ifds(parse_manifest("x.tif", _sparse(raw)).ifds)
        except StackcubeError:  # all IFDs damaged: the manifest step refuses what both paths parsed
            return
    assert got == expected


def test_bytes_not_fetched_yet_are_asked_for() -> None:
    """The fast path reads through the same sparse file: a value beyond the fetched bytes asks for them."""
    from stackcube.tiff._parse import NeedBytes

    fh = SparseFile(len(cog_header()) + 10_000, name="x.tif")
    fh.add(0, cog_header()[:200])
    with pytest.raises(NeedBytes):
        parse_manifest("x.tif", fh)


def test_a_predictor_on_uncompressed_data_is_ignored_as_libtiff_and_tifffile_ignore_it(tmp_path) -> None:
    """An uncompressed file whose header also says Predictor=2 (tifffile refuses to write one: the tag is patched
    in): libtiff and tifffile read the stored bytes as they are, and so does the fast path and the codec. Before,
    the fast path kept the predictor and the codec undid a differencing that was never done: other pixels."""
    import io

    import rasterio
    import rasterio.errors
    import tifffile

    from stackcube.tiff._decode import decode_segment
    from stackcube.tiff._model import Recipe

    pixels = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(buffer, pixels, tile=(32, 32), extratags=[(318, "H", 1, 2, True)])  # 318: patched to 317
    data = bytearray(buffer.getvalue())
    entry = bytes([0x3E, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00])  # tag 318, SHORT, count 1 (little-endian)
    assert data.count(entry) == 1
    data[data.find(entry)] = 0x3D
    path = tmp_path / "predictor-uncompressed.tif"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(src.read(1), pixels)  # GDAL: the bytes as stored
    assert _direct(bytes(data))
    (ifd,) = parse_manifest("x.tif", _sparse(bytes(data))).ifds
    assert ifd.recipe.predictor == 1
    assert _ifds([ifd]) == _ifds(_parse_with_tifffile("x.tif", _sparse(bytes(data)))[0])
    segment = bytes(data[int(ifd.offsets[0, 0, 0]) : int(ifd.offsets[0, 0, 0]) + int(ifd.lengths[0, 0, 0])])
    np.testing.assert_array_equal(decode_segment(segment, ifd.recipe)[0], pixels[:32, :32])
    # a recipe stored with the predictor (a cube built before) decodes the same
    stored = Recipe.from_config({**ifd.recipe.to_config(), "predictor": 2})
    np.testing.assert_array_equal(decode_segment(segment, stored)[0], pixels[:32, :32])
