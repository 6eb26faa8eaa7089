"""The stored cube (store.stored): what a committed cube says about how it was made, what reading it costs, and its
source table held to the containers the cube declares. (End to end, verify and refresh refusing an altered source
table with the other host hearing nothing: tests/test_refresh.py.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import zarr

import stackcube
from stackcube.errors import RepositoryError, UntrustedSourceError
from stackcube.store import memory_repository, open_repository, read_stored, readonly_session
from stackcube.store.stored import declared_hrefs, open_root


@pytest.fixture
def demo_cube(tmp_path):
    from stackcube.demo import write_demo_catalog

    repo = tmp_path / "cube.icechunk"
    return repo, stackcube.build_cube(write_demo_catalog(tmp_path / "demo", dates=2), repo=repo, progress=False)


def test_a_stored_cube_is_what_its_build_wrote(demo_cube) -> None:
    repo, cube = demo_cube
    repository = open_repository(repo)
    stored = read_stored(readonly_session(repository, branch="main"), repo, repository)
    assert stored.snapshot_id == cube.snapshot_id
    assert stored.metadata.arrays == tuple(a.name for a in cube.plan.arrays)
    assert set(stored.layouts) == set(stored.metadata.arrays)
    hrefs = sorted(str(h) for a in cube.plan.arrays for h in a.sources.href.tolist())
    assert sorted(row.href for row in stored.rows) == hrefs
    assert sorted(s.manifest.href for s in stored.sources) == hrefs  # the manifests, read when asked for
    assert stored.searched is not None
    assert read_stored(readonly_session(repository, branch="main")).searched is None  # (not asked: no repository)


def test_a_repository_without_a_cube_says_so() -> None:
    repository = memory_repository()
    with pytest.raises(RepositoryError, match=r"^memory holds no cube yet .*; run the build again into it$"):
        open_root(repository.readonly_session(branch="main"), "memory")
    with pytest.raises(RepositoryError, match=r"^this repository holds no cube yet"):
        read_stored(repository.readonly_session(branch="main"))


def _name_another_host(repository) -> str:
    """Edit the source table's first row to name a host the cube does not declare; return that href."""
    other = "https://elsewhere.example/data/B04.tif"
    session = repository.writable_session("main")
    hrefs = zarr.open_group(session.store, mode="r+")["sources"]["href"]
    values = np.asarray(hrefs[...], dtype=object)
    values[0] = other
    hrefs[...] = values
    session.commit("a source table naming another host")
    return other


def test_a_source_table_naming_an_undeclared_href_is_refused(demo_cube) -> None:
    repo, cube = demo_cube
    other = _name_another_host(cube.repository)
    repository = open_repository(repo)
    with pytest.raises(UntrustedSourceError, match=rf"^{repo}: its source table names {other}, under none of the"):
        read_stored(readonly_session(repository, branch="main"), repo, repository)
    with pytest.raises(UntrustedSourceError, match=r"^the cube: its source table names"):
        read_stored(readonly_session(repository, branch="main"))


def test_declared_hrefs_are_those_under_a_declared_prefix(demo_cube) -> None:
    repo, _ = demo_cube
    metadata = read_stored(readonly_session(open_repository(repo), branch="main")).metadata
    (prefix,) = metadata.containers
    declared_hrefs([f"{prefix}a.tif", f"{prefix}deeper/b.tif"], metadata)
    with pytest.raises(UntrustedSourceError, match="under none of the source prefixes the cube declares"):
        declared_hrefs([f"{prefix}a.tif", f"{prefix.rstrip('/')}-other/a.tif"], metadata)
    undeclared = dataclasses.replace(metadata, containers=())
    declared_hrefs([], undeclared)  # a cube without sources declares none
    with pytest.raises(UntrustedSourceError, match=r"declares \(\); the cube was altered"):  # sources, none declared
        declared_hrefs(["https://anywhere.example/a.tif"], undeclared)


@pytest.mark.network
def test_reading_a_stored_cube_as_a_refresh_costs_these_repository_requests(s3, tmp_path, use_settings) -> None:
    """What a refresh reads first (the cube's description, its source rows, its last search), counted at a proxy in
    front of the S3 server holding the repository: the manifests of the row columns (one is inline), no
    coordinate's (Icechunk's default preloaded 6 more: 11)."""
    from stackcube.settings import S3Settings
    from tests.services.proxy import run_proxy
    from tests.twins import series

    items = series(tmp_path / "src", (tmp_path / "src").as_uri(), 5)
    with run_proxy(s3.endpoint, record=True) as proxy:
        use_settings(s3=S3Settings(proxy.url, "us-east-1", signed=True))
        repo = f"s3://{s3.repos_bucket}/stored"
        stackcube.build_cube(items, repo=repo, progress=False)
        proxy.heads.clear()
        repository = open_repository(repo)
        read_stored(readonly_session(repository, branch="main"), repo, repository)
        found: dict[str, int] = {}
        for head in proxy.heads:
            parts = head.split(b" ")[1].decode().split("?")[0].split("/")
            part = parts[3] if len(parts) > 3 else "/".join(parts)
            found[part] = found.get(part, 0) + 1
    assert found == {"repo": 3, "refs": 1, "config.yaml": 1, "snapshots": 1, "manifests": 5}


