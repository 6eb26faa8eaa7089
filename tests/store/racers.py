"""A build run in a worker process for the concurrency tests: both racers wait at one barrier, then build."""

from __future__ import annotations

from typing import Any


def build(items: list[dict[str, Any]], repo: str, barrier: Any) -> tuple[str, str]:
    """Build ``items`` into ``repo`` once the other racer is ready too: ("ok", snapshot id), or (error type,
    message) for a stackcube error; anything else propagates (and fails the test)."""
    import stackcube
    from stackcube.errors import StackcubeError

    barrier.wait(timeout=60)
    try:
        cube = stackcube.build_cube(items, repo=repo, progress=False)
    except StackcubeError as exc:
        return type(exc).__name__, str(exc)
    return "ok", str(cube.snapshot_id)
