"""Manifests survive a JSON round trip (a cube stores them so a refresh reads no unchanged header)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stackcube.errors import StackcubeError
from stackcube.tiff import TiffManifest, read_tiff
from tests.conftest import corpus_files, require

pytestmark = pytest.mark.corpus


def test_every_corpus_manifest_round_trips_through_json() -> None:
    files = corpus_files("tiff")
    require(bool(files), "the corpus TIFFs are missing")
    checked = 0
    for path in files:
        try:
            manifest = read_tiff(path)
        except StackcubeError:
            continue  # refused files are covered by the conformance tests
        text = json.dumps(manifest.to_dict(), allow_nan=False)
        back = TiffManifest.from_dict(json.loads(text))
        assert back.to_dict() == manifest.to_dict(), path
        assert (back.href, back.etag, back.last_modified, back.size) == (
            manifest.href,
            manifest.etag,
            manifest.last_modified,
            manifest.size,
        )
        for ours, theirs in zip(manifest.ifds, back.ifds, strict=True):
            np.testing.assert_array_equal(ours.offsets, theirs.offsets)
            np.testing.assert_array_equal(ours.lengths, theirs.lengths)
            assert ours.offsets.dtype == theirs.offsets.dtype == np.uint64
            assert (ours.recipe, ours.dtype, ours.shape, ours.chunk_shape) == (
                theirs.recipe,
                theirs.dtype,
                theirs.shape,
                theirs.chunk_shape,
            )
            assert ours.geo is None or (ours.geo.crs, ours.geo.transform) == (theirs.geo.crs, theirs.geo.transform)
            assert repr(ours.fill_value) == repr(theirs.fill_value)
        checked += 1
    assert checked > 150
