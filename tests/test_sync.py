"""The sync API's one event loop: an interrupted call stops its work instead of leaving it running."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from collections.abc import Callable

import pytest

from stackcube import _sync


def test_an_interrupted_call_cancels_its_coroutine() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancellation ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    main = threading.main_thread().ident or 0

    def waiting() -> bool:
        """Whether the caller is blocked waiting for the result (the moment a user's Ctrl-C arrives)."""
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == "result" and "concurrent" in frame.f_code.co_filename:
                return True
            frame = frame.f_back
        return False

    def interrupt() -> None:
        assert started.wait(60)
        deadline = time.monotonic() + 60  # bounds a hang only: the loop ends when the caller waits
        while not waiting() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        _sync.run(work())
    interrupter.join()
    assert cancelled.wait(60), "the coroutine went on after the call was interrupted"


def test_a_coroutine_that_raises_raises_in_the_caller() -> None:
    async def fail() -> None:
        raise ValueError("from the loop")

    with pytest.raises(ValueError, match="from the loop"):
        _sync.run(fail())


def test_an_interrupted_call_waits_for_work_that_must_finish() -> None:
    """A write in finish_in_thread is not left half done: the interrupted caller returns once it has ended, so what
    it left (a commit or none) is settled when the caller looks."""
    running, go, finished = threading.Event(), threading.Event(), threading.Event()

    def write() -> None:
        running.set()
        assert go.wait(60)
        finished.set()

    main = threading.main_thread().ident or 0

    def in_frame(name: str) -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == name:
                return True
            frame = frame.f_back
        return False

    def wait_until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 60  # bounds a hang only
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)

    def interrupt() -> None:
        assert running.wait(60)
        wait_until(lambda: in_frame("result"))
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C while the write runs
        wait_until(lambda: in_frame("run") and not in_frame("result"))  # the caller waits for the write to end
        go.set()

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        _sync.run(_sync.finish_in_thread(write))
    assert finished.is_set(), "the interrupted call returned before the write ended"
    interrupter.join()


def test_an_async_read_in_a_child_forked_after_io_is_refused_not_left_waiting(tmp_path) -> None:
    """The ``*_async`` functions run on the caller's loop, not through :func:`_sync.run`: in a child forked after
    this process read through obstore, they are refused where a store is made, instead of waiting forever."""
    import os
    import warnings

    from stackcube.demo import write_demo_tiff
    from stackcube.tiff import read_tiff, read_tiff_async

    path, _ = write_demo_tiff(tmp_path / "a.tif", size=64, tile=32)
    read_tiff(path)  # this process has used obstore, and keeps the store it made (the child forgets it)
    read_out, write_out = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python's own: forking a multi-threaded process
        pid = os.fork()
    if pid == 0:  # the child: say what happened, then leave without running the parent's exit handlers
        try:
            asyncio.run(read_tiff_async(path))
            said = "read"
        except Exception as exc:  # what the child says is the test
            said = f"{type(exc).__name__}: {exc}"
        os.write(write_out, said.encode()[:4000])
        os._exit(0)
    os.close(write_out)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child waited forever")
        time.sleep(0.05)
    with os.fdopen(read_out) as said:
        assert said.read().startswith("StackcubeError: this process was forked from one that had already read")
