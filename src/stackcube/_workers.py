"""Work spread over workers: a ``dask.distributed.Client`` or any ``concurrent.futures.Executor``, one way.

Header reads and reference writes hand out plain-data tasks and take results as they finish (progress advances,
a dead Dask worker's tasks run again elsewhere). A thread pool runs them in this process; a process pool or a
cluster pickles them.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Workers", "resolve_workers", "run_each"]

Workers = Any
"""A ``dask.distributed.Client`` or a ``concurrent.futures.Executor``."""


def resolve_workers(client: Any, executor: Any) -> Workers | None:
    """The one pool a call's ``client=`` or ``executor=`` names (None: this process does the work)."""
    if client is not None and executor is not None:
        msg = "give client= (a dask.distributed.Client) or executor= (a concurrent.futures.Executor), not both"
        raise TypeError(msg)
    if executor is not None and not isinstance(executor, concurrent.futures.Executor):
        msg = f"executor= takes a concurrent.futures.Executor, not {type(executor).__name__}"
        raise TypeError(msg)
    return client if client is not None else executor


def run_each(
    workers: Workers, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], done: Callable[[int, Any], object]
) -> None:
    """Run ``fn(*task)`` for every task on ``workers``; ``done(n, result)`` as the n-th finishes (in any order).
    A task's exception is raised here."""
    if isinstance(workers, concurrent.futures.Executor):
        pending = {workers.submit(fn, *task): n for n, task in enumerate(tasks)}
        for future in concurrent.futures.as_completed(pending):
            done(pending[future], future.result())
        return
    from distributed import as_completed  # the optional dependency, only for work on a cluster

    futures = [workers.submit(fn, *task, pure=False) for task in tasks]
    position = {future.key: n for n, future in enumerate(futures)}
    for future in as_completed(futures, loop=workers.loop):  # type: ignore[no-untyped-call]  # not the default client
        done(position[future.key], future.result())
