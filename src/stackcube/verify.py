"""Checking a stored cube's sources: ``verify_cube`` asks every source whether it is still the object that was
indexed, and with ``fix`` has :func:`stackcube.refresh_cube` index again those that changed or are gone.

A stage beside :mod:`stackcube.refresh`, and the two call each other: ``verify_cube(fix=True)`` refreshes after
checking, ``refresh_cube(check_etags=True)`` checks before refreshing. This module imports ``stackcube.refresh`` at
its top; ``stackcube.refresh`` imports this one only inside ``refresh_cube``, which breaks the import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackcube import _sync
from stackcube._text import counted
from stackcube.refresh import RefreshReport, refresh_cube
from stackcube.settings import Credentials, current, with_credentials
from stackcube.sources import check_sources
from stackcube.store import RepoLike, open_repository, read_stored, readonly_session

__all__ = ["VerifyReport", "gone_note", "verify_cube"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Which indexed sources are no longer what the cube recorded."""

    snapshot_id: str
    """The snapshot verified."""
    checked: int
    """Sources asked (one HEAD each, or a one-byte GET where the host refuses HEAD)."""
    changed: tuple[tuple[str, str, str], ...] = ()
    """(href, recorded, found) of sources replaced since they were indexed, in the validator that differs
    (``ETag "a"`` -> ``ETag "b"``, ``Last-Modified ...``, ``size ...``)."""
    vanished: tuple[tuple[str, str], ...] = ()
    """(href, reason) of sources that no longer exist or could not be asked."""
    gone: tuple[str, ...] = ()
    """The vanished sources whose host said they do not exist (not merely unreachable): a refresh with
    ``check_etags`` and ``on_error="skip"`` (or ``fix``) reads them again, indexing where the catalog now points or
    leaving them out."""
    size_only: tuple[str, ...] = ()
    """Sources whose host sends neither ETag nor Last-Modified: only their size could be compared, so a
    replacement of the same size would go unseen."""
    unprotected: tuple[str, ...] = ()
    """Sources whose reads are not checked against them (their host honours no conditional request, or gives no
    validator): between two verifications, a replaced file's pixels would be read as the indexed ones."""

    @property
    def ok(self) -> bool:
        """True when every source is unchanged."""
        return not (self.changed or self.vanished)

    def __str__(self) -> str:
        lines = [
            f"snapshot {self.snapshot_id}: {self.checked} sources checked, {len(self.changed)} changed, "
            f"{len(self.vanished)} vanished or unreachable"
        ]
        lines.extend(f"  changed: {href} ({old} -> {new})" for href, old, new in self.changed)
        lines.extend(f"  vanished: {href}: {why}" for href, why in self.vanished)
        if self.size_only:
            lines.append(
                f"  {len(self.size_only)} checked by size only (their host sends no ETag or Last-Modified: a "
                f"replacement of the same size cannot be seen): {_some(self.size_only)}"
            )
        if self.unprotected:
            lines.append(
                f"  {len(self.unprotected)} unprotected (their host ignores conditional requests: reads cannot "
                f"refuse a replaced file, only verify can see it): {_some(self.unprotected)}"
            )
        return "\n".join(lines)


def gone_note(gone: Sequence[str]) -> str:
    """What a refresh that re-indexes changed sources (``check_etags``) says of those verify found gone, which it
    leaves as they are unless failures may be left out."""
    one = len(gone) == 1
    return (
        f"{counted(len(gone), 'source')} no longer exist{'s' * one} ({_some(gone)}), left as indexed: with "
        f"on_error='skip' (--skip-failed), check_etags reads {'it' if one else 'them'} again, indexing where the "
        f"catalog now points or leaving {'it' if one else 'them'} out"
    )


def _some(hrefs: Sequence[str], n: int = 3) -> str:
    """The first ``n`` of ``hrefs``, and how many more."""
    return ", ".join(hrefs[:n]) + (f" and {len(hrefs) - n} more" if len(hrefs) > n else "")


def verify_cube(
    repo: RepoLike,
    *,
    branch: str = "main",
    fix: bool = False,
    progress: bool = True,
    allow: Iterable[str] | None = None,
    credentials: Credentials | None = None,
    modifier: Callable[[Any], Any] | None = None,
    catalog: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[VerifyReport, RefreshReport | None]:
    """Ask every source of the cube what it is now (a HEAD each, concurrently; a one-byte GET where HEAD is
    refused), compare every validator the cube recorded (ETag, Last-Modified, size) and report what changed or
    vanished, and which sources could only be checked by size or are unprotected on read.

    Parameters
    ----------
    repo
        The cube's repository (as :func:`stackcube.build_cube` takes it).
    branch
        The branch whose tip is verified.
    fix
        Refresh exactly the changed sources (``refresh_cube(force=...)``), and the ones whose host says they no
        longer exist (read again: indexed where the catalog now points, or left out).
    progress
        Show a progress bar.
    allow
        URL prefixes the cube may read sources from; a cube pointing elsewhere is refused before any request.
    credentials
        What the sources' hosts want, per URL prefix (:data:`stackcube.settings.Credentials`); never stored.
    modifier, catalog, headers
        The refresh's, with ``fix`` (:func:`stackcube.refresh_cube`): the search signer, and the catalog's
        credentials, none of which a cube stores.

    Returns
    -------
    tuple[VerifyReport, RefreshReport | None]
        What changed or vanished, and the report of the refresh ``fix`` ran (None without one).

    Examples
    --------
    >>> checked, fixed = verify_cube("cube.icechunk", fix=True, progress=False)  # doctest: +SKIP
    >>> print(checked)  # doctest: +SKIP
    snapshot ...: 24 sources checked, 1 changed, 0 vanished or unreachable
      changed: https://example.com/data/S2B_35MNM_20200612/B04.tif (ETag "a" -> ETag "b")
    """
    allow = None if allow is None else tuple(allow)  # checked more than once: an iterator would be empty after
    settings = with_credentials(current(), credentials)
    repository = open_repository(repo, allow=allow, settings=settings)
    stored = read_stored(readonly_session(repository, branch=branch, repo=repo), repo, repository, allow=allow)
    unique = list({s.manifest.href: s for s in stored.sources}.values())
    checks = _sync.run(check_sources(unique, progress=progress, settings=settings))
    changed = tuple((c.href, c.recorded, c.found or "") for c in checks if c.changed)
    vanished = tuple((c.href, c.error) for c in checks if c.error is not None)
    report = VerifyReport(
        snapshot_id=stored.snapshot_id,
        checked=len(unique),
        changed=changed,
        vanished=vanished,
        gone=tuple(c.href for c in checks if c.gone),
        size_only=tuple(c.href for c in checks if c.size_only),
        unprotected=tuple(s.manifest.href for s in unique if s.manifest.validator is None),
    )
    refreshed = None
    if fix and (changed or report.gone):
        # the changed sources indexed again; those gone read again too, and left out where they are still missing
        refreshed = refresh_cube(
            repository,
            branch=branch,
            force=[*(href for href, _, _ in changed), *report.gone],
            on_error="skip" if report.gone else "raise",
            progress=progress,
            allow=allow,
            credentials=credentials,
            modifier=modifier,
            catalog=catalog,
            headers=headers,
        )
    return report, refreshed
