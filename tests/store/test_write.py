"""Writing cubes (store.write): bit-exact values, overview levels with multiscales metadata, one GET per chunk,
atomic commits."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr

import stackcube
from stackcube.store import CubeMetadata, write_plan
from tests.conftest import ROOT
from tests.store.conftest import ASSETS
from tests.twins import read_served

pytestmark = [pytest.mark.corpus, pytest.mark.network]


def test_build_and_open_are_bit_exact(served_twins, nginx, tmp_path) -> None:
    proxy, twins = served_twins
    cube = stackcube.build_cube(twins, assets=ASSETS, repo=tmp_path / "cube.icechunk", progress=False, tag="v1")
    tree = stackcube.open_cube(tmp_path / "cube.icechunk", mask_and_scale=False)
    assert sorted(tree.children) == sorted([*(a.name for a in cube.plan.arrays), "sources"])
    assert CubeMetadata.from_attrs(tree.attrs).arrays == tuple(a.name for a in cube.plan.arrays)
    for array in cube.plan.arrays:
        assert sorted(tree[array.name].children, key=int) == [str(n) for n in range(1 + len(array.overviews))]
        for n, level in enumerate(array.levels):
            node = tree[f"{array.name}/{n}"]
            assert node["data"].dims == ("time", "band", "y", "x")
            assert node["data"].shape == level.shape
            assert node["data"].chunks is not None
            for t in range(level.shape[0]):
                for b in range(level.shape[1]):
                    href = str(node["source_href"].values[t, b])
                    expected = read_served(href, nginx.root, proxy.url, level=n)
                    np.testing.assert_array_equal(node["data"].isel(time=t, band=b).values, expected)
    assert tree["EPSG32735_100m/0"]["spatial_ref"].attrs["GeoTransform"].startswith("499980.0 100.0")
    assert tree["EPSG32735_100m/1"]["spatial_ref"].attrs["GeoTransform"].startswith("499980.0 200.0")


def test_overviews_are_levels_with_multiscales_metadata(served_twins, nginx, tmp_path) -> None:
    proxy, twins = served_twins
    cube = stackcube.build_cube(twins, assets=ASSETS, repo=tmp_path / "cube.icechunk", progress=False)
    array = next(a for a in cube.plan.arrays if a.name == "EPSG32735_100m")
    first = array.sources.href[0]
    with rasterio.open(nginx.root / first.removeprefix(proxy.url + "/")) as ds:
        factors = ds.overviews(1)
    assert len(array.overviews) == len(factors) >= 1
    tree = stackcube.open_cube(tmp_path / "cube.icechunk")
    attrs = tree["EPSG32735_100m"].attrs
    assert attrs["proj:code"] == "EPSG:32735"
    assert {c["name"] for c in attrs["zarr_conventions"]} >= {"multiscales"}
    layout = attrs["multiscales"]["layout"]
    assert [entry["asset"] for entry in layout] == [str(n) for n in range(1 + len(factors))]
    assert layout[1]["derived_from"] == "0"
    assert layout[1]["transform"]["scale"] == [2.0, 2.0]
    full, half = tree["EPSG32735_100m/0"], tree["EPSG32735_100m/1"]
    assert layout[1]["spatial:shape"] == [half.sizes["y"], half.sizes["x"]]
    # every level carries the same time steps, bands and provenance; rasterio's overview grid is the level's grid
    for name in ("time", "band", "id", "source_href", "source_etag"):
        np.testing.assert_array_equal(full[name].values, half[name].values)
    href = str(half["source_href"].values[0, 0])
    with rasterio.open(nginx.root / href.removeprefix(proxy.url + "/"), overview_level=0) as ds:
        assert tuple(ds.transform)[:6] == tuple(layout[1]["spatial:transform"])
        np.testing.assert_allclose(half.x.values[:3], ds.xy(0, np.arange(3))[0])
    assert f"{len(factors)} overview levels" in cube.plan.report()
    # reading the coarsest level costs one GET per tile of it, and no header
    coarsest = tree[f"EPSG32735_100m/{len(factors)}"]["data"]
    proxy.reset()
    assert coarsest.isel(time=0).values.shape == coarsest.shape[1:]
    tiles = int((array.overviews[-1].source_index[0] >= 0).sum())
    assert proxy.stats["GET"] == proxy.stats["requests"] == tiles


def test_reads_cost_one_get_per_touched_chunk_and_no_header(served_twins, tmp_path) -> None:
    proxy, twins = served_twins
    stackcube.build_cube(twins, assets=ASSETS, repo=tmp_path / "cube.icechunk", progress=False)
    data = stackcube.open_cube(tmp_path / "cube.icechunk", mask_and_scale=False)["EPSG32735_100m/0"]["data"]
    proxy.reset()
    window = data.isel(time=slice(0, 2), band=slice(0, 3), y=slice(100, 600), x=slice(0, 10)).values
    assert window.shape == (2, 3, 500, 10)
    touched = 2 * 3 * 2 * 1  # 2 dates x 3 bands x tile rows 0-1 x tile column 0 (512-px tiles)
    assert proxy.stats["GET"] == touched
    assert proxy.stats["requests"] == touched  # no HEAD, no header read


KILLED_WRITER = """
import sys, threading
from benchmarks.cube_bench import synthetic_sources
from stackcube.cube import plan_sources
from stackcube.store import write, write_plan
from stackcube.search import Query

