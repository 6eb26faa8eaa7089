"""A union level's tile table read back (store.tiles): what it names, and every href it names checked against the
containers the cube declares and ``allow=`` before any request. (End to end, with a host that must hear nothing:
tests/union/test_array.py.)"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import icechunk
import numpy as np
import pytest
import zarr

import stackcube
from stackcube.errors import UntrustedSourceError
from stackcube.settings import current
from stackcube.store import CubeMetadata, open_repository
from stackcube.store.guard import GuardedStore
from stackcube.store.layout import level_path
from stackcube.store.tiles import declared_container, read_tile_refs


@pytest.fixture
def union_cube(tmp_path):
    """A cube of one union of scenes at pixel offsets (local files), its repository path and the union."""
    from stackcube.demo import write_demo_offset_catalog

    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(write_demo_offset_catalog(tmp_path / "offsets"), repo=repo, progress=False)
    (union,) = cube.plan.unions
    return cube, repo, union


def _opened(repo) -> tuple[GuardedStore, CubeMetadata]:
    repository = open_repository(repo)
    session = repository.readonly_session(branch="main")
    metadata = CubeMetadata.from_attrs(zarr.open_group(session.store, mode="r").attrs)
    return GuardedStore(session.store, current(), metadata.containers, str(repo)), metadata


def _read(repo, path, **given):
    store, metadata = _opened(repo)
    return read_tile_refs(store, path, metadata, **{"allow": None, "credentials": None, "settings": current(), **given})


def test_the_tile_table_names_each_members_sources_under_a_declared_container(union_cube) -> None:
    cube, repo, union = union_cube
    _, metadata = _opened(repo)
    members = {a.name: a for a in cube.plan.arrays}
    hrefs = {str(h) for m in union.members for h in members[m].sources.href.tolist()}
    for level in range(union.n_levels):
        refs = _read(repo, level_path(union.name, level))
        assert refs is not None
        assert {s.href for s in refs.sources} == hrefs
        assert all(s.href.startswith(metadata.containers) for s in refs.sources)
        assert refs.tiles.shape[1] == 3  # per member chunk: source row, offset, length
        used = refs.tiles[refs.tiles[:, 0] >= 0]
        assert len(used) > 0
        assert set(used[:, 0].tolist()) == set(range(len(refs.sources)))
        assert refs.repo == str(repo)


def name_another_host(cube, union, moved: Callable[[str], str]) -> str:
    """Edit every level's tile table so that its first source's href is ``moved(href)`` (another host), and commit;
    the href it now names. (Also tests/union/test_array.py's.)"""
    session = cube.repository.writable_session("main")
    root = zarr.open_group(session.store, mode="r+")
    for level in range(union.n_levels):
        sources = root[union.name][str(level)]["sources"]
        values = np.asarray(sources[...], dtype=object)
        doc = json.loads(str(values[0]))
        doc["href"] = moved(doc["href"])
        values[0] = json.dumps(doc)
        sources[...] = values
    session.commit("a tile table naming another host")
    return doc["href"]


def test_a_tile_table_naming_an_undeclared_href_is_refused(union_cube) -> None:
    cube, repo, union = union_cube
    href = name_another_host(cube, union, lambda h: f"https://elsewhere.example/scenes/{h.rsplit('/', 1)[-1]}")
    path = level_path(union.name, 0)
    with pytest.raises(UntrustedSourceError, match=rf"^{repo}: the tile table of {path} names {href}, under none"):
        _read(repo, path)


def test_declared_containers_outside_allow_are_refused(union_cube) -> None:
    _, repo, union = union_cube
    _, metadata = _opened(repo)
    path = level_path(union.name, 0)
    with pytest.raises(UntrustedSourceError, match=r"outside the allowed prefixes https://example\.com/"):
        _read(repo, path, allow=("https://example.com/",))
    assert _read(repo, path, allow=metadata.containers) is not None


def test_no_table_or_a_credential_only_icechunk_uses_reads_through_icechunk(union_cube) -> None:
    cube, repo, union = union_cube
    _, metadata = _opened(repo)
    path = level_path(union.name, 0)
    # a file:// source given an Icechunk credential: only Icechunk can read with it, so no merged reads
    given = dict.fromkeys(metadata.containers, icechunk.s3_anonymous_credentials())
    assert _read(repo, path, credentials=given) is None
    session = cube.repository.writable_session("main")
    del zarr.open_group(session.store, mode="r+")[union.name]
    session.commit("a union without its tile table")
    assert _read(repo, path) is None


def test_the_longest_declared_container_holds_an_href(union_cube) -> None:
    _, repo, _ = union_cube
    _, metadata = _opened(repo)
    nested = dataclasses.replace(metadata, containers=("https://h.example/a/", "https://h.example/a/b/"))
    assert declared_container("https://h.example/a/b/c.tif", nested, "cube", "u/0") == "https://h.example/a/b/"
    assert declared_container("https://h.example/a/c.tif", nested, "cube", "u/0") == "https://h.example/a/"
    with pytest.raises(UntrustedSourceError, match=r"names https://h\.example/ab/c\.tif, under none"):
        declared_container("https://h.example/ab/c.tif", nested, "cube", "u/0")
