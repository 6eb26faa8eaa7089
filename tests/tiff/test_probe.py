"""Probing hosts for the conditional requests they honour (tiff._probe), and the validator helpers (tiff._model)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import stackcube
from stackcube.tiff import _probe, clear_stores, is_weak, probe_hosts, read_tiff, same_etag
from stackcube.tiff._model import validator_of
from tests.services.host import run_host
from tests.twins import series


def test_etag_helpers_follow_rfc_9110() -> None:
    assert is_weak('W/"abc"')
    assert not is_weak('"abc"')
    assert not is_weak(None)
    assert same_etag('W/"abc"', '"abc"')
    assert not same_etag('"abc"', '"abd"')
    when = datetime(2024, 1, 1, tzinfo=UTC)
    assert validator_of('"abc"', when) == "etag"
    assert validator_of('W/"abc"', when) == "last-modified"
    assert validator_of('W/"abc"', None) is None
    assert validator_of(None, None) is None


@pytest.mark.network
def test_a_host_is_probed_once_per_process_with_at_most_three_one_byte_gets(tmp_path) -> None:
    clear_stores()
    with run_host(tmp_path / "served") as host:
        items = series(host.root, host.url, 4)
        manifests = [read_tiff(i["assets"]["B04"]["href"]) for i in items]
        host.seen.clear()
        probed = stackcube.settings.current()
        out, unasked = stackcube._sync.run(probe_hosts(manifests, probed))
        assert [m.validator for m in out] == ["etag"] * 4
        assert unasked == {}
        assert len(host.seen) == 3
        assert {s.headers["range"] for s in host.seen} == {"bytes=0-0"}
        assert [s.status for s in host.seen] == [206, 412, 412]  # right If-Match; wrong one; old date
        host.seen.clear()
        stackcube._sync.run(probe_hosts(manifests, probed))
        assert host.seen == []  # known for the rest of the process
        clear_stores()
        stackcube._sync.run(probe_hosts(manifests, probed))
        assert len(host.seen) == 3  # forgotten with the stores


@pytest.mark.network
def test_a_host_that_fails_the_probe_leaves_its_sources_unprotected_once_and_is_asked_again(tmp_path) -> None:
    clear_stores()
    with run_host(tmp_path / "served") as host:
        items = series(host.root, host.url, 1)
        manifests = [read_tiff(items[0]["assets"]["B04"]["href"])]
        hidden = (host.root / "s0.tif").rename(host.root / "hidden")  # gone between the header read and the probe
        host.seen.clear()
        with stackcube.settings.set(retries=0):
            out, unasked = stackcube._sync.run(probe_hosts(manifests, stackcube.settings.current()))
        assert out[0].validator is None
        assert list(unasked) == [host.url]
        assert "s0.tif does not exist" in unasked[host.url]
        assert len(host.seen) == 1  # retries=0: the one GET
        assert host.url not in _probe._known  # the failure is not remembered
        hidden.rename(host.root / "s0.tif")  # back, the same file (the same ETag)
        host.seen.clear()
        out, unasked = stackcube._sync.run(probe_hosts(manifests, stackcube.settings.current()))
        assert len(host.seen) == 3  # asked again, now that it answers
        assert (out[0].validator, unasked) == ("etag", {})
    clear_stores()
