"""Hosts as they really behave, one switch at a time: build, read, replace a source, read again, verify.

For every behaviour of :mod:`tests.services.host` (weak or per-response ETags, conditional requests ignored, no
validators, compressed ranges, HEAD refused) the documented outcome holds: identical values while nothing changed,
and after a source is replaced either a :class:`SourceChangedError` naming it, or (where the host makes that
impossible) the source listed as unprotected by the build, ``stackcube info`` and ``verify_cube``, which sees the
change by the validators the host does give.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

import stackcube
from stackcube.errors import CorruptTiffError, HostError, SourceChangedError, SourceError
from tests.services.host import Host, run_host
from tests.services.proxy import Proxy, run_proxy
from tests.twins import change_in_place, series

pytestmark = pytest.mark.network

N = 3


def _catalog(host: Host) -> str:
    items = series(host.root, host.url, N)
    path = host.root / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return str(path)


def _expected(root: Path, n: int) -> np.ndarray:
    with rasterio.open(root / f"s{n}.tif") as ds:
        return ds.read(1)


# switches -> (validator each source keeps, whether a replaced source is refused on read)
CASES: dict[str, tuple[dict[str, Any], str | None, bool]] = {
    "strong ETag": ({}, "etag", True),
    "weak ETag and Last-Modified": ({"etag": "weak"}, "last-modified", True),
    "weak ETag only": ({"etag": "weak", "last_modified": False}, None, False),
    "per-response ETag": ({"etag": "per-response"}, "last-modified", True),
    "Last-Modified only": ({"etag": "none"}, "last-modified", True),
    "conditionals ignored": ({"conditionals": False}, None, False),
    "no validators": ({"etag": "none", "last_modified": False}, None, False),
    "HEAD refused": ({"head": False}, "etag", True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_host_behaviour_gives_its_documented_outcome(case: str, tmp_path: Path, capsys) -> None:
    switches, validator, refused = CASES[case]
    root = tmp_path / "served"
    repo = tmp_path / "cube.icechunk"
    with run_host(root, **switches) as host:
        cube = stackcube.build_cube(_catalog(host), repo=repo, progress=False)
        assert [s.manifest.validator for s in cube.plan.sources] == [validator] * N
        if switches.get("etag") == "per-response":
            assert all(s.manifest.etag is None for s in cube.plan.sources)  # a tag that never repeats is none
        report = cube.plan.report()
        assert ("unprotected: 3 sources on " + host.url in report) is (validator is None)

        data = stackcube.open_dataarray(repo, mask_and_scale=False)
        for n in range(N):  # nothing changed: the values of the files, whatever the host's validators
            np.testing.assert_array_equal(data.isel(time=n, band=0).values, _expected(root, n))
        assert stackcube.verify_cube(repo, progress=False)[0].ok

        before = _expected(root, 1)
        change_in_place(root / "s1.tif")
        if refused:
            with pytest.raises(SourceChangedError, match=f"{host.url}/s1.tif"):
                _ = stackcube.open_dataarray(repo, mask_and_scale=False).isel(time=1).values
        else:  # what an unprotected source means: old offsets into the new file; at best a decoding error
            try:
                now = stackcube.open_dataarray(repo, mask_and_scale=False).isel(time=1, band=0).values
            except CorruptTiffError as exc:
                assert "stackcube verify" in str(exc)
            else:
                assert not np.array_equal(now, before)
        np.testing.assert_array_equal(  # the other sources read as before
            stackcube.open_dataarray(repo, mask_and_scale=False).isel(time=2, band=0).values, _expected(root, 2)
        )

        verified, _ = stackcube.verify_cube(repo, progress=False)
        assert [href for href, _, _ in verified.changed] == [f"{host.url}/s1.tif"]
        assert not verified.vanished
        assert len(verified.unprotected) == (0 if validator is not None else N)
        no_validators = switches.get("etag") == "none" and switches.get("last_modified") is False
        assert len(verified.size_only) == (N if no_validators else 0)

        from stackcube.cli import main

        capsys.readouterr()
        assert main(["info", str(repo)]) == 0
        assert ("unprotected: 3 sources" in capsys.readouterr().out) is (validator is None)


def test_a_host_that_compresses_ranges_is_refused_clearly(tmp_path: Path) -> None:
    root = tmp_path / "served"
    with run_host(root, gzip=True) as host:
        with pytest.raises(SourceError, match="Content-Encoding: gzip"):
            stackcube.build_cube(_catalog(host), repo=tmp_path / "cube.icechunk", progress=False)
        assert {s.headers.get("accept-encoding") for s in host.seen} == {"identity"}


def test_reads_ask_for_uncompressed_ranges(tmp_path: Path) -> None:
    root = tmp_path / "served"
    with run_host(root) as host:
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(_catalog(host), repo=repo, progress=False)
        host.seen.clear()
        _ = stackcube.open_dataarray(repo, mask_and_scale=False).values
        assert host.seen
        assert {s.headers.get("accept-encoding") for s in host.seen} == {"identity"}


def test_a_host_that_stops_honouring_ranges_fails_reads_clearly(tmp_path: Path) -> None:
    with run_host(tmp_path / "served") as host:
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(_catalog(host), repo=repo, progress=False)
        host.ranges = False  # a CDN in front of the bucket, say, that answers every request with the whole file
        host.seen.clear()
        where = host.url.removeprefix("http://")
        with pytest.raises(
            HostError, match=rf"could not read {host.url}/s0.tif: the host {where} does not serve byte ranges"
        ) as info:
            _ = stackcube.open_dataarray(repo, mask_and_scale=False).isel(time=0).values
        assert "transient" not in str(info.value)
        assert len(host.seen) <= 4  # not retried: the same request gets the same answer


def test_a_host_that_starts_compressing_ranges_fails_reads_clearly(tmp_path: Path, use_settings) -> None:
    use_settings(retries=1)
    with run_host(tmp_path / "served") as host:
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(_catalog(host), repo=repo, progress=False)
        host.gzip = True  # a CDN put in front later, compressing whatever Accept-Encoding says
        with pytest.raises(SourceError, match=rf"could not read {host.url}/s0.tif: .*compresses"):
            _ = stackcube.open_dataarray(repo, mask_and_scale=False).isel(time=0).values


class _Hooked(list[bytes]):
    """``Proxy.heads`` calling ``hook(head)`` as each request arrives, before the proxy draws a fault for it and
    forwards it (the proxy appends a request's head and draws its fault with no await between): a test acts at an
    exact request, whatever the machine's speed."""

    def __init__(self, hook: Callable[[bytes], None]) -> None:
        super().__init__()
        self.hook = hook

    def append(self, head: bytes) -> None:
        super().append(head)
        self.hook(head)


def on_each_request(proxy: Proxy, hook: Callable[[bytes], None]) -> None:
    """Call ``hook`` with the head of every request ``proxy`` gets from now on (it may set ``proxy.fault_rate``,
    or change the files behind the proxy, for that very request)."""
    proxy.record = True
    proxy.heads = _Hooked(hook)


def is_probe(head: bytes) -> bool:
    """A probe's GET (tiff._probe): the first byte under If-Match or If-Unmodified-Since."""
    text = head.lower()
    return b"\r\nrange: bytes=0-0\r\n" in text and (b"\r\nif-match:" in text or b"\r\nif-unmodified-since:" in text)


def test_a_probe_that_fails_twice_is_retried_as_reads_are_and_protects_the_cube(tmp_path: Path, use_settings) -> None:
    use_settings(retries=3)
    with run_host(tmp_path / "served") as host, run_proxy(host.url, faults=("503",)) as proxy:
        left = [2]

        def fail_twice(head: bytes) -> None:
            fail = is_probe(head) and left[0] > 0
            left[0] -= fail
            proxy.fault_rate = 1.0 if fail else 0.0

        on_each_request(proxy, fail_twice)
        cube = stackcube.build_cube(series(host.root, proxy.url, N), repo=tmp_path / "cube.icechunk", progress=False)
        assert proxy.stats["fault:503"] == 2
        assert sum(map(is_probe, proxy.heads)) == 3 + 2  # three probe GETs, the first tried twice more
        assert [s.manifest.validator for s in cube.plan.sources] == ["etag"] * N
        assert "unprotected" not in cube.plan.report()


def test_a_probe_that_keeps_failing_leaves_that_build_unprotected_says_so_and_the_next_build_asks_again(
    tmp_path: Path, use_settings
) -> None:
    use_settings(retries=1)
    with run_host(tmp_path / "served") as host, run_proxy(host.url, faults=("503",)) as proxy:
        failing = [True]
        on_each_request(proxy, lambda head: setattr(proxy, "fault_rate", float(failing[0] and is_probe(head))))
        items = series(host.root, proxy.url, N)
        first = stackcube.build_cube(items, repo=tmp_path / "first.icechunk", progress=False)
        asked = sum(map(is_probe, proxy.heads))
        assert asked == 2  # the first probe GET, and its one retry
        assert [s.manifest.validator for s in first.plan.sources] == [None] * N
        assert all(s.manifest.etag for s in first.plan.sources)  # kept for verify_cube: not known to be unusable
        report = first.plan.report()
        note = f"on {proxy.url.rstrip('/')}: the host could not be asked in this build whether it honours conditional"
        assert note in report
        assert "503" in report.split(note, 1)[1].split("\n", 1)[0]  # and why
        assert "the next build asks again" in report

        failing[0] = False  # the host answers again; the same process builds again
        second = stackcube.build_cube(items, repo=tmp_path / "second.icechunk", progress=False)
        assert sum(map(is_probe, proxy.heads)) == asked + 3  # asked again: the failure was not remembered
        assert [s.manifest.validator for s in second.plan.sources] == ["etag"] * N
        assert "unprotected" not in second.plan.report()
        data = stackcube.open_dataarray(tmp_path / "second.icechunk", mask_and_scale=False)
        np.testing.assert_array_equal(data.isel(time=0, band=0).values, _expected(host.root, 0))