def _index(repository) -> None:
    """The cube's source table has the id index a build writes (:func:`stackcube.store.layout.id_index`): a hash
    of each row's item id, and the count of rows without STAC ``updated``."""
    from stackcube.store.layout import ID_INDEX, WITHOUT_UPDATED, id_hashes

    node = zarr.open_group(repository.readonly_session(branch="main").store, mode="r")["sources"]
    assert ID_INDEX in node, "the build wrote no id index"
    assert node[ID_INDEX][...].tolist() == id_hashes(str(i) for i in node["item_id"][...]).tolist()
    assert node[ID_INDEX].attrs[WITHOUT_UPDATED] == sum(1 for u in node["updated"][...] if not u)


def test_id_hashes_are_the_same_everywhere() -> None:
    """A cube written on one machine is read on another: the first 8 bytes of BLAKE2b, never Python's ``hash``
    (pinned: stored cubes hold these)."""
    from stackcube.store.layout import id_hashes

    hashes = id_hashes(["a", "a", ""])
    assert hashes.dtype == np.uint64
    assert hashes.tolist() == [3405396810240292928, 3405396810240292928, 13020603013274838756]


def test_a_cube_read_without_its_rows_reads_those_asked_for_through_its_id_index(demo_cube) -> None:
    repo, cube = demo_cube
    _index(cube.repository)
    repository = open_repository(repo)
    whole = read_stored(readonly_session(repository, branch="main"), repo, repository)
    stored = read_stored(readonly_session(repository, branch="main"), repo, repository, rows=False)
    assert stored.index is not None
    assert (stored.rows, stored.count, stored.all_updated) == ((), len(whole.rows), whole.all_updated)
    first = whole.rows[0].item_id
    found = stored.rows_of([first, "not stored"], repo)
    assert found.rows == tuple(r for r in whole.rows if r.item_id == first)
    assert found.read == len(found.rows) < len(whole.rows)  # those rows only
    assert stored.rows_of(["not stored"], repo) == ((), 0)
    assert stored.rows_of(None, repo) == (whole.rows, len(whole.rows))
    assert whole.rows_of([first], repo) == (found.rows, len(whole.rows))  # read whole already


def test_a_cube_without_an_id_index_or_with_a_stale_one_is_read_whole(demo_cube) -> None:
    """A cube written before the index has its rows read whole; so has one whose index an earlier stackcube's
    append left shorter than the table (its rows appended without their hashes)."""
    from stackcube.store.layout import ID_INDEX

    repo, cube = demo_cube
    repository = open_repository(repo)
    _index(cube.repository)  # the build wrote one
    rows = len(read_stored(readonly_session(repository, branch="main"), repo, repository).rows)
    session = cube.repository.writable_session("main")
    zarr.open_group(session.store, mode="r+")["sources"][ID_INDEX].resize((rows - 1,))
    session.commit("a stale index")
    assert read_stored(readonly_session(repository, branch="main"), repo, repository, rows=False).index is None

    session = cube.repository.writable_session("main")
    del zarr.open_group(session.store, mode="r+")["sources"][ID_INDEX]
    session.commit("no index")
    stored = read_stored(readonly_session(repository, branch="main"), repo, repository, rows=False)
    assert stored.index is None
    assert stored.count == len(stored.rows) == rows > 0
    first = stored.rows[0].item_id
    assert stored.rows_of([first], repo).read == len(stored.rows)


def test_rows_read_through_the_index_are_held_to_the_declared_containers(demo_cube) -> None:
    repo, cube = demo_cube
    _index(cube.repository)
    other = _name_another_host(cube.repository)
    repository = open_repository(repo)
    stored = read_stored(readonly_session(repository, branch="main"), repo, repository, rows=False)
    ids = [str(i) for i in zarr.open_group(readonly_session(repository).store, mode="r")["sources"]["item_id"][...]]
    assert stored.rows_of([ids[-1]], repo).rows  # another item's rows: read
    with pytest.raises(UntrustedSourceError, match=rf"^{repo}: its source table names {other}, under none of the"):
        stored.rows_of([ids[0]], repo)