def say(moment):
    print(moment, flush=True)

set_refs = write.set_refs
def said_once(*args, **kwargs):  # the first references are in (on the scratch branch, when staged)
    set_refs(*args, **kwargs)
    if write.set_refs is said_once:
        write.set_refs = set_refs
        say("references")

def held(*args, **kwargs):  # every reference is written: the commit (staged, the last amend and the move) is next
    say("committing")
    threading.Event().wait()  # until killed: no kill can come after the branch moved

give_back = write._give_back_memory
def staged():  # a stage is committed on the scratch branch, the next one's references are to be written
    give_back()
    if write._give_back_memory is staged and sys._getframe(1).f_code.co_name == "_in_stages":  # not the table's
        write._give_back_memory = give_back
        say("staged")

write.STAGE_REFS = write.STAGE_ABOVE = int(sys.argv[3])
write.set_refs, write.commit, write._commit_forked, write._give_back_memory = said_once, held, held, staged
plan = plan_sources(Query(catalog=None), synthetic_sources(int(sys.argv[2]), 4, 5))
say("writing")
write_plan(plan, sys.argv[1], progress=True)
say("committed")
"""

MOMENTS = ("writing", "references", "staged", "committing")
"""What the killed writer says, in order: the write starts; its first references are in; (in stages) its first stage
is committed on its scratch branch; every reference is written and it waits at the commit. It is killed when it says
one of them."""


@pytest.mark.parametrize("stages", [False, True])
def test_a_write_killed_mid_way_leaves_the_branch_where_it_was(tmp_path, stages) -> None:
    """Killed at different moments of one commit, or of a build committed in stages (snapshots on a scratch branch
    that the branch moves to at the end), between two of them too: the branch is where it was, and the next write
    succeeds. The writer says when it reaches each moment (:data:`MOMENTS`) and is killed then, however fast the
    machine is."""
    import signal
    import threading

    from benchmarks.cube_bench import synthetic_sources

    from stackcube.cube import plan_sources
    from stackcube.search import Query
    from stackcube.store import open_repository, write_plan
    from stackcube.store.scratch import SCRATCH

    repo = tmp_path / "cube.icechunk"
    small = plan_sources(Query(catalog=None), synthetic_sources(10, 4, 5))
    _, first = write_plan(small, repo)
    for moment in MOMENTS if stages else [m for m in MOMENTS if m != "staged"]:
        log = tmp_path / f"{moment}.stderr"
        with (
            log.open("w") as stderr,
            subprocess.Popen(
                # 2000 dates: four manifest pieces, so a staged write commits on its scratch branch three times
                [sys.executable, "-c", KILLED_WRITER, str(repo), "2000", "20000" if stages else "100000000"],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=ROOT,
            ) as child,
        ):
            assert child.stdout is not None
            watchdog = threading.Timer(600, child.kill)  # only bounds a hang: the writer says it long before
            watchdog.start()
            said: list[str] = []
            try:
                while moment not in said and (line := child.stdout.readline()):
                    said.append(line.strip())
            finally:
                watchdog.cancel()
            assert moment in said, f"the writer did not say {moment!r}: {said}\n{log.read_text()[-2000:]}"
            child.send_signal(signal.SIGKILL)
            child.wait(60)
            assert child.returncode == -signal.SIGKILL
            assert "committed" not in said + child.stdout.read().split()
        assert open_repository(repo).lookup_branch("main") == first
        assert stackcube.open_dataarray(repo).sizes["time"] == 10
    # what the killed builds left: scratch branches only (one each, when staged, once the references were being
    # written), at snapshots no other branch has
    left = {b: open_repository(repo).lookup_branch(b) for b in open_repository(repo).list_branches() if b != "main"}
    assert all(b.startswith(SCRATCH) and snapshot != first for b, snapshot in left.items())
    assert len(left) >= 3 if stages else not left
    _, second = write_plan(plan_sources(Query(catalog=None), synthetic_sources(20, 4, 5)), repo)
    assert open_repository(repo).lookup_branch("main") == second
    assert stackcube.open_dataarray(repo).sizes["time"] == 20


def test_an_existing_tag_is_refused_before_anything_is_committed(tmp_path, capsys) -> None:
    from stackcube.cli import main
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import RepositoryError
    from tests.test_refresh import add_late_item

    catalog = write_demo_catalog(tmp_path / "demo", dates=3, size=256)
    repo = tmp_path / "cube.icechunk"
    first = stackcube.build_cube(catalog, repo=repo, tag="june", progress=False)
    with pytest.raises(RepositoryError, match=r"already has a tag 'june' .*nothing was committed"):
        stackcube.build_cube(catalog, repo=repo, tag="june", progress=False)
    history = [s.id for s in first.repository.ancestry(branch="main")]
    assert history[0] == first.snapshot_id  # the branch did not move
    add_late_item(catalog)
    with pytest.raises(RepositoryError, match="already has a tag 'june'"):
        stackcube.refresh_cube(repo, tag="june", progress=False)
    assert [s.id for s in first.repository.ancestry(branch="main")] == history
    assert main(["build", catalog, "--repo", str(repo), "--tag", "june", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stackcube: error: ")
    assert err.count("\n") == 1
    assert main(["refresh", str(repo), "--tag", "june", "--quiet"]) == 2
    assert [s.id for s in first.repository.ancestry(branch="main")] == history
    assert main(["refresh", str(repo), "--tag", "july", "--quiet"]) == 0  # a new tag: the refresh commits


def test_a_tag_that_cannot_be_created_takes_the_commit_back(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import RepositoryError

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    repo = tmp_path / "cube.icechunk"
    first = stackcube.build_cube(catalog, repo=repo, tag="old", progress=False)
    first.repository.delete_tag("old")  # Icechunk never gives a deleted tag's name again
    with pytest.raises(RepositoryError, match=r"tag 'old' could not be created .*nothing was committed to main"):
        stackcube.build_cube(catalog, repo=repo, tag="old", progress=False)
    assert first.repository.lookup_branch("main") == first.snapshot_id
    with pytest.raises(RepositoryError, match=r"tag 'old' could not be created"):
        stackcube.build_cube(catalog, repo=repo, branch="dev", tag="old", progress=False)
    assert set(first.repository.list_branches()) == {"main"}  # the branch this write started is gone again


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_two_processes_building_at_once_leave_readable_cubes(storage, nginx, s3, tmp_path) -> None:
    """Two processes build into one repository at once, 30 times (15 new repositories, each raced into twice: new,
    then holding the previous winner's cube), with their sources on two hosts (so each declares its own virtual
    chunk container): every build that reports success reads back fully, and the other one gets
    ConcurrentUpdateError."""
    import multiprocessing
    from collections import Counter
    from concurrent.futures import ProcessPoolExecutor

    import rasterio

    from tests.services.proxy import run_proxy
    from tests.store import racers
    from tests.twins import series

    with run_proxy(nginx.url) as other_host:  # another scheme://host:port in front of the same files
        items = {
            "a": series(nginx.root / "race-a", f"{nginx.url}/race-a", 3),
            "b": series(nginx.root / "race-b", f"{other_host.url}/race-b", 3),
        }
        expected = {}
        for who in items:
            files = [nginx.root / f"race-{who}" / f"s{n}.tif" for n in range(3)]
            expected[who] = np.stack([rasterio.open(f).read() for f in files])
        context = multiprocessing.get_context("spawn")
        outcomes: Counter[str] = Counter()
        with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
            for run in range(30):
                n = run // 2
                repo = str(tmp_path / f"race-{n}") if storage == "local" else f"s3://{s3.repos_bucket}/race/{n}"
                barrier = manager.Barrier(2)
                futures = {who: pool.submit(racers.build, items[who], repo, barrier) for who in items}
                results = {who: f.result(timeout=120) for who, f in futures.items()}
                assert any(kind == "ok" for kind, _ in results.values()), f"run {run}: nobody committed: {results}"
                for who, (kind, detail) in results.items():
                    outcomes[kind] += 1
                    if kind != "ok":
                        assert kind == "ConcurrentUpdateError", f"run {run}, {who}: {kind}: {detail}"
                        continue
                    data = stackcube.open_dataarray(repo, snapshot=detail, mask_and_scale=False).values
                    np.testing.assert_array_equal(data, expected[who], err_msg=f"run {run}, {who}")
    assert outcomes["ok"] >= 30, outcomes


KILL_AT = {
    "after the repository is created": "stackcube.store.write._start_branch",
    "while writing references": "stackcube.store.write.set_refs",
    "at the commit": "icechunk.session.Session.commit",
    "after the commit": "stackcube.store.write.save_containers",
}

_KILLED_BUILD = """
import json, os, signal, sys
import importlib
target = sys.argv[1]
module_name, _, name = target.rpartition(".")
try:
    owner = importlib.import_module(module_name)
