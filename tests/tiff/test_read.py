"""read_tiff over a real HTTP server: GETs per header counted at nginx, ETags, errors, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
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


def _replace_in_place(path: Path, mtime_ns: int) -> None:
    """Replace ``path`` with a file of the same size and header whose first tile differs by one byte, modified at
    ``mtime_ns`` (the host's ETag is the modification time and size: a new ETag)."""
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[0].dataoffsets[0])
    body = bytearray(path.read_bytes())
    body[offset + 10] ^= 0xFF
    changed = path.with_suffix(".new")
    changed.write_bytes(body)
    os.utime(changed, ns=(mtime_ns, mtime_ns))
    changed.replace(path)


def _spread(root: Path, mtime: int) -> Path:
    """A TIFF whose IFDs lie after its image data (tifffile writes them so), modified at ``mtime`` (whole seconds)."""
    path, _ = write_demo_tiff(root / "spread.tif", size=2048, tile=128)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


def _get_headers(proxy) -> list[bytes]:
    return [h for h in proxy.heads if h.startswith(b"GET /spread.tif")]


def _etag_now(url: str) -> str:
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as head:
        return str(head.headers["ETag"])


HOSTS = {
    "If-Match honoured": {},
    "If-Match ignored": {"conditionals": False},
}


@pytest.mark.network
@pytest.mark.parametrize("case", list(HOSTS))
def test_a_file_replaced_between_two_header_gets_is_read_again_whole_never_stitched(case: str, tmp_path) -> None:
    """The first follow-up GET of a spread header finds another version (the same size, the same second, so only
    the ETag tells): refused under If-Match where the host honours it, seen by its ETag where it does not; the
    header is read again from the start, and the manifest is the new version's."""
    from tests.services.host import run_host
    from tests.services.proxy import run_proxy
    from tests.test_hosts import on_each_request

    when = int(time.time()) - 60
    path = _spread(tmp_path, when)
    with run_host(tmp_path, **HOSTS[case]) as host, run_proxy(host.url) as proxy:
        old_etag = _etag_now(f"{host.url}/spread.tif")

        def replace_at_the_second_get(head: bytes) -> None:
            if len(_get_headers(proxy)) == 2:
                _replace_in_place(path, when * 10**9 + 1000)

        on_each_request(proxy, replace_at_the_second_get)
        manifest = read_tiff(f"{proxy.url}/spread.tif")
        new_etag = _etag_now(f"{host.url}/spread.tif")
        assert new_etag != old_etag
        assert manifest.etag == new_etag  # the version read is the new one, whole
        gets = _get_headers(proxy)
        assert len(gets) == manifest.header_requests >= 4  # two GETs of the first try, then the whole header again
        assert b"if-match: " + old_etag.encode() in gets[1].lower()  # the follow-up named the version it continues
        statuses = [s.status for s in host.seen if s.method == "GET"]
        assert statuses[1] == (412 if case == "If-Match honoured" else 206)
        with tifffile.TiffFile(path) as tif:
            assert [int(o) for o in tif.pages[0].dataoffsets] == manifest.ifd(0).offsets.ravel().tolist()


@pytest.mark.network
def test_a_file_replaced_during_every_header_read_fails_clearly(tmp_path) -> None:
    from tests.services.host import run_host
    from tests.services.proxy import run_proxy
    from tests.test_hosts import on_each_request

    when = int(time.time()) - 60
    path = _spread(tmp_path, when)
    with run_host(tmp_path, conditionals=False) as host, run_proxy(host.url) as proxy:
        firsts: list[int] = []

        def replace_at_each_follow_up(head: bytes) -> None:
            if b"range: bytes=0-" in head.lower():
                firsts.append(len(_get_headers(proxy)))
            elif head.startswith(b"GET /spread.tif") and len(_get_headers(proxy)) == firsts[-1] + 1:
                _replace_in_place(path, (when + 2 * len(firsts)) * 10**9)  # a new second: Last-Modified differs too

        on_each_request(proxy, replace_at_each_follow_up)
        with pytest.raises(SourceChangedError, match=r"spread\.tif changed while its header was being read, twice"):
            read_tiff(f"{proxy.url}/spread.tif")
        assert len(firsts) == 2  # read again once, not more


@pytest.mark.network
@pytest.mark.parametrize("conditionals", [True, False])
def test_a_spread_header_on_a_host_with_per_response_etags_is_read_by_last_modified(conditionals, tmp_path) -> None:
    """A new ETag on every response is no version: the follow-ups are refused under If-Match (or, where the host
    ignores it, differ), so the header is read again with follow-ups checked by size and Last-Modified, and the
    manifest keeps no ETag (as the probe would drop it)."""
    from tests.services.host import run_host

    path, expected = write_demo_tiff(tmp_path / "spread.tif", size=2048, tile=128)
    with run_host(tmp_path, etag="per-response", conditionals=conditionals) as host:
        manifest = read_tiff(f"{host.url}/spread.tif")
        assert manifest.etag is None
        assert manifest.last_modified is not None
        assert manifest.header_requests == len(host.seen) >= 4
        firsts = [n for n, s in enumerate(host.seen) if s.headers.get("range", "").startswith("bytes=0-")]
        assert len(firsts) == 2  # read again once
        follow_ups = host.seen[firsts[1] + 1 :]
        assert follow_ups
        assert all("if-unmodified-since" in s.headers and "if-match" not in s.headers for s in follow_ups)
    np.testing.assert_array_equal(open_manifest(dataclasses.replace(manifest, href=path.as_uri())).values, expected)


@pytest.mark.network
def test_a_spread_header_from_replicas_with_one_etag_and_their_own_times_is_read_once(tmp_path) -> None:
    """Copies behind one name that answer in turn with the content's ETag but times of their own: the same strong
    ETag is the same version, so the follow-ups (under If-Match) are taken, whatever Last-Modified says."""
    from tests.services.host import run_host

    path, expected = write_demo_tiff(tmp_path / "spread.tif", size=2048, tile=128)
    with run_host(tmp_path, replicas=2) as host:
        manifest = read_tiff(f"{host.url}/spread.tif")
        assert {s.status for s in host.seen} == {206}  # no follow-up refused
        assert manifest.header_requests == len(host.seen) >= 2  # read once: no second try from the start
        assert sum(s.headers.get("range", "").startswith("bytes=0-") for s in host.seen) == 1
        assert manifest.etag is not None
    np.testing.assert_array_equal(open_manifest(dataclasses.replace(manifest, href=path.as_uri())).values, expected)
