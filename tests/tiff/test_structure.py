"""Malformed but real IFD structures, made by patching corpus files byte for byte as these defects appear in the
wild, read as tifffile reads them: the pages tifffile reads, bit for bit; an error naming the IFD where tifffile
raises, or pads a segment with zeros (it logs an error and carries on: those are not the file's pixels)."""

from __future__ import annotations

import dataclasses
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from stackcube.errors import CorruptTiffError, StackcubeError
from stackcube.tiff import open_manifest, read_tiff
from stackcube.tiff._parse import _parse_with_tifffile, _TiffFileLog, parse_manifest
from tests.conftest import CORPUS, require
from tests.tiff.test_generated import assert_bits_equal
from tests.tiff.test_ifd import FILES, _ifds, _sparse

pytestmark = pytest.mark.corpus

SEQ = "image-tiff/images/seq"
MULTIPAGE = f"{SEQ}/seq-1c-8b-multipage-adeefdcc.tiff"  # 3 pages of uncompressed strips
COLORADO = "rio-tiler/my-bucket/hro_sources/colorado/201404_13SED190110_201404_0x1500m_CL_1"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One IFD entry of the intact file."""

    at: int
    """Where the entry lies."""
    kind: int
    """TIFF data type."""
    count: int
    """Number of values."""
    value_at: int
    """Where its values lie (inside the entry when they fit)."""


@dataclasses.dataclass(frozen=True)
class Ifd:
    """One IFD of the intact file."""

    offset: int
    """Where the IFD starts."""
    next_at: int
    """Where its next-IFD offset lies."""
    entries: dict[int, Entry]
    """Its entries by tag code."""


@dataclasses.dataclass(frozen=True)
class Tiff:
    """A corpus file's bytes and IFD structure, to patch."""

    data: bytes
    ifds: list[Ifd]
    byteorder: str
    bigtiff: bool

    @property
    def pointer(self) -> str:
        return self.byteorder + ("Q" if self.bigtiff else "I")


def corpus_tiff(name: str) -> Tiff:
    path = CORPUS / "tiff" / name
    require(path.is_file(), f"the corpus is missing {path}")
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        fmt = tif.tiff
        ifds = [
            Ifd(
                offset=page.offset,
                next_at=page.offset
                + fmt.tagnosize
                + struct.unpack_from(fmt.tagnoformat, data, page.offset)[0] * fmt.tagsize,
                entries={t.code: Entry(t.offset, int(t.dtype), t.count, t.valueoffset) for t in page.tags.values()},
            )
            for page in tif.pages
        ]
        return Tiff(data, ifds, tif.byteorder, tif.is_bigtiff)


def set_tag(tiff: Tiff, data: bytearray, ifd: int, code: int, kind: int, values: list[int]) -> None:
    """Rewrite one entry's type, count and values; values that do not fit in the entry go to the end of the file."""
    letter = {3: "H", 4: "I", 16: "Q"}[kind]
    raw = struct.pack(f"{tiff.byteorder}{len(values)}{letter}", *values)
    slot = 8 if tiff.bigtiff else 4
    if len(raw) > slot:
        data.extend(bytes(len(data) % 2))  # values start on a word boundary
        where = len(data)
        data.extend(raw)
        raw = struct.pack(tiff.pointer, where)
    count = "Q" if tiff.bigtiff else "I"
    entry = tiff.ifds[ifd].entries[code]
    data[entry.at + 2 : entry.at + 4 + slot * 2] = struct.pack(f"{tiff.byteorder}H{count}", kind, len(values)) + (
        raw.ljust(slot, b"\0")
    )


def _open(tiff: Tiff) -> tifffile.TiffFile:
    return tifffile.TiffFile(io.BytesIO(tiff.data))


def segments(tiff: Tiff, ifd: int) -> list[tuple[int, int]]:
    """(offset, byte count) of every segment of an IFD of the intact file."""
    with _open(tiff) as tif:
        page = tif.pages[ifd]
        return list(zip(page.dataoffsets, page.databytecounts, strict=True))


def tiff_height(tiff: Tiff, ifd: int) -> int:
    with _open(tiff) as tif:
        return int(tif.pages[ifd].imagelength)


