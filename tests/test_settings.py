"""Settings: one frozen object read from the environment in one place, changed for a block or for good."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

import stackcube
from stackcube.settings import S3Settings, Settings


def test_the_environment_is_read_in_one_place() -> None:
    env = {
        "STACKCUBE_MAX_CONCURRENCY": "8",
        "STACKCUBE_HEADER_BYTES": "16384",
        "STACKCUBE_RETRIES": "0",
        "STACKCUBE_RETRY_DEADLINE": "2.5",
        "STACKCUBE_REQUEST_TIMEOUT": "4",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "not-read-beyond-its-presence",
    }
    settings = Settings.from_env(env)
    assert settings == Settings(
        max_concurrency=8,
        header_bytes=16384,
        retries=0,
        retry_deadline=2.5,
        request_timeout=4.0,
        s3=S3Settings(endpoint="http://127.0.0.1:9000", region="eu-west-1", signed=True),
    )
    assert settings.s3.allow_http
    assert "not-read" not in repr(settings)  # only whether there are credentials, never the credentials
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"AWS_ENDPOINT_URL_S3": "https://s3.example", "AWS_PROFILE": "x"}).s3 == S3Settings(
        endpoint="https://s3.example", signed=True
    )
    with pytest.raises(ValueError, match=r"STACKCUBE_RETRIES='many' is not a whole number"):
        Settings.from_env({"STACKCUBE_RETRIES": "many"})


def test_set_applies_now_and_a_block_restores() -> None:
    before = stackcube.settings.current()
    with stackcube.settings.set(max_concurrency=3, retries=1) as inside:
        assert inside.max_concurrency == 3
        assert stackcube.settings.current().retries == 1
    assert stackcube.settings.current() == before
    override = stackcube.settings.set(header_bytes=4096)
    try:
        assert stackcube.settings.current().header_bytes == 4096
    finally:
        override.__exit__(None, None, None)
    assert stackcube.settings.current() == before


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(TypeError, match="no setting 'max_concurency'; the settings are max_concurrency"):
        stackcube.settings.set(max_concurency=3)
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        stackcube.settings.set(max_concurrency=0)
    with pytest.raises(ValueError, match="retries must not be negative"):
        Settings(retries=-1)


def test_reset_reads_the_environment_again(monkeypatch) -> None:
    before = stackcube.settings.current()
    monkeypatch.setenv("STACKCUBE_MAX_CONCURRENCY", "5")
    try:
        assert stackcube.settings.current() == before  # read once, not at every use
        stackcube.settings.reset()
        assert stackcube.settings.current().max_concurrency == 5
    finally:
        monkeypatch.undo()
        stackcube.settings.reset()
    assert stackcube.settings.current() == before


def test_the_old_module_attributes_still_work_with_a_warning() -> None:
    before = stackcube.settings.current()
    with pytest.warns(DeprecationWarning, match=r"use stackcube.settings.current\(\).retries"):
        assert stackcube.settings.retries == before.retries
    try:
        with pytest.warns(DeprecationWarning, match=r"use stackcube.settings.set\(max_concurrency=...\)"):
            stackcube.settings.max_concurrency = 7
        assert stackcube.settings.current().max_concurrency == 7
    finally:
        stackcube.settings.set(max_concurrency=before.max_concurrency)
    with pytest.raises(AttributeError):
        _ = stackcube.settings.nope


def _in_thread[T](function: Callable[[], T]) -> T:
    """``function()`` run in a new thread (which starts outside every ``with`` block), its result returned."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join(timeout=60)
    return result[0]


