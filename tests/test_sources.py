"""The sources stage: chosen assets with their manifests; unreadable ones fail or are listed; HEAD checks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from stackcube.assets import choose_assets
from stackcube.demo import write_demo_catalog
from stackcube.errors import NothingFoundError, SourceNotFoundError
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
