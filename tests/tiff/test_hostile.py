"""Corrupt, truncated and hostile files end in a stackcube error naming the href, in bounded time and memory."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackcube.errors import CorruptTiffError, StackcubeError, UnsupportedTiffError
from stackcube.tiff import read_tiff
from stackcube.tiff._model import TiffManifest
from stackcube.tiff._parse import MAX_READS, SparseFile, parse_manifest


def small_tiff(tmp_path: Path, name: str = "small.tif", **kwargs) -> bytes:
    data = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    path = tmp_path / name
    tifffile.imwrite(path, data, tile=(16, 16), compression="zlib", **kwargs)
    return path.read_bytes()


def parse_bytes(data: bytes, href: str = "mem://x.tif") -> TiffManifest:
    fh = SparseFile(len(data), name=href)
    fh.add(0, data)
    return parse_manifest(href, fh)


def classic_ifd(entries: list[tuple[int, int, int, int]], next_ifd: int) -> bytes:
    body = b"".join(struct.pack("<HHII", *e) for e in entries)
    return struct.pack("<H", len(entries)) + body + struct.pack("<I", next_ifd)


def minimal_entries(offset: int = 200, count: int = 10) -> list[tuple[int, int, int, int]]:
    return [
        (256, 4, 1, 8),
        (257, 4, 1, 8),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, offset),
        (277, 3, 1, 1),
        (278, 4, 1, 8),
        (279, 4, 1, count),
    ]


def test_ifd_loop_longer_than_tifffiles_check_ends_at_the_repeat(tmp_path) -> None:
    # 150 distinct IFDs whose last points back to the first: tifffile checks for loops only at its 100th IFD (and
    # would go round this one until 2**32 IFD offsets); stackcube reads the 150, once each
    n = 150
    ifd_size = 2 + 12 * 9 + 4
    first = 8
    blob = bytearray(b"II*\x00" + struct.pack("<I", first))
    data_at = first + n * ifd_size
    for i in range(n):
        nxt = first + (i + 1) * ifd_size if i < n - 1 else first
        blob += classic_ifd(minimal_entries(offset=data_at, count=64), nxt)
    blob += bytes(64)
    path = tmp_path / "loop.tif"
    path.write_bytes(bytes(blob))
    reads = []
    counted = SparseFile.read

    def read(self: SparseFile, size: int | None = -1) -> bytes:
        reads.append(size)
        return counted(self, size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SparseFile, "read", read)
        manifest = read_tiff(path)
    assert [ifd.path for ifd in manifest.ifds] == [(i,) for i in range(n)]
    assert all(int(ifd.offsets[0, 0, 0]) == data_at for ifd in manifest.ifds)
    # bounded in work, not in seconds of this machine: a parse gives up after MAX_READS file operations
    assert len(reads) <= MAX_READS + 1


def test_self_referencing_ifd(tmp_path) -> None:
    # as tifffile: the IFD is read once
    blob = b"II*\x00" + struct.pack("<I", 8) + classic_ifd(minimal_entries(offset=200, count=64), 8) + bytes(300)
    path = tmp_path / "self.tif"
    path.write_bytes(blob)
    manifest = read_tiff(path)
    assert [ifd.path for ifd in manifest.ifds] == [(0,)]
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1


def test_segment_beyond_end_of_file(tmp_path) -> None:
    blob = b"II*\x00" + struct.pack("<I", 8) + classic_ifd(minimal_entries(offset=10_000, count=64), 0) + bytes(64)
    path = tmp_path / "beyond.tif"
    path.write_bytes(blob)
    with pytest.raises(CorruptTiffError, match=r"beyond\.tif.*beyond the end of the file"):
        read_tiff(path)


def test_absurd_image_size(tmp_path) -> None:
    entries = minimal_entries()
    entries[0] = (256, 4, 1, 2**31)
    entries[1] = (257, 4, 1, 2**31)
    entries[7] = (278, 4, 1, 1)
    blob = b"II*\x00" + struct.pack("<I", 8) + classic_ifd(entries, 0) + bytes(300)
    path = tmp_path / "absurd.tif"
    path.write_bytes(blob)
    with pytest.raises(CorruptTiffError, match=r"absurd\.tif"):
        read_tiff(path)


def test_truncated_file(tmp_path) -> None:
    data = small_tiff(tmp_path)
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptTiffError, match=r"truncated\.tif"):
        read_tiff(path)


def test_empty_and_not_a_tiff(tmp_path) -> None:
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "text.tif").write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(CorruptTiffError, match=r"empty\.tif is empty"):
        read_tiff(tmp_path / "empty.tif")
    with pytest.raises(CorruptTiffError, match=r"text\.tif is not a valid TIFF"):
        read_tiff(tmp_path / "text.tif")


def test_unsupported_feature_names_the_tag(tmp_path) -> None:
    data = np.zeros((16, 16), np.uint8)
    path = tmp_path / "jpeg2000.tif"
    tifffile.imwrite(path, data, compression="jpeg2000")
    raw = bytearray(path.read_bytes())
    # rewrite the Compression value to one nobody implements
    manifest_ok = read_tiff(path)
    assert manifest_ok.ifds[0].recipe.compression == 34712
    idx = raw.find(struct.pack("<HHIH", 259, 3, 1, 34712))
    raw[idx + 8 : idx + 10] = struct.pack("<H", 40000)
    path.write_bytes(bytes(raw))
    with pytest.raises(UnsupportedTiffError, match=r"jpeg2000\.tif.*Compression=40000.*not supported"):
        read_tiff(path)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[bytes]:
    tmp = tmp_path_factory.mktemp("seeds")
    return [
        small_tiff(tmp, "a.tif"),
        small_tiff(tmp, "b.tif", bigtiff=True),
        small_tiff(tmp, "c.tif", byteorder=">", predictor=True),
    ]


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_headers_give_a_manifest_or_a_stackcube_error(seeds, data) -> None:
    seed = bytearray(data.draw(st.sampled_from(seeds)))
    header_end = min(len(seed), 600)
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "set32", "truncate"]))
        pos = data.draw(st.integers(0, header_end - 1))
        if kind == "flip":
            seed[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set32" and pos + 4 <= len(seed):
            value = data.draw(st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(seed), 8]))
            seed[pos : pos + 4] = struct.pack("<I", value)
        elif kind == "truncate":
            seed = seed[: max(pos, 1)]
            header_end = min(header_end, len(seed))
    start = time.monotonic()
    try:
        manifest = parse_bytes(bytes(seed))
    except StackcubeError as exc:
        assert "mem://x.tif" in str(exc)
    else:
        assert isinstance(manifest, TiffManifest)
        for ifd in manifest.ifds:
            assert ifd.offsets.shape == ifd.lengths.shape
            # an IFD whose segments run past the end is marked damaged (and refused when opened); the rest fit
            assert ifd.damage is not None or (ifd.offsets + ifd.lengths <= len(seed)).all()
    assert time.monotonic() - start < 5