def as_bands(values: np.ndarray, shaped: tuple[int, ...]) -> np.ndarray:
    """tifffile's array of one page as (band, y, x), as stackcube presents it."""
    planes = values.reshape(shaped)[:, 0]  # (separate samples, y, x, contiguous samples)
    return np.moveaxis(planes, 3, 1).reshape(-1, *planes.shape[1:3])


def read_tifffile(path: Path) -> list[np.ndarray | str]:
    """Every top-level page as tifffile reads it; where it raises, or pads a segment (and logs an error), what it
    said instead."""
    log = tifffile.logger()
    errors = _TiffFileLog()
    log.addHandler(errors)
    try:
        out: list[np.ndarray | str] = []
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            for i in range(len(pages)):  # len() looks for a loop in the IFD chain; iterating would go round it
                page = pages[i]
                errors.messages.clear()
                try:
                    values = page.asarray()
                except Exception as exc:  # whatever tifffile raises is a refusal
                    out.append(f"{type(exc).__name__}: {exc}")
                    continue
                out.append(errors.messages[0] if errors.messages else as_bands(values, page.shaped))
        return out
    finally:
        log.removeHandler(errors)


def read_stackcube(path: Path) -> list[np.ndarray | str]:
    """Every IFD as stackcube reads it; where it refuses one, its message."""
    manifest = read_tiff(path)
    out: list[np.ndarray | str] = []
    for ifd in manifest.ifds:
        try:
            out.append(open_manifest(manifest, ifd.path).values)
        except StackcubeError as exc:
            out.append(str(exc))
    return out


def assert_read_as(actual: list[np.ndarray | str], expected: list[np.ndarray | str]) -> None:
    assert len(actual) == len(expected), "number of IFDs read"
    for i, (ours, theirs) in enumerate(zip(actual, expected, strict=True)):
        if isinstance(theirs, str):
            assert isinstance(ours, str), f"IFD {i}: tifffile says {theirs!r}, stackcube read pixels"
        else:
            assert not isinstance(ours, str), f"IFD {i}: {ours}"
            assert_bits_equal(ours, theirs)


def assert_paths_agree(data: bytes | bytearray) -> None:
    """The fast path and tifffile's path give the same manifest, or refuse the file alike."""
    try:
        expected = _ifds(_parse_with_tifffile("x.tif", _sparse(bytes(data)))[0])
    except StackcubeError as exc:
        with pytest.raises(type(exc)):
            parse_manifest("x.tif", _sparse(bytes(data)))
        return
    try:
        assert _ifds(parse_manifest("x.tif", _sparse(bytes(data))).ifds) == expected
    except StackcubeError:  # every IFD damaged: the manifest step refuses what both paths parsed
        assert all(ifd["damage"] for ifd in expected)


def write(tmp_path: Path, data: bytes | bytearray, name: str = "patched.tif") -> Path:
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


# --- 1. an IFD chain that loops back ----------------------------------------------------------------------------
LOOPS = [
    (MULTIPAGE, 0, 0),
    (MULTIPAGE, 1, 0),
    (MULTIPAGE, 2, 0),
    (MULTIPAGE, 2, 1),
    (MULTIPAGE, 2, 2),
    ("rio-tiler/blue_nostats.tif", 3, 0),
    ("rio-tiler/blue_nostats.tif", 3, 3),
    ("rio-tiler/blue_nostats.tif", 1, 0),
    ("rio-tiler/cog_uint8_rgb_mask.tif", 5, 0),  # images and masks: tifffile's path
    ("rio-tiler/cog_uint8_rgb_mask.tif", 5, 5),
    ("rio-tiler/cog_uint8_rgb_mask.tif", 2, 1),
    ("rio-tiler/cog_rgb.tif", 1, 0),  # JPEG: tifffile's path
    ("rio-tiler/cog_nonearth.tif", 1, 0),  # BigTIFF
    ("image-tiff/images/rgb-3c-8b.tiff", 0, 0),  # big-endian
]


