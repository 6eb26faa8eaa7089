"""The stackcube.tiff Zarr codec: configuration round trip, entry-point registration, read-only."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from stackcube.tiff import CODEC_NAME, Recipe, TiffSegmentCodec, decode_segment, read_tiff
from tests.conftest import CORPUS


def recipe(**kw) -> Recipe:
    base = {
        "compression": 7,
        "predictor": 1,
        "byteorder": ">",
        "dtype": "uint8",
        "bitspersample": 8,
        "samples": 3,
        "segment_length": 16,
        "segment_width": 16,
        "image_length": 20,
        "image_width": 20,
        "tiled": True,
        "photometric": 6,
        "jpegtables": b"\xff\xd8\x00\xff\xd9",
        "subsampling": (2, 2),
    }
    return Recipe(**{**base, **kw})


def test_configuration_round_trips_through_json() -> None:
    codec = TiffSegmentCodec(recipe=recipe())
    as_json = json.loads(json.dumps(codec.to_dict()))
    assert as_json["name"] == CODEC_NAME
    again = TiffSegmentCodec.from_dict(as_json)
    assert again.recipe == codec.recipe
    assert again.recipe.jpegtables == b"\xff\xd8\x00\xff\xd9"


def test_a_fresh_process_finds_the_codec_through_the_entry_point() -> None:
    code = (
        "import sys, zarr.registry as r; cls = r.get_codec_class('stackcube.tiff'); "
        "assert 'stackcube' not in sys.modules or cls.__module__ == 'stackcube.tiff._codec'; print(cls.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "TiffSegmentCodec"


def test_encoding_is_refused() -> None:
    with pytest.raises(NotImplementedError, match="read-only"):
        TiffSegmentCodec(recipe=recipe())._encode_sync(None, None)  # type: ignore[arg-type]


def test_short_last_strip_is_padded_with_the_fill_value() -> None:
    r = recipe(
        compression=1,
        photometric=1,
        samples=1,
        tiled=False,
        segment_length=8,
        segment_width=4,
        image_length=10,
        image_width=4,
        jpegtables=None,
        subsampling=(1, 1),
        byteorder="<",
    )
    block = decode_segment(bytes(range(8)), r, fill_value=255)  # the last strip holds 2 of 8 rows
    assert block.shape == (1, 8, 4)
    assert block[0, :2].ravel().tolist() == list(range(8))
    assert (block[0, 2:] == 255).all()


@pytest.mark.corpus
def test_palette_keeps_indices_and_colour_map(corpus) -> None:
    manifest = read_tiff(CORPUS / "tiff" / "rio-tiler" / "cog_cmap.tif")
    ifd = manifest.ifds[0]
    assert ifd.attrs["photometric"] == "palette"
    colormap = np.asarray(ifd.attrs["colormap"])
    assert colormap.shape == (3, 256)
