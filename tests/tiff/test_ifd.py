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
    """Whether the fast path takes this file."""
    try:
        read_ifds(_sparse(data))
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
