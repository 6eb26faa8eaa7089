"""Fixtures of the store tests: twins of real Sentinel-2 items served through a counting proxy."""

from __future__ import annotations

import pytest

from tests.services.proxy import run_proxy
from tests.twins import corpus_items, twin_items

ASSETS = ["B02", "B03", "B04", "B08", "B05", "B01"]


@pytest.fixture(scope="module")
def served_twins(nginx, tmp_path_factory):
    """Twins of four 35MNM items behind a fault/latency proxy (faults off), so reads are counted."""
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:4]
    with run_proxy(nginx.url) as proxy:
        twins = twin_items(items, nginx.root / "cube-twins", f"{proxy.url}/cube-twins", downscale=10, assets=ASSETS)
        yield proxy, twins