except ModuleNotFoundError:  # a method: module.Class.method
    module_name, _, cls = module_name.rpartition(".")
    owner = getattr(importlib.import_module(module_name), cls)
setattr(owner, name, lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))
import stackcube
stackcube.build_cube(json.loads(open(sys.argv[2]).read()), repo=sys.argv[3], progress=False)
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackcube.cli", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("stage", list(KILL_AT))
def test_a_first_build_killed_at_any_stage_is_reported_and_rebuilt(stage, nginx, tmp_path) -> None:
    """SIGKILL at every stage of a first build: the repository then says what it holds (no cube yet, and what to
    do; or the committed cube), ``stackcube info`` exits 2 or 0 with one line, never a traceback, and a build
    into it again succeeds."""
    import json

    from stackcube.errors import RepositoryError
    from tests.twins import series

    items = series(nginx.root / "killed", f"{nginx.url}/killed", 2)
    (tmp_path / "items.json").write_text(json.dumps(items))
    repo = tmp_path / "cube.icechunk"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BUILD, KILL_AT[stage], str(tmp_path / "items.json"), str(repo)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    committed = stage == "after the commit"
    info = subprocess.run(
        [sys.executable, "-m", "stackcube.cli", "info", str(repo)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if committed:
        assert info.returncode == 0, info.stderr
        assert stackcube.open_dataarray(repo).shape == (2, 1, 256, 256)
    else:
        assert info.returncode == 2
        assert info.stderr.count("\n") == 1, info.stderr
        assert "holds no cube yet" in info.stderr
        assert "run the build again" in info.stderr
        with pytest.raises(RepositoryError, match="holds no cube yet"):
            stackcube.open_cube(repo)
        refresh = _cli("refresh", str(repo))
        assert refresh.returncode == 2
        assert "holds no cube yet" in refresh.stderr
    stackcube.build_cube(items, repo=repo, progress=False)
    data = stackcube.open_dataarray(repo, mask_and_scale=False)
    assert data.shape == (2, 1, 256, 256)
    with rasterio.open(nginx.root / "killed" / "s1.tif") as ds:
        np.testing.assert_array_equal(data.isel(time=1, band=0).values, ds.read(1))


def test_a_task_of_the_workers_writes_a_block_of_references_not_of_pixels() -> None:
    """Blocks for workers hold about BLOCK_REFS references: a Sentinel-2-like level (10 bands of 11 x 11 tiles a
    date) gets 206 dates a task, not one (its 10 x 11,264 x 11,264 pixels a date are more than BLOCK_REFS)."""
    from benchmarks.cube_bench import synthetic_sources

    from stackcube.grid import grid_key
    from stackcube.plan import build_array
    from stackcube.store.write import BLOCK_REFS, block_steps, refs_of

    sources = synthetic_sources(300, 10, 11)
    level = build_array("A", grid_key(sources[0]), sources).levels[0]
    per_step = 10 * 11 * 11
    assert level.n_chunks == 300 * per_step
    assert block_steps(level) == BLOCK_REFS // per_step == 206
    blocks = refs_of(level, "A/0", steps=block_steps(level))
    assert [b.count for b in blocks] == [206 * per_step, 94 * per_step]


def test_references_written_on_a_cluster_make_the_cube_of_one_process(cluster, tmp_path, monkeypatch) -> None:
    """The workers write the references into forks of one session, merged and committed once: the same values,
    coordinates and sources as a write in this process, one commit on the branch, no scratch branch left."""
    from distributed import get_task_stream

    import stackcube
    from stackcube.demo import write_demo_catalog
    from stackcube.store import read_stored, write

    monkeypatch.setattr(write, "BLOCK_REFS", 16)  # many blocks: a date of the 10 m array, more of its overviews
    plan = stackcube.plan_cube(write_demo_catalog(tmp_path / "demo", dates=4, size=512), progress=False)
    here, _ = write_plan(plan, tmp_path / "here.icechunk")
    with get_task_stream(cluster) as tasks:
        there, snapshot = write_plan(plan, tmp_path / "there.icechunk", workers=cluster)
    blocks = [t for t in tasks.data if "_write_block" in str(t["key"])]
    # blocks of BLOCK_REFS references (not pixels: a date's pixels are many more, which made a task per date)
    expected = [-(-level.shape[0] // max(1, 16 // level.step_chunks)) for a in plan.arrays for level in a.levels]
    assert len(blocks) == sum(expected) > 4
    assert [s.message for s in there.ancestry(branch="main")][1:] == ["Repository initialized"]
    assert there.list_branches() == {"main"}
    assert there.lookup_branch("main") == snapshot
    mine = stackcube.open_cube(tmp_path / "here.icechunk", mask_and_scale=False)
    theirs = stackcube.open_cube(tmp_path / "there.icechunk", mask_and_scale=False)
    for path in mine.subtree:
        if path.has_data:
            xr.testing.assert_identical(theirs[path.path].to_dataset().load(), path.to_dataset().load())
    stored = [read_stored(r.readonly_session(branch="main")).sources for r in (here, there)]
    assert [s.manifest.to_dict() for s in stored[0]] == [s.manifest.to_dict() for s in stored[1]]


def test_a_commit_by_another_writer_during_a_cluster_write_leaves_nothing_of_it(cluster, tmp_path, monkeypatch) -> None:
    import stackcube
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import ConcurrentUpdateError
    from stackcube.store import write

    plan = stackcube.plan_cube(write_demo_catalog(tmp_path / "demo", dates=2, size=256), progress=False)
    repository, _ = write_plan(plan, tmp_path / "cube.icechunk")
    merged = write._write_on_workers

    def meanwhile(*args, **kwargs):
        session = merged(*args, **kwargs)
        other = repository.writable_session("main")
        zarr.open_group(other.store, mode="a").attrs["meanwhile"] = True
        other.commit("another writer")
        return session

    monkeypatch.setattr(write, "_write_on_workers", meanwhile)
    with pytest.raises(ConcurrentUpdateError, match="another writer committed to branch main first"):
        write_plan(plan, tmp_path / "cube.icechunk", workers=cluster)
    assert next(s.message for s in repository.ancestry(branch="main")) == "another writer"
    assert repository.list_branches() == {"main"}


@pytest.mark.network
def test_a_cluster_writes_the_references_of_a_cube_on_s3(s3, tmp_path) -> None:
    """The forks travel to the workers and back with the repository's storage (moto's S3), and merge there. The
    workers read the repository with their own environment's credentials (the cluster starts with the S3
    environment set, as a real one is deployed with it)."""
    from distributed import Client, LocalCluster

    import stackcube
    from stackcube.demo import write_demo_catalog

    plan = stackcube.plan_cube(write_demo_catalog(tmp_path / "demo", dates=2, size=256), progress=False)
    repo = f"s3://{s3.repos_bucket}/cluster-written"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local,
        Client(local, set_as_default=False) as client,
    ):
        repository, _ = write_plan(plan, repo, workers=client)
    assert len(list(repository.ancestry(branch="main"))) == 2
    write_plan(plan, tmp_path / "local.icechunk")
    for array in plan.arrays:
        xr.testing.assert_identical(
            stackcube.open_dataarray(repo, array=array.name, mask_and_scale=False).load(),
            stackcube.open_dataarray(tmp_path / "local.icechunk", array=array.name, mask_and_scale=False).load(),
        )


def _hold_blocks(gate: str) -> int:
    """Run on a worker: each reference block it starts says so (a file ``<gate>.<pid>``) and waits until the file
    ``gate`` exists; returns the worker's process id."""
    import os
    import time
    from pathlib import Path

    from stackcube.store import write

    real = write._write_block

    def held(fork, refs):  # write._write_block, waiting
        Path(f"{gate}.{os.getpid()}").touch()
        while not Path(gate).exists():
            time.sleep(0.01)
        return real(fork, refs)

    write._write_block = held
    return os.getpid()


def test_a_worker_killed_while_writing_references_has_its_blocks_written_again(tmp_path, monkeypatch) -> None:
    """One of two workers dies with reference blocks in flight: Dask runs them again from the same forks on the
    other, and the one commit holds every reference (the cube equals one written in this process). The workers'
    blocks wait, once started, until the worker is gone, so its block is in flight however fast the machine is."""
    import threading
    import time

    from distributed import Client, LocalCluster

    from stackcube.store import write
    from tests.test_sources import _die
    from tests.twins import series

    def wait_for(condition, what: str) -> None:
        deadline = time.monotonic() + 120  # only bounds a hang
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)

    items = series(tmp_path / "series", str(tmp_path / "series"), 60, size=256, blocksize=16)
    plan = stackcube.plan_cube(items, progress=False)
    write_plan(plan, tmp_path / "here.icechunk")
    monkeypatch.setattr(write, "BLOCK_REFS", 256)  # a date of 16 x 16 tiles a block: many small tasks
    done: dict[str, object] = {}
    gate = tmp_path / "gate"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local,
        Client(local, set_as_default=False) as client,
    ):
        workers = {pid: address for address, pid in client.run(_hold_blocks, str(gate)).items()}

        def build() -> None:
            try:
                done["written"] = write_plan(plan, tmp_path / "there.icechunk", workers=client)
            except Exception as exc:  # reported below
                done["error"] = exc

        thread = threading.Thread(target=build)
        thread.start()
        wait_for(lambda: list(tmp_path.glob("gate.*")), "no block started")
        busy = workers[int(next(tmp_path.glob("gate.*")).suffix[1:])]
        client.run(_die, workers=[busy], wait=False)  # its block waits: the process dies with it in flight
        wait_for(lambda: busy not in client.scheduler_info()["workers"], "the killed worker is still there")
        gate.touch()
        thread.join(timeout=180)
        assert busy not in client.scheduler_info()["workers"]
    assert "error" not in done, done.get("error")
    repository, _ = done["written"]  # type: ignore[misc]
    assert len(list(repository.ancestry(branch="main"))) == 2
    for array in plan.arrays:
        xr.testing.assert_identical(
            stackcube.open_dataarray(tmp_path / "there.icechunk", array=array.name, mask_and_scale=False).load(),
            stackcube.open_dataarray(tmp_path / "here.icechunk", array=array.name, mask_and_scale=False).load(),
        )


def test_scratch_branches_a_killed_build_left_are_removed_by_the_next_once_their_lease_ran_out(
    cluster, tmp_path, monkeypatch
) -> None:
    """A scratch branch is judged by its tip, which its build writes again at every stage, never by the time in its
    name (a build may run for more than a day): one named two days ago whose tip was written now is kept; once its
    tip is older than SCRATCH_AGE, the next build on workers removes it."""
    from datetime import UTC, datetime, timedelta

    import stackcube
    from stackcube.demo import write_demo_catalog
    from stackcube.store import scratch as scratch_module
    from stackcube.store.scratch import SCRATCH

    plan = stackcube.plan_cube(write_demo_catalog(tmp_path / "demo", dates=2, size=256), progress=False)
    repository, first = write_plan(plan, tmp_path / "cube.icechunk")
    named_old = f"{SCRATCH}{datetime.now(UTC) - timedelta(days=2):%Y%m%dT%H%M%S}-dead0000"
    repository.create_branch(named_old, first)  # its tip: the commit just made
    write_plan(plan, tmp_path / "cube.icechunk", workers=cluster)
    assert repository.list_branches() == {"main", named_old}
    monkeypatch.setattr(scratch_module, "SCRATCH_AGE", timedelta(0))  # every tip is now older than a lease
    write_plan(plan, tmp_path / "cube.icechunk", workers=cluster)
    assert repository.list_branches() == {"main"}  # removed; the build's own, held while it wrote, kept till its end


def _staged_in_stages(monkeypatch) -> None:
    """Builds of the demo data in stages: an amend of the scratch branch per date of the 10 m array at least."""
    from stackcube.store import layout
    from stackcube.store import write as write_module

    monkeypatch.setattr(write_module, "STAGE_REFS", 16)
    monkeypatch.setattr(write_module, "STAGE_ABOVE", 16)
    monkeypatch.setattr(layout, "MANIFEST_REFS", 16)


def _scratch_tip(repo) -> tuple[str, object]:
    """The one scratch branch of ``repo``, and when its tip was written."""
    from stackcube.store import open_repository
    from stackcube.store.scratch import SCRATCH

    repository = open_repository(repo)
    (scratch,) = (b for b in repository.list_branches() if b.startswith(SCRATCH))
    return scratch, repository.lookup_snapshot(repository.lookup_branch(scratch)).written_at


def test_a_builds_own_scratch_branch_is_never_removed_by_another_build_during_its_write(tmp_path, monkeypatch) -> None:
    """A build held between two stages while another build of the same process runs from start to end, every lease
    taken as run out (SCRATCH_AGE 0): the other build leaves the held build's scratch branch alone (this process
    holds it), and the held build then commits. Its lease was renewed at every stage."""
    import threading
    from datetime import timedelta

    from stackcube.demo import write_demo_catalog
    from stackcube.store import open_repository
    from stackcube.store import scratch as scratch_module
    from stackcube.store import write as write_module

    plan = stackcube.plan_cube(write_demo_catalog(tmp_path / "demo", dates=5, size=512), progress=False)
    repo = tmp_path / "cube.icechunk"
    write_plan(plan, repo)
    _staged_in_stages(monkeypatch)
    monkeypatch.setattr(scratch_module, "SCRATCH_AGE", timedelta(0))
    held, go = threading.Event(), threading.Event()
    leases: list[tuple[str, object]] = []
    set_refs = write_module.set_refs

    def stage(*args, **kwargs):
        if threading.current_thread().name == "held build":
            leases.append(_scratch_tip(repo))
            if len(leases) == 3:  # two stages in
                held.set()
                go.wait(timeout=300)
        return set_refs(*args, **kwargs)

    monkeypatch.setattr(write_module, "set_refs", stage)
    done: dict[str, object] = {}

    def build() -> None:
        try:
            done["written"] = write_plan(plan, repo)
        except BaseException as exc:  # reported below
            done["error"] = exc

    thread = threading.Thread(target=build, name="held build")
    thread.start()
    try:
        assert held.wait(timeout=300), "the held build did not reach its third stage"
        (scratch, _), *_ = leases
        _, other = write_plan(plan, repo, branch="other")  # in stages too: its start removes stale scratch branches
        assert open_repository(repo).list_branches() == {"main", "other", scratch}
    finally:
        go.set()
        thread.join(timeout=300)
    assert "error" not in done, done.get("error")
    _, snapshot = done["written"]  # type: ignore[misc]
    assert open_repository(repo).lookup_branch("main") == snapshot != other
    assert open_repository(repo).list_branches() == {"main", "other"}
    assert {name for name, _ in leases} == {scratch}
    written = [when for _, when in leases]
    assert written == sorted(written)
    assert len(set(written)) > 3  # renewed by every stage (the blocks of one stage see one tip)


PAUSED_WRITER = """
import sys
from datetime import datetime, timedelta
from stackcube.store import layout, scratch, write, write_plan
import stackcube

write.STAGE_REFS = write.STAGE_ABOVE = layout.MANIFEST_REFS = 16
set_refs = write.set_refs
calls = []
def stage(*args, **kwargs):
    calls.append(None)
    if len(calls) == 3:  # two stages in: its scratch branch's tip written by the last
        print("held", flush=True)
        sys.stdin.readline()
    return set_refs(*args, **kwargs)

write.set_refs = stage


class TwoDaysAgo(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) - timedelta(days=2)


scratch.datetime = TwoDaysAgo  # its scratch branch's name says two days old: only the lease can keep it
plan = stackcube.plan_cube(sys.argv[2], progress=False)
_, snapshot = write_plan(plan, sys.argv[1])
print("committed", snapshot, flush=True)
"""


def test_a_build_in_another_process_keeps_its_scratch_branch_while_its_lease_runs(tmp_path, monkeypatch) -> None:
    """Across processes the lease alone protects a build: one held between two stages in another process keeps its
    scratch branch, whose name says two days old, while a build here runs from start to end, then commits."""
    import threading
    from datetime import UTC, datetime, timedelta

    from stackcube.demo import write_demo_catalog
    from stackcube.store import open_repository
    from stackcube.store.scratch import SCRATCH

    catalog = write_demo_catalog(tmp_path / "demo", dates=5, size=512)
    plan = stackcube.plan_cube(catalog, progress=False)
    repo = tmp_path / "cube.icechunk"
    write_plan(plan, repo)
    with subprocess.Popen(
        [sys.executable, "-c", PAUSED_WRITER, str(repo), str(catalog)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        watchdog = threading.Timer(600, child.kill)  # only bounds a hang: the writer says it long before
        watchdog.start()
        try:
            said = child.stdout.readline().strip()
            assert said == "held", f"the writer said {said!r}: {child.stderr.read()[-2000:] if child.stderr else ''}"
            scratch, _ = _scratch_tip(repo)
            named = datetime.strptime(scratch.removeprefix(SCRATCH).split("-")[0], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            assert datetime.now(UTC) - named > timedelta(days=1)  # older than a lease, by its name
            _staged_in_stages(monkeypatch)
            write_plan(plan, repo, branch="other")  # its start removes stale scratch branches
            assert open_repository(repo).list_branches() == {"main", "other", scratch}
            out, err = child.communicate("go\n", timeout=300)
        finally:
            watchdog.cancel()
    assert child.returncode == 0, err[-2000:]
    (snapshot,) = (line.split()[1] for line in out.splitlines() if line.startswith("committed"))
    assert open_repository(repo).lookup_branch("main") == snapshot
    assert open_repository(repo).list_branches() == {"main", "other"}


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_a_build_committed_in_stages_is_the_cube_of_one_commit(tmp_path, monkeypatch, request, storage) -> None:
    """Above ``STAGE_ABOVE`` references a build commits in stages of at most ``STAGE_REFS`` (snapshots on a scratch
    branch, the build's commit on the last): the same cube, the build's commit on top of its stages, each
    holding no more than a stage's references, on top of the branch's snapshot, and no scratch branch left; on local
    disk and S3."""
    from stackcube.demo import write_demo_catalog
    from stackcube.store import layout, open_repository
    from stackcube.store import write as write_module
    from stackcube.store.repo import STAGE_METADATA
    from tests.store.test_append import _assert_same, _tree

    catalog = write_demo_catalog(tmp_path / "demo", dates=5, size=512)
    whole = tmp_path / "whole.icechunk"
    stackcube.build_cube(catalog, repo=whole, progress=False)
    staged = tmp_path / "staged.icechunk"
    if storage == "s3":
        staged = f"s3://{request.getfixturevalue('s3').repos_bucket}/staged"
    stackcube.build_cube(catalog, repo=staged, progress=False)  # a first build: the staged one replaces it
    monkeypatch.setattr(write_module, "STAGE_REFS", 16)  # one date of the 10 m array a stage
    monkeypatch.setattr(write_module, "STAGE_ABOVE", 16)
    monkeypatch.setattr(layout, "MANIFEST_REFS", 16)
    repository = open_repository(staged)
    before = repository.lookup_branch("main")
    cube = stackcube.build_cube(catalog, repo=staged, progress=False)
    repository = open_repository(staged)
    ancestry = list(repository.ancestry(branch="main"))
    assert ancestry[0].id == cube.snapshot_id
    assert ancestry[0].message.startswith("stackcube build: ")
    base = next(n for n, s in enumerate(ancestry) if s.id == before)
    stages = ancestry[:base]
    assert len(stages) >= 5  # a stage per date of the 10 m array at least
    assert [s.message for s in stages[1:]] == ["stackcube build: references being written"] * (len(stages) - 1)
    assert [s.metadata for s in stages[1:]] == [STAGE_METADATA] * (len(stages) - 1)
    for newer, older in itertools.pairwise([*stages, ancestry[base]]):
        changed = repository.diff(from_snapshot_id=older.id, to_snapshot_id=newer.id).updated_chunks
        assert 0 < sum(len(chunks) for path, chunks in changed.items() if path.endswith("/data")) <= 16
    assert repository.list_branches() == {"main"}
    _assert_same(_tree(staged), _tree(whole))


def test_a_build_on_workers_larger_than_a_snapshot_may_hold_is_several_and_the_cube_of_one_commit(
    tmp_path, monkeypatch, request
) -> None:
    """Icechunk refuses a commit of more than 50 million changed chunks (its transaction log); a build on workers of
    more than COMMIT_REFS references writes a snapshot per COMMIT_REFS, each on the last, and the branch moves once,
    to the last: the same cube as one commit (a build in one process writes far smaller stages:
    test_a_build_committed_in_stages_is_the_cube_of_one_commit)."""
    from stackcube.demo import write_demo_catalog
    from stackcube.store import layout, open_repository
    from stackcube.store import write as write_module
    from tests.store.test_append import _assert_same, _tree

    catalog = write_demo_catalog(tmp_path / "demo", dates=5, size=512)
    whole = tmp_path / "whole.icechunk"
    stackcube.build_cube(catalog, repo=whole, progress=False)
    total = sum(level.n_chunks for a in stackcube.plan_cube(catalog, progress=False).arrays for level in a.levels)
    monkeypatch.setattr(write_module, "COMMIT_REFS", 40)  # a few dates of the 10 m array a snapshot
    monkeypatch.setattr(layout, "MANIFEST_REFS", 16)
    monkeypatch.setattr(write_module, "BLOCK_REFS", 16)
    repo = tmp_path / "several.icechunk"
    cube = stackcube.build_cube(catalog, repo=repo, progress=False, client=request.getfixturevalue("cluster"))
    repository = open_repository(repo)
    ancestry = list(repository.ancestry(branch="main"))
    assert ancestry[0].id == cube.snapshot_id
    assert ancestry[-1].message == "Repository initialized"
    written = ancestry[:-1]  # the build's snapshots, newest first
    assert len(written) >= total // 40
    assert [s.message for s in written[1:]] == ["stackcube build: references being written"] * (len(written) - 1)
    for newer, older in itertools.pairwise(written):  # none holds more than COMMIT_REFS new references
        changed = repository.diff(from_snapshot_id=older.id, to_snapshot_id=newer.id).updated_chunks
        assert sum(len(chunks) for path, chunks in changed.items() if path.endswith("/data")) <= 40
    assert repository.list_branches() == {"main"}
    _assert_same(_tree(repo), _tree(whole))


def test_a_cleanup_that_fails_never_hides_the_writes_own_error(tmp_path) -> None:
    """Removing a write's branch can fail too (here: a branch already gone, in a real repository): the write's own
    error stays the one raised, with the cleanup's failure noted on it; after a write that succeeded, a warning."""
    import icechunk

    from stackcube.errors import StackcubeWarning
    from stackcube.store.scratch import remove_branch

    repository = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "r.icechunk")))
    original = RuntimeError("the write failed")
    remove_branch(repository, "stackcube-scratch-gone", original)
    assert original.__notes__[0].startswith("removing branch stackcube-scratch-gone failed too: ")
    with pytest.warns(StackcubeWarning, match="removing branch stackcube-scratch-gone failed .*a later write removes"):
        remove_branch(repository, "stackcube-scratch-gone")
