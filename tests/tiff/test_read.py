"""read_tiff over a real HTTP server: GETs per header counted at nginx, ETags, errors, concurrency."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tifffile

from stackcube.demo import write_demo_tiff
from stackcube.errors import SourceChangedError, SourceNotFoundError
from stackcube.settings import Settings, current
from stackcube.tiff import open_manifest, open_tiff, read_tiff, read_tiff_async
from stackcube.tiff._source import get_range, resolve
from tests.conftest import CORPUS, corpus_files

COGS = [p for p in corpus_files("tiff/rio-tiler") if p.name.startswith("cog") and p.suffix == ".tif"]


def header_end(path: Path) -> int:
    """Where the last IFD or tag value of the file ends, per tifffile."""
    with tifffile.TiffFile(path) as tif:
        size = tif.tiff.tagsize
        ends = [p.offset + 2 + len(p.tags) * size + tif.tiff.offsetsize for p in tif.pages]
        ends += [t.valueoffset + t.valuebytecount for p in tif.pages for t in p.tags.values()]
    return max(ends)


def corpus_url(nginx, path: Path) -> str:
    return f"{nginx.url}/corpus/{path.relative_to(CORPUS)}"


@pytest.mark.network
@pytest.mark.corpus
def test_cog_header_costs_one_ranged_get(nginx, corpus) -> None:
    assert len(COGS) >= 20
    layouts = {path: header_end(path) <= current().header_bytes for path in COGS}
    assert sum(layouts.values()) >= 20
    for path, cog_layout in layouts.items():
        with nginx.counting() as seen:
            manifest = read_tiff(corpus_url(nginx, path))
        # a header at the start costs one GET; one parked at the end of the file (cog_name.tif) costs one more
        assert manifest.header_requests == (1 if cog_layout else 2), path.name
        assert [r.method for r in seen] == ["GET"] * manifest.header_requests, path.name
        assert seen[0].range.startswith("bytes=0-"), path.name
        assert all(r.status in {200, 206} for r in seen)


@pytest.mark.network
@pytest.mark.corpus
def test_etag_and_last_modified_come_from_the_server(nginx, corpus) -> None:
    url = corpus_url(nginx, COGS[0])
    manifest = read_tiff(url)
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as head:
        assert manifest.etag == head.headers["ETag"]
        assert manifest.size == int(head.headers["Content-Length"])
    assert manifest.last_modified is not None


@pytest.mark.network
@pytest.mark.corpus
def test_values_over_http_equal_tifffile(nginx, corpus) -> None:
    for name in ("cog.tif", "cog_rgb.tif", "cog_cmap.tif", "cog_uint8_rgb_mask.tif"):
        path = CORPUS / "tiff" / "rio-tiler" / name
        with nginx.counting() as seen:
            da = open_tiff(corpus_url(nginx, path), 0)
            values = da.values
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            ref = page.asarray().reshape(page.shaped)[0, 0].transpose(2, 0, 1)
        np.testing.assert_array_equal(values, ref)
        manifest = read_tiff(path)
        segments = int((manifest.ifds[0].lengths > 0).sum())
        # one GET for the header, then exactly one GET per stored segment
        assert len(seen) == 1 + segments, name
        assert all(r.method == "GET" and r.range for r in seen)


@pytest.mark.network
def test_header_spread_through_the_file_costs_few_gets_never_the_whole_file(nginx, tmp_path) -> None:
    # tifffile writes each IFD after its image data: the header is spread over the file
    path, expected = write_demo_tiff(nginx.root / "spread.tif", size=2048, tile=128)
    size = path.stat().st_size
    with nginx.counting() as seen:
        manifest = read_tiff(f"{nginx.url}/spread.tif")
    assert 2 <= manifest.header_requests == len(seen) <= 4  # the header is spread: follow-up reads happen
    assert all(r.bytes_sent < size for r in seen)
    assert all(r.if_match == manifest.etag for r in seen[1:])
    np.testing.assert_array_equal(open_manifest(manifest).values, expected)


@pytest.mark.network
def test_missing_object_is_a_clear_not_found(nginx) -> None:
    with pytest.raises(SourceNotFoundError, match=r"no-such\.tif does not exist"):
        read_tiff(f"{nginx.url}/no-such.tif")
    with pytest.raises(FileNotFoundError):
        read_tiff(f"{nginx.url}/no-such.tif")


@pytest.mark.network
def test_changed_object_fails_if_match(nginx) -> None:
    path, _ = write_demo_tiff(nginx.root / "changing.tif", size=256, tile=128)
    manifest = read_tiff(f"{nginx.url}/changing.tif")
    write_demo_tiff(path, size=512, tile=128)  # replaced in place: new size, new ETag

    async def reread() -> None:
        await get_range(resolve(manifest.href), 0, 16, settings=current(), if_match=manifest.etag)

    with pytest.raises(SourceChangedError, match="changed while it was being read"):
        asyncio.run(reread())


@pytest.mark.network
@pytest.mark.corpus
def test_concurrency_is_capped_by_one_setting(nginx, corpus) -> None:
    from tests.services.proxy import run_proxy

    settings = Settings(max_concurrency=3)  # passed to what uses it, whatever the process-wide settings are
    with run_proxy(nginx.url, latency=0.05) as proxy:
        urls = [f"{proxy.url}/corpus/{p.relative_to(CORPUS)}" for p in COGS]

        async def read_all():
            return await asyncio.gather(*(read_tiff_async(u, settings=settings) for u in urls))

        manifests = asyncio.run(read_all())
        assert [m.href for m in manifests] == urls
        # counted at the proxy: never more than the setting in flight, and the setting is used (headers overlap)
        assert proxy.stats["max_inflight"] == 3


@pytest.mark.network
def test_segments_a_few_kib_apart_are_one_get_checked_against_the_version(nginx) -> None:
    """Tiles of one file at most MERGE_GAP apart come with one ranged GET, each GET conditioned on the ETag: a
    file replaced in place is refused, not read as other pixels."""
    from stackcube.tiff import MERGE_GAP, read_segments
    from tests.services.proxy import run_proxy

    path, _ = write_demo_tiff(nginx.root / "segments.tif", size=512, tile=128)
    body = path.read_bytes()
    manifest = read_tiff(f"{nginx.url}/segments.tif")
    entry = manifest.ifd(0)
    tiles = list(zip(entry.offsets.ravel().tolist(), entry.lengths.ravel().tolist(), strict=True))[:3]
    far = (len(body) - 10, 10)  # the end of the file, far from the first tiles
    assert far[0] - (tiles[-1][0] + tiles[-1][1]) > MERGE_GAP
    wanted = [tiles[2], far, tiles[0], tiles[1]]  # in any order
    with run_proxy(nginx.url) as proxy:
        href = f"{proxy.url}/segments.tif"
        got = asyncio.run(read_segments(href, wanted, validator="etag", etag=manifest.etag))
        assert got == [body[o : o + n] for o, n in wanted]
        assert proxy.stats["GET"] == 2  # the first three tiles lie side by side; the end of the file apart
        write_demo_tiff(path, size=256, tile=128)  # replaced in place: new ETag
        with pytest.raises(SourceChangedError, match=r"segments\.tif"):
            asyncio.run(read_segments(href, wanted, validator="etag", etag=manifest.etag))
