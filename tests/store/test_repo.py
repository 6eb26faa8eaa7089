"""Repositories (store.repo): containers for exactly the sources' prefixes, S3, given repositories, allow lists."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import rasterio

import stackcube
from stackcube.store import ONE_REQUEST, container_prefixes
from tests.twins import corpus_items, twin_items

pytestmark = [pytest.mark.corpus, pytest.mark.network]


def test_containers_are_exactly_the_source_prefixes() -> None:
    hrefs = ["http://h:1/a/b/x.tif", "http://h:1/a/c/y.tif", "s3://bucket/p/q/z.tif", "s3://bucket/p/q/w.tif"]
    assert container_prefixes(hrefs) == ["http://h:1/a/", "s3://bucket/p/q/"]


def test_cube_on_s3_of_sources_on_s3(s3, tmp_path) -> None:
    from tests.twins import upload_dir

    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:2]
    twins = twin_items(items, tmp_path / "twins", f"s3://{s3.sources_bucket}/twins", downscale=30, assets=["B04"])
    upload_dir(s3.client(), tmp_path / "twins", s3.sources_bucket, "twins")
    repo = f"s3://{s3.repos_bucket}/cubes/35mnm"
    cube = stackcube.build_cube(twins, assets=["B04"], repo=repo, progress=False)
    data = stackcube.open_cube(repo, mask_and_scale=False)["EPSG32735_300m/0"]["data"]
    for t in range(2):
        href = str(cube.plan.arrays[0].sources.href[cube.plan.arrays[0].source_index[t, 0, 0, 0]])
        key = href.removeprefix(f"s3://{s3.sources_bucket}/")
        local = tmp_path / "twins" / key.removeprefix("twins/")
        with rasterio.open(local) as ds:
            np.testing.assert_array_equal(data.isel(time=t, band=0).values, ds.read(1))
    listed = s3.client().list_objects_v2(Bucket=s3.repos_bucket, Prefix="cubes/35mnm/")
    assert listed["KeyCount"] > 0
    # no credential is written into the repository
    for obj in listed["Contents"]:
        body = s3.client().get_object(Bucket=s3.repos_bucket, Key=obj["Key"])["Body"].read()
        assert s3.secret_key.encode() not in body, obj["Key"]


def test_a_given_repository_gains_the_containers_its_sources_need(tmp_path) -> None:
    import icechunk

    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:1]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=30, assets=["B04"])
    config = icechunk.RepositoryConfig.default()
    config.storage = icechunk.StorageSettings(unsafe_use_conditional_update=False)
    repository = icechunk.Repository.create(icechunk.in_memory_storage(), config=config)
    assert not repository.config.virtual_chunk_containers
    cube = stackcube.build_cube(twins, assets=["B04"], repo=repository, progress=False)
    href = twins[0]["assets"]["B04"]["href"]
    assert list(cube.repository.config.virtual_chunk_containers) == [href.rsplit("/", 1)[0] + "/"]
    # chunks are fetched whole (one GET each), and the caller's other storage settings are kept
    storage = cube.repository.config.storage
    assert storage.concurrency.ideal_concurrent_request_size == ONE_REQUEST
    assert storage.unsafe_use_conditional_update is False
    data = cube.open(mask_and_scale=False)["EPSG32735_300m/0"]["data"]
    with rasterio.open(twins[0]["assets"]["B04"]["href"].removeprefix("file://")) as ds:
        np.testing.assert_array_equal(data.isel(time=0, band=0).values, ds.read(1))


def test_allow_lists_refuse_cubes_that_read_elsewhere(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import UntrustedSourceError

    catalog = write_demo_catalog(tmp_path / "demo")
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(catalog, repo=repo, progress=False)
    data_dir = (tmp_path / "demo" / "data").resolve().as_uri()
    with pytest.raises(UntrustedSourceError, match=re.escape("outside the allowed prefixes https://example.com/data/")):
        stackcube.open_cube(repo, allow=["https://example.com/data"])
    with pytest.raises(UntrustedSourceError):
        stackcube.refresh_cube(repo, allow=["https://example.com/data"], progress=False)
    tree = stackcube.open_cube(repo, allow=[data_dir])
    assert tree["EPSG32735_10m/0"]["data"].isel(time=0, band=0).values.shape == (512, 512)


def test_a_repository_url_stackcube_cannot_open_is_a_repository_error(capsys) -> None:
    from stackcube.cli import main
    from stackcube.errors import RepositoryError
    from stackcube.store import open_repository

    with pytest.raises(RepositoryError, match=r"repository 'ftp://host/cube': use a local path, an s3:// URL"):
        open_repository("ftp://host/cube")
    assert main(["info", "ftp://host/cube"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.fixture
def demo_cube(tmp_path):
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    cube = stackcube.build_cube(catalog, repo=tmp_path / "cube.icechunk", tag="june", progress=False)
    return catalog, tmp_path / "cube.icechunk", cube


def test_a_version_the_repository_lacks_is_named_with_the_ones_it_has(demo_cube, capsys) -> None:
    from stackcube.cli import main
    from stackcube.errors import VersionNotFoundError

    _, repo, _ = demo_cube
    has = r"\(its branches: main; its tags: june\)"
    with pytest.raises(VersionNotFoundError, match=rf"^{re.escape(str(repo))} has no tag 'nope' {has}$"):
        stackcube.open_cube(repo, tag="nope")
    with pytest.raises(VersionNotFoundError, match=rf"has no branch 'dev' {has}$"):
        stackcube.open_dataarray(repo, branch="dev")
    with pytest.raises(VersionNotFoundError, match=r"has no snapshot '1234567890ABCDEFGHJK' \(stackcube log"):
        stackcube.open_cube(repo, snapshot="1234567890ABCDEFGHJK")
    with pytest.raises(VersionNotFoundError, match=rf"has no branch 'dev' {has}$"):
        stackcube.refresh_cube(repo, branch="dev", progress=False)
    for command in (["info", str(repo), "--branch", "dev"], ["log", str(repo), "--branch", "dev"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"stackcube: error: {repo} has no branch 'dev' (its branches: main")
        assert err.count("\n") == 1


def test_a_build_on_a_new_branch_starts_it_at_main(demo_cube) -> None:
    catalog, repo, first = demo_cube
    dev = stackcube.build_cube(catalog, repo=repo, branch="dev", assets=["red"], progress=False)
    history = [s.id for s in dev.repository.ancestry(branch="dev")]
    assert history[:2] == [dev.snapshot_id, first.snapshot_id]
    assert dev.repository.lookup_branch("main") == first.snapshot_id
    assert list(stackcube.open_dataarray(repo, branch="dev").band.values) == ["red"]


def test_a_location_that_cannot_hold_a_repository_is_refused_before_any_header_is_read(tmp_path, capsys) -> None:
    from stackcube.cli import main
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import RepositoryError

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a repository")
    with pytest.raises(RepositoryError, match=r"notes.txt is a file, not an Icechunk repository"):
        stackcube.build_cube(catalog, repo=a_file, progress=False)
    with pytest.raises(RepositoryError, match=r"notes.txt is a file"):
        stackcube.open_cube(a_file)
    with pytest.raises(RepositoryError, match=r"demo is not empty and not an Icechunk repository"):
        stackcube.build_cube(catalog, repo=tmp_path / "demo", progress=False)
    assert a_file.read_text() == "not a repository"
    assert main(["build", catalog, "--repo", str(a_file), "--quiet"]) == 2
    assert main(["info", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2
    assert err.count("is a file, not an Icechunk repository") == 2


def test_containers_lost_to_other_writers_every_time_are_said(tmp_path, monkeypatch) -> None:
    """Saving the configuration gives up after SAVE_ATTEMPTS saves that other writers overwrote (provoked by
    having every read of the saved configuration come back without them: the race itself cannot be timed), and
    says so: the commit stands, stackcube reads it, and the warning names what other readers lack."""
    import icechunk

    import stackcube
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import StackcubeWarning
    from stackcube.store import repo as repo_module

    saves = []
    real_save = icechunk.Repository.save_config
    catalog = write_demo_catalog(tmp_path / "demo", dates=1, size=256)
    stackcube.build_cube(catalog, repo=tmp_path / "cube.icechunk", progress=False)  # (one it created is not read)
    monkeypatch.setattr(icechunk.Repository, "fetch_config", staticmethod(lambda storage: None))
    monkeypatch.setattr(icechunk.Repository, "save_config", lambda self: saves.append(1) or real_save(self))
    with pytest.warns(StackcubeWarning, match=r"the commit .* is done, but .*still lacks .* after 5 saves"):
        stackcube.build_cube(catalog, repo=tmp_path / "cube.icechunk", progress=False)
    assert len(saves) >= repo_module.SAVE_ATTEMPTS
    monkeypatch.undo()
    assert stackcube.open_dataarray(tmp_path / "cube.icechunk", "EPSG32735_10m").sizes["time"] == 1


def test_a_new_repository_is_created_without_looking_for_one_first(s3) -> None:
    """On object storage a look-up is 2 requests: a write creates the repository straight away (a listing checks
    the prefix is clean, then the snapshot, transaction log and repository info are written)."""
    import dataclasses

    from stackcube.settings import current
    from stackcube.store import open_repository
    from tests.services.proxy import run_proxy

    with run_proxy(s3.endpoint, record=True) as proxy:
        settings = current()
        settings = dataclasses.replace(settings, s3=dataclasses.replace(settings.s3, endpoint=proxy.url))
        open_repository(f"s3://{s3.repos_bucket}/created/new", create=True, settings=settings)
        asked = [head.split(b" ", 2)[:2] for head in proxy.heads]
    assert [method for method, _ in asked] == [b"GET", b"PUT", b"PUT", b"PUT"]
    assert b"list-type" in asked[0][1]


def test_a_repository_that_is_there_is_opened_by_a_write(tmp_path) -> None:
    from stackcube.store import open_repository

    first = open_repository(tmp_path / "r", create=True)
    snapshot = first.writable_session("main").commit("something", allow_empty=True)
    again = open_repository(tmp_path / "r", create=True, prefixes=["http://h:1/a/"])
    assert again.lookup_branch("main") == snapshot
    assert "http://h:1/a/" in (again.config.virtual_chunk_containers or {})


def test_a_build_does_not_read_back_the_configuration_it_created(tmp_path, monkeypatch) -> None:
    """A repository the build created declares its containers in the configuration it was created with: saving
    them after the commit reads nothing back (2 requests on object storage)."""
    import icechunk

    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo", dates=1, size=256)
    fetched = []
    monkeypatch.setattr(icechunk.Repository, "fetch_config", staticmethod(lambda storage: fetched.append(1)))
    cube = stackcube.build_cube(catalog, repo=tmp_path / "cube.icechunk", progress=False)
    monkeypatch.undo()
    assert not fetched
    saved = icechunk.Repository.fetch_config(icechunk.local_filesystem_storage(str(tmp_path / "cube.icechunk")))
    assert saved is not None
    assert set(saved.virtual_chunk_containers or {}) == set(cube.repository.config.virtual_chunk_containers or {})


def test_a_big_write_caches_a_bounded_number_of_references_and_saves_no_cache_setting(tmp_path, monkeypatch) -> None:
    """Icechunk caches every manifest a commit writes (15 million references by default, about 85 bytes each), and
    ``reopen`` keeps the old caches whatever the new configuration says: a build in stages opens the repository
    afresh with a cache of WRITE_CACHED_REFS. The setting stays in memory: the saved configuration, which other
    readers open, keeps Icechunk's default."""
    import icechunk
    from benchmarks.cube_bench import synthetic_sources

    from stackcube.cube import plan_sources
    from stackcube.search import Query
    from stackcube.store import write, write_plan
    from stackcube.store.repo import WRITE_CACHED_REFS

    default = icechunk.CachingConfig().num_chunk_refs
    assert default is None or default > WRITE_CACHED_REFS
    opened: list[tuple[bool, icechunk.Repository]] = []
    for_writing = write.for_writing

    def spied(*args, big=False, **kwargs):
        opened.append((big, repository := for_writing(*args, big=big, **kwargs)))
        return repository

    monkeypatch.setattr(write, "for_writing", spied)
    sources = synthetic_sources(300, 4, 5)
    plan = plan_sources(Query(catalog=None), sources)
    refs = sum(level.n_chunks for a in plan.arrays for level in a.levels)
    repo = tmp_path / "cube.icechunk"
    write_plan(plan, repo)  # one commit
    monkeypatch.setattr(write, "STAGE_ABOVE", refs // 2)
    monkeypatch.setattr(write, "STAGE_REFS", refs // 3)
    # sources under a prefix the repository does not declare yet: the write saves the configuration again
    moved = [
        dataclasses.replace(s, manifest=dataclasses.replace(s.manifest, href=s.manifest.href.replace("/s2/", "/s2b/")))
        for s in sources
    ]
    write_plan(plan_sources(Query(catalog=None), moved), repo)  # in stages
    (small, one), (big, staged) = opened
    assert (small, big) == (False, True)
    assert one.config.caching is None  # Icechunk's default
    assert staged.config.caching.num_chunk_refs == WRITE_CACHED_REFS
    assert staged.config.manifest.splitting is not None  # the rest of the write's configuration kept
    saved = icechunk.Repository.fetch_config(icechunk.local_filesystem_storage(str(repo)))
    assert saved is not None
    assert "file:///data/s2b/" in (saved.virtual_chunk_containers or {})  # saved again, by the staged write
    assert saved.caching is None  # not the write's cache
    assert saved.manifest is None or saved.manifest.splitting is None  # nor its splitting
    assert stackcube.open_dataarray(repo).sizes["time"] == plan.arrays[0].shape[0]


def test_a_branch_tip_is_its_snapshot_and_none_where_there_is_none(demo_cube, tmp_path) -> None:
    from stackcube.store import branch_tip, open_repository

    _, repo, cube = demo_cube
    repository = open_repository(repo, reading=True)
    assert branch_tip(repo, "main") == branch_tip(repository, "main") == cube.snapshot_id
    assert branch_tip(repository, "nope") is None
    assert branch_tip(tmp_path / "nothing-here", "main") is None
