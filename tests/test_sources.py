"""The sources stage: chosen assets with their manifests; unreadable ones fail or are listed; HEAD checks."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from stackcube.assets import choose_assets
from stackcube.demo import write_demo_catalog
from stackcube.errors import NothingFoundError, SourceError, SourceNotFoundError
from stackcube.options import CubeOptions
from stackcube.search import search_items
from stackcube.sources import Source, check_sources, read_sources


@pytest.fixture
def chosen(tmp_path):
    query, items = search_items(write_demo_catalog(tmp_path / "demo", dates=2, size=256))
    selected, _ = choose_assets(items, query, ["red", "nir"])
    return selected


def test_every_chosen_asset_becomes_a_source(chosen) -> None:
    sources, failed = asyncio.run(read_sources(chosen, progress=False))
    assert not failed
    assert [(s.item_id, s.asset, s.band) for s in sources] == [(a.item.id, a.key, a.band) for a in chosen]
    assert [s.manifest.href for s in sources] == [Path(a.href).resolve().as_uri() for a in chosen]
    assert sources[0] == Source.of(chosen[0], sources[0].manifest)
    assert sources[0].transform.a == 10.0


def test_an_unreadable_source_fails_or_is_listed(chosen) -> None:
    Path(chosen[1].href).unlink()
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        asyncio.run(read_sources(chosen, progress=False))
    sources, failed = asyncio.run(read_sources(chosen, CubeOptions(on_error="skip"), progress=False))
    assert len(sources) == len(chosen) - 1
    (failure,) = failed
    assert failure.startswith(f"{chosen[1].item.id}/{chosen[1].key}: ")


def test_many_failures_are_reported_together_with_a_count_per_reason(chosen, use_settings) -> None:
    for a in chosen[:3]:
        Path(a.href).unlink()
    with pytest.raises(SourceNotFoundError, match=r"^3 of 4 sources could not be read: 3 x does not exist") as raised:
        asyncio.run(read_sources(chosen, progress=False))
    message = str(raised.value)
    assert all(a.href in message for a in chosen[:3])
    assert message.endswith("or pass on_error='skip' (CLI: --skip-failed) to build from the others")
    Path(chosen[3].href).unlink()
    with pytest.raises(SourceNotFoundError, match=r"^all 4 sources failed: 4 x does not exist.* and 1 more\)"):
        asyncio.run(read_sources(chosen, CubeOptions(on_error="skip"), progress=False))


def test_unreachable_sources_are_tried_at_once_and_reported_together(chosen, nginx, use_settings) -> None:
    from tests.services.proxy import run_proxy

    use_settings(retries=1)
    with run_proxy(nginx.url, latency=0.2, fault_rate=1.0, faults=("reset",)) as host:  # a host that drops all
        unreachable = [dataclasses.replace(a, href=f"{host.url}/{a.item.id}/{a.key}.tif") for a in chosen]
        with pytest.raises(SourceError, match=r"^all 4 sources failed: 4 x reading bytes .* failed") as raised:
            asyncio.run(read_sources(unreachable, progress=False))
        assert host.stats["max_inflight"] == 4  # all four asked at once, not one after another
        assert host.stats["GET"] == 8  # each tried twice (retries=1)
        assert host.stats["HEAD"] == 0  # and not asked again with a HEAD after that
    assert all(a.href in str(raised.value) for a in unreachable[:3])


def test_checks_tell_changed_from_vanished_from_unchanged(chosen) -> None:
    sources, _ = asyncio.run(read_sources(chosen, progress=False))
    path = Path(chosen[0].href)
    stat = path.stat()
    with path.open("ab") as f:  # a provider appending to a file in place
        f.write(b"\0")
    os.utime(path, (stat.st_atime + 5, stat.st_mtime + 5))
    Path(chosen[1].href).unlink()
    checks = asyncio.run(check_sources(sources, progress=False))
    assert checks[0].changed
    assert "does not exist" in str(checks[1].error)
    assert not checks[1].changed
    assert all(c.found is None and c.error is None for c in checks[2:])


def test_no_usable_asset_is_explained(tmp_path) -> None:
    query, items = search_items(write_demo_catalog(tmp_path / "demo", dates=1, size=256))
    with pytest.raises(NothingFoundError, match="none of the 1 items found has a usable asset"):
        choose_assets(items, query, ["swir22"])