@pytest.mark.parametrize(("name", "last", "target"), LOOPS, ids=[f"{n.rsplit('/')[-1]}-{a}to{b}" for n, a, b in LOOPS])
def test_an_ifd_chain_that_loops_back_ends_at_the_repeat(tmp_path, name, last, target) -> None:
    """IFD ``last``'s next-IFD offset points back at IFD ``target``: the IFDs up to ``last`` are read, once each.

    tifffile stops at the repeat too, but looks for one only at its 100th IFD offset and keeps the IFDs up to the
    first one equal to that offset: for some loops fewer than every IFD before the repeat. Those it reads are the
    same pixels; the rest are compared with tifffile's reading of the intact file (the same IFD bytes)."""
    tiff = corpus_tiff(name)
    data = bytearray(tiff.data)
    struct.pack_into(tiff.pointer, data, tiff.ifds[last].next_at, tiff.ifds[target].offset)
    path = write(tmp_path, data)
    assert_paths_agree(data)
    looped = read_tifffile(path)
    intact = read_tifffile(write(tmp_path, tiff.data, "intact.tif"))
    assert 1 <= len(looped) <= last + 1
    assert_read_as(read_stackcube(path), looped + intact[len(looped) : last + 1])


@pytest.mark.parametrize("name", [str(p.relative_to(CORPUS / "tiff")) for p in FILES] or ["(the corpus is missing)"])
def test_both_paths_end_a_chain_at_the_same_ifd(name) -> None:
    """The last IFD's next-IFD offset pointed at the first IFD, at itself, and beyond the end of the file: the fast
    path and tifffile's path read the IFDs of the intact file, the same manifest."""
    tiff = corpus_tiff(name)
    try:
        intact = _ifds(parse_manifest(name, _sparse(tiff.data)).ifds)
    except StackcubeError:
        return  # a file stackcube refuses anyway
    last = tiff.ifds[-1]
    for target in (tiff.ifds[0].offset, last.offset, len(tiff.data) + 8):
        data = bytearray(tiff.data)
        struct.pack_into(tiff.pointer, data, last.next_at, target)
        expected = _ifds(_parse_with_tifffile(name, _sparse(bytes(data)))[0])
        assert _ifds(parse_manifest(name, _sparse(bytes(data))).ifds) == expected == intact


# --- 2. RowsPerStrip larger than the image ----------------------------------------------------------------------
ONE_STRIP = [
    f"{SEQ}/seq-1c-16b-lzw-68f373a0.tiff",
    f"{SEQ}/seq-1c-8b-bigtiff-20f3db0c.tiff",
    f"{SEQ}/seq-1c-16b-bigendian-68f373a0.tiff",
    f"{SEQ}/seq-3c-10b-planar-c82e8ab6.tiff",  # packed samples, a strip per plane: tifffile's path
    MULTIPAGE,
    "image-tiff/geotiff/geo-5b.tif",
    "image-tiff/images/predictor-3-gray-f32.tif",
    "image-tiff/images/int16_zstd.tif",
]


@pytest.mark.parametrize("rows", [2**32 - 1, 2**16 - 1, "height+1"])
@pytest.mark.parametrize("name", ONE_STRIP, ids=[n.rsplit("/")[-1] for n in ONE_STRIP])
def test_rows_per_strip_beyond_the_height_of_a_one_strip_image(tmp_path, name, rows) -> None:
    """RowsPerStrip 2**32-1 (LONG, as some encoders write "all rows"), 65535 (SHORT) or one more than the height,
    in every IFD of files whose images are one strip (per plane)."""
    tiff = corpus_tiff(name)
    data = bytearray(tiff.data)
    for i in range(len(tiff.ifds)):
        value = tiff_height(tiff, i) + 1 if rows == "height+1" else rows
        set_tag(tiff, data, i, 278, 3 if value < 2**16 else 4, [value])
    path = write(tmp_path, data)
    assert_paths_agree(data)
    expected = read_tifffile(path)
    assert all(isinstance(page, np.ndarray) for page in expected)
    assert_read_as(read_stackcube(path), expected)


SEVERAL_STRIPS = [
    ("rio-tiler/lowres.tif", True),  # uncompressed, the strips one after the other: tifffile reads them as one
    ("image-tiff/images/minisblack-1c-8b.tiff", True),  # the same, big-endian
    (f"{COLORADO}.tif", True),  # the same, RGB
    ("rio-tiler/nocog.tif", False),  # Deflate: tifffile decodes the first strip and pads the rest with zeros
    ("image-tiff/images/quad-lzw-compat.tiff", False),  # LZW, the same
    ("image-tiff/images/tiled-jpeg-ycbcr.tif", False),  # JPEG strips: tifffile raises
    ("image-tiff/images/planar-rgb-u8.tif", False),  # planar LZW: pads
]


