"""Every IFD of every TIFF in the corpus, read virtually through Zarr, equals tifffile's decode, bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from stackcube.errors import UnsupportedTiffError
from stackcube.tiff import open_manifest, read_tiff
from tests.conftest import CORPUS, corpus_files, require

FILES = corpus_files("tiff")


def _ids(path: Path) -> str:
    return str(path.relative_to(CORPUS / "tiff")) if FILES else str(path)


def tifffile_reference(page: tifffile.TiffPage) -> np.ndarray:
    """tifffile's decode of one page, as (band, y, x)."""
    arr = page.asarray().reshape(page.shaped)  # (separate samples, depth, length, width, contig samples)
    if page.shaped[0] > 1:
        return arr[:, 0, :, :, 0]
    return arr[0, 0].transpose(2, 0, 1)


def _pages(tif: tifffile.TiffFile):
    def walk(pages, parent):
        for i in range(len(pages)):
            page = pages[i]
            yield (*parent, i), page
            if page.pages is not None:
                yield from walk(page.pages, (*parent, i))

    yield from walk(tif.pages, ())


def assert_identical(actual: np.ndarray, expected: np.ndarray, where: str) -> None:
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
    same = np.ascontiguousarray(actual).view(np.uint8) == np.ascontiguousarray(expected).view(np.uint8)
    if not same.all():
        bad = np.argwhere(actual != expected)
        pytest.fail(
            f"{where}: {len(bad)} samples differ, first at {tuple(bad[0])}: "
            f"{actual[tuple(bad[0])]} != {expected[tuple(bad[0])]}"
        )


@pytest.mark.corpus
@pytest.mark.parametrize("path", FILES or [CORPUS / "tiff"], ids=_ids)
def test_every_ifd_matches_tifffile(path: Path) -> None:
    require(path.is_file(), f"the corpus is missing at {CORPUS / 'tiff'}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # geo warnings are checked elsewhere
        with tifffile.TiffFile(path) as tif:
            references = []
            for ifd_path, page in _pages(tif):
                try:
                    references.append((ifd_path, tifffile_reference(page), None))
                except (ValueError, NotImplementedError, tifffile.TiffFileError) as exc:
                    references.append((ifd_path, None, exc))
        try:
            manifest = read_tiff(path)
        except UnsupportedTiffError as exc:
            # only acceptable where tifffile cannot decode either
            assert all(ref is None for _, ref, _ in references), f"stackcube refused what tifffile reads: {exc}"
            assert "not supported" in str(exc)
            assert str(path.name) in str(exc)
            return
        assert [e.path for e in manifest.ifds] == [p for p, _, _ in references]
        for ifd_path, expected, error in references:
            where = f"{path.name} IFD {ifd_path}"
            if expected is None:
                pytest.fail(
                    f"{where}: tifffile cannot decode ({error}); stackcube must decode and be checked "
                    "against rasterio, or refuse"
                )
            actual = open_manifest(manifest, ifd_path).values
            assert_identical(actual, expected, where)