def test_overlapping_blocks_in_two_threads_each_keep_their_own_values() -> None:
    """Two threads inside ``with set(...)`` blocks at once (held together by a barrier at every step) each see their
    own value, before, inside (also on stackcube's I/O loop and in its worker threads, which run in the caller's
    context), after the other's block ended, and after their own; a thread started inside a block sees the
    process's settings."""
    from stackcube import _sync

    before = stackcube.settings.current().max_concurrency
    step = threading.Barrier(2)
    seen: dict[int, list[int]] = {3: [], 5: []}

    async def on_the_loop() -> tuple[int, int]:
        worker = await asyncio.to_thread(lambda: stackcube.settings.current().max_concurrency)
        return stackcube.settings.current().max_concurrency, worker

    def block(value: int, first_out: bool) -> None:
        mine = seen[value]
        step.wait(timeout=60)
        with stackcube.settings.set(max_concurrency=value) as inside:
            step.wait(timeout=60)  # both blocks entered
            mine += [inside.max_concurrency, stackcube.settings.current().max_concurrency]
            mine += _sync.run(on_the_loop())
            mine.append(_in_thread(lambda: stackcube.settings.current().max_concurrency))
            step.wait(timeout=60)  # both read inside; the first leaves, the other stays
            if not first_out:
                step.wait(timeout=60)  # the other's block has ended
                mine.append(stackcube.settings.current().max_concurrency)
        if first_out:
            step.wait(timeout=60)
        mine.append(stackcube.settings.current().max_concurrency)

    threads = [threading.Thread(target=block, args=(3, True)), threading.Thread(target=block, args=(5, False))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert seen == {3: [3, 3, 3, 3, before, before], 5: [5, 5, 5, 5, before, 5, before]}
    assert stackcube.settings.current().max_concurrency == before


def test_blocks_in_two_asyncio_tasks_each_keep_their_own_values() -> None:
    """Each asyncio task has its context: two tasks' blocks, both entered at once, each see their own value."""
    before = stackcube.settings.current().retries

    async def task(value: int, both: asyncio.Barrier) -> list[int]:
        with stackcube.settings.set(retries=value):
            await both.wait()  # both blocks entered
            seen = stackcube.settings.current().retries
            await both.wait()  # both have read: neither block ends before the other's read
            return [seen, stackcube.settings.current().retries]

    async def main() -> list[list[int]]:
        both = asyncio.Barrier(2)
        return list(await asyncio.gather(task(1, both), task(2, both)))

    assert asyncio.run(main()) == [[1, 1], [2, 2]]
    assert stackcube.settings.current().retries == before


def test_a_set_outside_a_with_statement_changes_what_every_thread_sees() -> None:
    """``set(...)`` as a statement changes the process's settings, which a thread started later sees (but not a
    thread inside a block of its own); undone, every thread sees the old value again. Entered later
    (``with override:``), an override becomes the block's own."""
    before = stackcube.settings.current().header_bytes
    override = stackcube.settings.set(header_bytes=4096)
    try:
        assert _in_thread(lambda: stackcube.settings.current().header_bytes) == 4096

        def own_block() -> int:
            with stackcube.settings.set(header_bytes=2048):
                return stackcube.settings.current().header_bytes

        assert _in_thread(own_block) == 2048
    finally:
        override.__exit__(None, None, None)
    assert _in_thread(lambda: stackcube.settings.current().header_bytes) == before
    later = stackcube.settings.set(header_bytes=1024)
    with later:
        assert stackcube.settings.current().header_bytes == 1024
        assert _in_thread(lambda: stackcube.settings.current().header_bytes) == before
    assert stackcube.settings.current().header_bytes == before
    assert _in_thread(lambda: stackcube.settings.current().header_bytes) == before


def test_an_override_entered_twice_nested_or_left_in_another_context_undoes_its_own_block() -> None:
    """One override used for two blocks, nested, and a block left in another context than it was entered in (a
    generator resumed elsewhere): each block restores what was before it, and nothing raises."""
    import contextvars

    before = stackcube.settings.current().retries
    override = stackcube.settings.set(retries=1)
    override.__exit__(None, None, None)  # applied to the process; undone
    with override:
        with override:
            assert stackcube.settings.current().retries == 1
        assert stackcube.settings.current().retries == 1
    assert stackcube.settings.current().retries == before

    def block():
        with stackcube.settings.set(retries=2):
            yield stackcube.settings.current().retries
            yield stackcube.settings.current().retries

    steps = block()
    assert next(steps) == 2  # entered here
    other = contextvars.copy_context()  # a copy of this context: the block's changes are in it
    assert other.run(next, steps) == 2
    assert other.run(next, steps, None) is None  # left there: no error (Python's own reset would raise)...
    assert other.run(lambda: stackcube.settings.current().retries) == before  # ...and that context is as before
    assert stackcube.settings.current().retries == 2  # here, where it was entered, nothing can undo it from there
    stackcube.settings.reset()


def test_one_override_entered_in_two_threads_and_a_block_left_in_anothers_keep_each_threads_values() -> None:
    """An override made once and entered by two threads at once: each thread's block ends its own. A generator's
    block entered here and left inside another thread's block leaves that thread's values as they were."""
    import threading

    default = stackcube.settings.current().max_concurrency
    shared = stackcube.settings.set(max_concurrency=5)
    shared.__exit__(None, None, None)  # made for blocks only: undone from the process
    both = threading.Barrier(2)
    seen: dict[str, list[int]] = {}

    def run(name: str, own: int) -> None:
        values = seen.setdefault(name, [])
        with stackcube.settings.set(max_concurrency=own):
            both.wait()
            with shared:
                both.wait()
                values.append(stackcube.settings.current().max_concurrency)
                both.wait()
            both.wait()  # both left the shared block: each is back in its own
            values.append(stackcube.settings.current().max_concurrency)

    threads = [threading.Thread(target=run, args=(name, own)) for name, own in (("a", 3), ("b", 7))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": [5, 3], "b": [5, 7]}

    def block():
        with stackcube.settings.set(max_concurrency=2):
            yield

    steps = block()
    next(steps)  # entered here
    left: list[int] = []

    def other() -> None:
        with stackcube.settings.set(max_concurrency=9):
            steps.close()  # the generator's block ends here, in this thread's block
            left.append(stackcube.settings.current().max_concurrency)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert left == [9]
    stackcube.settings.reset()
    assert stackcube.settings.current().max_concurrency == default