@pytest.mark.parametrize(("name", "readable"), SEVERAL_STRIPS, ids=[n.rsplit("/")[-1] for n, _ in SEVERAL_STRIPS])
def test_rows_per_strip_beyond_the_height_of_an_image_stored_in_several_strips(tmp_path, name, readable) -> None:
    """RowsPerStrip 2**32-1 where the image is stored in several strips: which rows each strip holds is unknown.
    Uncompressed strips stored one after the other are the image's rows in order, and tifffile reads them as one
    block; any other such IFD is refused by name, never read as one strip padded out."""
    tiff = corpus_tiff(name)
    data = bytearray(tiff.data)
    set_tag(tiff, data, 0, 278, 4, [2**32 - 1])
    path = write(tmp_path, data)
    assert_paths_agree(data)
    expected = read_tifffile(path)
    assert isinstance(expected[0], np.ndarray) is readable
    if not readable:  # its one IFD refused: the file is
        with pytest.raises(CorruptTiffError, match=r"patched\.tif: IFD 0: RowsPerStrip=4294967295 puts all \d+ rows"):
            read_tiff(path)
        return
    actual = read_stackcube(path)
    assert_read_as(actual, expected)
    assert_read_as(actual, read_tifffile(write(tmp_path, tiff.data, "intact.tif")))  # the file's pixels


# --- 3. a BitsPerSample count other than SamplesPerPixel ----------------------------------------------------------
BITS = [
    f"{SEQ}/seq-3c-8b-lzw-8743c999.tiff",
    f"{SEQ}/seq-3c-16b-bigtiff-1b40ca6e.tiff",
    f"{SEQ}/seq-3c-10b-planar-c82e8ab6.tiff",
    f"{SEQ}/seq-3c-5b-contig-09f197f4.tiff",
    "image-tiff/images/rgb-3c-8b.tiff",
    "image-tiff/images/int8_rgb.tif",
    "image-tiff/geotiff/geo-5b.tif",
    "rio-tiler/rgb.tif",
    "rio-tiler/mosaic_cog1.tif",
    "rio-tiler/cog_uint8_rgba.tif",
    "rio-tiler/cog_rgb.tif",
]


@pytest.mark.parametrize("count", ["one", "two", "one more", "one more, differing"])
@pytest.mark.parametrize("name", BITS, ids=[n.rsplit("/")[-1] for n in BITS])
def test_bits_per_sample_with_a_count_other_than_the_samples(tmp_path, name, count) -> None:
    """BitsPerSample given once (or twice) for an image of 3 to 5 samples, or once more than there are samples (the
    extra value equal or not), in every IFD: tifffile takes the first value for every sample."""
    tiff = corpus_tiff(name)
    data = bytearray(tiff.data)
    with _open(tiff) as tif:
        layout = [(page.samplesperpixel, page.tags[258].value) for page in tif.pages]
    for i, (samples, bits) in enumerate(layout):
        first = bits[0]
        values = {
            "one": [first],
            "two": [first, first],
            "one more": [first] * (samples + 1),
            "one more, differing": [first] * samples + [first * 2],
        }[count]
        set_tag(tiff, data, i, 258, 3, values)
    path = write(tmp_path, data)
    assert_paths_agree(data)
    expected = read_tifffile(path)
    assert all(isinstance(page, np.ndarray) for page in expected)
    assert_read_as(read_stackcube(path), expected)


WIDER = ["rio-tiler/rgb.tif", "rio-tiler/cog_int16.tif", "rio-tiler/cog_uint8_rgb_mask.tif"]


@pytest.mark.parametrize("name", WIDER, ids=[n.rsplit("/")[-1] for n in WIDER])
def test_a_bits_per_sample_value_wider_than_the_data_is_refused(tmp_path, name) -> None:
    """BitsPerSample doubled in the first IFD: every tile decodes to half the bytes a tile needs. tifffile pads
    each with zeros (and logs an error); a short tile is never read as an edge tile, so stackcube refuses it."""
    tiff = corpus_tiff(name)
    data = bytearray(tiff.data)
    with _open(tiff) as tif:
        page = tif.pages.first
        samples, bits = page.samplesperpixel, page.bitspersample
    set_tag(tiff, data, 0, 258, 3, [bits * 2] * samples)
    path = write(tmp_path, data)
    theirs = read_tifffile(path)[0]
    assert isinstance(theirs, str)  # tifffile says the tiles are short
    ours = read_stackcube(path)[0]
    assert isinstance(ours, str)
    assert "corrupted segment" in ours


