"""The latency and fault proxy does what it says: counts, latency, and each kind of fault."""

from __future__ import annotations

import http.client
import time

import pytest

from tests.services.proxy import run_proxy

pytestmark = pytest.mark.network


@pytest.fixture
def served(nginx):
    (nginx.root / "p.bin").write_bytes(bytes(range(256)) * 400)
    with run_proxy(nginx.url) as proxy:
        yield proxy


def get(proxy, path="/p.bin", headers=None, timeout=5.0):
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_counts_requests_and_bytes(served) -> None:
    for _ in range(3):
        status, body = get(served, headers={"Range": "bytes=0-99"})
        assert status == 206
        assert body == bytes(range(100))
    assert served.stats["GET"] == 3
    assert served.stats["bytes"] == 300


def test_adds_latency(served) -> None:
    with served.settings(latency=0.2):
        start = time.monotonic()
        get(served)
        assert time.monotonic() - start >= 0.2


@pytest.mark.parametrize("status", ["500", "503", "429"])
def test_status_faults(served, status) -> None:
    with served.settings(fault_rate=1.0, faults=(status,)):
        assert get(served)[0] == int(status)
    assert served.stats[f"fault:{status}"] == 1


def test_reset_fault(served) -> None:
    with (
        served.settings(fault_rate=1.0, faults=("reset",)),
        pytest.raises((ConnectionError, http.client.HTTPException)),
    ):
        get(served)


def test_stall_fault(served) -> None:
    # the stall outlasts the test (the proxy ends it when it stops): the client's timeout is all that can end it
    with served.settings(fault_rate=1.0, faults=("stall",), stall_seconds=3600.0), pytest.raises(TimeoutError):
        get(served, timeout=0.5)


def test_truncate_fault(served) -> None:
    with served.settings(fault_rate=1.0, faults=("truncate",)), pytest.raises(http.client.IncompleteRead):
        get(served)


def test_fault_rate_is_a_fraction_and_repeatable(served) -> None:
    with served.settings(fault_rate=0.3, faults=("500",), seed=7):
        served.reset()
        first = [get(served)[0] for _ in range(60)]
        served.reset()
        second = [get(served)[0] for _ in range(60)]
    assert first == second
    assert 8 <= first.count(500) <= 30
