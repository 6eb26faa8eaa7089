"""Work on workers: a build with a concurrent.futures process pool equals one in this process, as a cluster's
does; the two ways of naming workers cannot be mixed."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import stackcube
from stackcube._workers import resolve_workers, run_each
from stackcube.demo import write_demo_catalog
from stackcube.store import read_stored


def _square(x: int) -> int:
    return x * x


def test_each_task_is_reported_once_with_its_position() -> None:
    seen: dict[int, int] = {}
    with ThreadPoolExecutor(3) as pool:
        run_each(pool, _square, [(n,) for n in range(20)], seen.__setitem__)
    assert seen == {n: n * n for n in range(20)}


def test_a_build_on_a_process_pool_is_the_build_of_this_process(tmp_path) -> None:
    """Header reads and reference writes (forks of one session, pickled to the pool's processes and back) in a
    pool of two processes started with forkserver; the same sources, values and one commit."""
    catalog = write_demo_catalog(tmp_path / "demo", dates=3, size=256)
    here = stackcube.build_cube(catalog, repo=tmp_path / "here.icechunk", progress=False)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
        there = stackcube.build_cube(catalog, repo=tmp_path / "there.icechunk", progress=False, executor=pool)
    assert len(list(there.repository.ancestry(branch="main"))) == 2
    assert there.repository.list_branches() == {"main"}
    stored = [read_stored(c.repository.readonly_session(branch="main")).sources for c in (here, there)]
    assert [s.manifest.to_dict() for s in stored[0]] == [s.manifest.to_dict() for s in stored[1]]
    for array in here.plan.arrays:
        np.testing.assert_array_equal(
            stackcube.open_dataarray(tmp_path / "there.icechunk", array=array.name).values,
            stackcube.open_dataarray(tmp_path / "here.icechunk", array=array.name).values,
        )


def test_client_and_executor_are_one_or_the_other() -> None:
    with ThreadPoolExecutor(1) as pool, pytest.raises(TypeError, match="not both"):
        resolve_workers(object(), pool)
    with pytest.raises(TypeError, match=r"takes a concurrent\.futures\.Executor, not str"):
        resolve_workers(None, "4 processes")


def test_a_build_on_a_fork_pool_started_before_any_read_is_the_build_of_this_process(tmp_path) -> None:
    """The start method Linux's Python defaults to before 3.14: a fresh process whose build forks its pool (the
    pool starts its processes at the first task, after the search and the repository are open, before any source
    is read here) builds what a build without the pool does. In a child process: this one has read already."""
    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    script = textwrap.dedent(
        f"""
        import multiprocessing, sys, warnings
        from concurrent.futures import ProcessPoolExecutor
        import numpy as np
        import stackcube
        warnings.simplefilter("ignore", DeprecationWarning)  # Python's own: forking a multi-threaded process
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            there = stackcube.build_cube({str(catalog)!r}, repo={str(tmp_path / "there.icechunk")!r},
                                         progress=False, executor=pool)
        here = stackcube.build_cube({str(catalog)!r}, repo={str(tmp_path / "here.icechunk")!r}, progress=False)
        for array in here.plan.arrays:
            np.testing.assert_array_equal(
                stackcube.open_dataarray({str(tmp_path / "there.icechunk")!r}, array=array.name).values,
                stackcube.open_dataarray({str(tmp_path / "here.icechunk")!r}, array=array.name).values,
            )
        print(len(here.plan.arrays), len(list(there.repository.ancestry(branch="main"))))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2"]  # both of the demo's arrays compared; one commit on the first snapshot


def test_a_fork_pool_after_io_is_refused_with_what_to_do(tmp_path) -> None:
    """A pool started with fork after this process read through stackcube: obstore's runtime does not survive the
    fork, so the workers say so (and which start method to use) instead of waiting forever on requests."""
    from stackcube.errors import StackcubeError

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    stackcube.build_cube(catalog, repo=tmp_path / "here.icechunk", progress=False)  # I/O has started here
    with (
        pytest.warns(DeprecationWarning, match="fork"),  # Python's own: forking a multi-threaded process
        ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool,
        pytest.raises(StackcubeError, match=r"does not survive a fork: start the pool with .*'forkserver'"),
    ):
        stackcube.build_cube(catalog, repo=tmp_path / "there.icechunk", progress=False, executor=pool)