# --- 4. a segment beyond the end of the file in one IFD ----------------------------------------------------------
TRUNCATED = [
    (MULTIPAGE, 0),
    (MULTIPAGE, 1),
    (MULTIPAGE, 2),
    ("rio-tiler/blue_nostats.tif", 0),
    ("rio-tiler/blue_nostats.tif", 2),
    ("rio-tiler/cog_uint8_rgb_mask.tif", 1),  # a mask: tifffile's path
    ("rio-tiler/cog_uint8_rgb_mask.tif", 3),
    ("rio-tiler/cog_rgb.tif", 0),  # JPEG: tifffile's path
    ("rio-tiler/cog_nonearth.tif", 1),  # BigTIFF
    (f"{COLORADO}_mask.tif", 0),  # strips with a mask
    (f"{SEQ}/seq-3c-10b-planar-c82e8ab6.tiff", 0),  # a single page: nothing left to read
]


@pytest.mark.parametrize(("name", "damaged"), TRUNCATED, ids=[f"{n.rsplit('/')[-1]}-{i}" for n, i in TRUNCATED])
def test_a_byte_count_beyond_the_end_of_the_file_refuses_that_ifd_only(tmp_path, name, damaged) -> None:
    """The StripByteCounts (TileByteCounts) of IFD ``damaged``'s last segment points past the end of the file: that
    IFD is refused by name; the others read as tifffile reads them."""
    tiff = corpus_tiff(name)
    data = bytearray(tiff.data)
    found = segments(tiff, damaged)
    last = max(range(len(found)), key=lambda i: found[i][0])
    code = 279 if 279 in tiff.ifds[damaged].entries else 325
    entry = tiff.ifds[damaged].entries[code]
    kind = {3: "H", 4: "I", 16: "Q"}[entry.kind]
    beyond = len(data) - found[last][0] + 1000
    if entry.count == 1:
        set_tag(tiff, data, damaged, code, 4 if beyond < 2**32 else 16, [beyond])
    else:
        struct.pack_into(tiff.byteorder + kind, data, entry.value_at + last * struct.calcsize(kind), beyond)
    path = write(tmp_path, data)
    assert_paths_agree(data)
    if len(tiff.ifds) == 1:
        with pytest.raises(
            CorruptTiffError, match=rf"patched\.tif: IFD 0: segment {last} .* beyond the end of the file"
        ):
            read_tiff(path)
        return
    manifest = read_tiff(path)
    assert [ifd.damage is not None for ifd in manifest.ifds] == [i == damaged for i in range(len(tiff.ifds))]
    assert f"IFD {damaged}: segment {last} at offset" in str(manifest.ifds[damaged].damage)
    assert "beyond the end of the file" in str(manifest.ifds[damaged].damage)
    # tifffile reads the damaged IFD from the bytes that are there; stackcube does not read past what the file says
    expected = read_tifffile(path)
    expected[damaged] = "refused"
    assert_read_as(read_stackcube(path), expected)


CUT = [MULTIPAGE, "rio-tiler/blue_nostats.tif", "rio-tiler/cog_uint8_rgb_mask.tif", f"{COLORADO}_mask.tif"]


@pytest.mark.parametrize("name", CUT, ids=[n.rsplit("/")[-1] for n in CUT])
def test_a_file_cut_short_reads_what_is_left_as_tifffile_does(tmp_path, name) -> None:
    """The file cut 10 bytes into its last segment, as a download cut short: the IFD that segment belongs to is
    refused (tifffile pads it with zeros or fails to decode it); where the cut takes a later IFD with it (strip
    files that store each page's IFD after its strips), the chain ends before it, as tifffile's does."""
    tiff = corpus_tiff(name)
    ends = [max(o + n for o, n in segments(tiff, i)) for i in range(len(tiff.ifds))]
    path = write(tmp_path, tiff.data[: max(ends) - 10])
    assert_paths_agree(tiff.data[: max(ends) - 10])
    expected = read_tifffile(path)
    assert any(isinstance(page, str) for page in expected) or len(expected) < len(tiff.ifds)
    assert_read_as(read_stackcube(path), expected)
