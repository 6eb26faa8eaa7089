"""Scratch branches: where a build on workers, or in stages, writes before its one commit moves the real branch.

A scratch branch is its build's own while the build runs (:data:`_held`, in its process) and while its lease runs
(its tip, which the build writes again at every stage, is younger than :data:`SCRATCH_AGE`, for builds elsewhere);
after that, the next such build removes it. Written by hand: Icechunk's branches carry no owner or lease.
"""

from __future__ import annotations

import threading
import uuid
import warnings
from datetime import UTC, datetime, timedelta

import icechunk

from stackcube.errors import StackcubeWarning

__all__ = ["SCRATCH", "SCRATCH_AGE", "remove_branch", "start_scratch"]


def start_scratch(repository: icechunk.Repository, snapshot: str) -> str:
    """A new scratch branch at ``snapshot``, held by this build until :func:`remove_branch` (stale ones of killed
    builds removed first)."""
    _drop_stale(repository, snapshot)
    scratch = f"{SCRATCH}{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
    with _held_lock:
        _held.add(scratch)
    try:
        repository.create_branch(scratch, snapshot)
    except BaseException:
        with _held_lock:
            _held.discard(scratch)
        raise
    return scratch


SCRATCH = "stackcube-scratch-"
"""Prefix of the branch a build on workers (or in stages) writes on before its one commit moves the real branch (then
the UTC time it was made, ``20261126T154500``, for whoever lists branches, and a random id); removed after. One left
by a killed build points at nothing anyone reads; the next such build removes it once its lease has run out
(:data:`SCRATCH_AGE`), whatever its name says."""
SCRATCH_AGE = timedelta(days=1)
"""A scratch branch's lease: it is stale once its tip was written longer ago than this. Its build writes a new tip at
every stage (a commit or an amend on it: a stage of at most ``store.write.STAGE_REFS`` references in one process, a
run of ``COMMIT_REFS`` on workers), so a live build renews it long before; the name's time is never trusted, as a build
may run for more than a day. Judged on this machine's clock against the writer's (which stamped the tip): clocks a
day apart would be needed to take a live build's branch."""

_held: set[str] = set()
"""The scratch branches of the builds running in this process: never another build's to remove, whatever their
lease says."""
_held_lock = threading.Lock()


def _drop_stale(repository: icechunk.Repository, claim: str) -> None:
    """Remove the scratch branches of builds that are gone: their tip is older than :data:`SCRATCH_AGE` and no build
    of this process holds them. Each is first moved, from the tip judged, to ``claim`` (a snapshot of this build's):
    a build that renewed its lease meanwhile keeps its branch, and one that renews after finds it moved and fails,
    instead of committing what it wrote there."""
    now = datetime.now(UTC)
    for name in sorted(repository.list_branches()):
        with _held_lock:
            if not name.startswith(SCRATCH) or name in _held:
                continue
        try:
            tip = repository.lookup_branch(name)
            if now - repository.lookup_snapshot(tip).written_at <= SCRATCH_AGE:
                continue
            repository.reset_branch(name, claim, from_snapshot_id=tip)
            repository.delete_branch(name)
        except icechunk.IcechunkError:  # renewed since it was judged, or another build removed it first
            continue


def remove_branch(repository: icechunk.Repository, branch: str, error: BaseException | None = None) -> None:
    """Delete ``branch``, a write's own; failing to never hides ``error``, the write's own failure: it is noted on
    it, or after a write that succeeded, warned about (a later write removes stale scratch branches). Either way
    this process holds it no longer (:data:`_held`): left behind, it is stale once its lease runs out."""
    try:
        repository.delete_branch(branch)
    except icechunk.IcechunkError as exc:
        why = exc.message.splitlines()[0] if exc.message else str(exc)
        if error is not None:
            error.add_note(f"removing branch {branch} failed too: {why}")
        else:
            warnings.warn(
                f"removing branch {branch} failed ({why}); a later write removes it", StackcubeWarning, stacklevel=3
            )
    finally:
        with _held_lock:
            _held.discard(branch)
