"""Keeping a cube current: ``refresh_cube`` searches again and indexes only what is new or changed (whether every
source is still the object that was indexed, ``verify_cube`` asks: :mod:`stackcube.verify`).

Like :mod:`stackcube.api`, an orchestrator of the stages: it reads the search, options and source table a cube
stores (:func:`stackcube.store.read_stored`), runs the same search, reads headers only for sources that are
new, whose STAC ``updated`` changed, or that the caller names (``force``, e.g. from ``verify``), re-plans all of
them and commits once. A search narrowed to what can be new reads only the stored rows of the items it found,
through the source table's id index (:meth:`stackcube.store.StoredCube.rows_of`); a whole search, a rewrite, and a
cube written before the index read them all. A source is known by the href the cube stores, never by a signed
one: a search whose modifier signs every href afresh (``planetary_computer.sign_inplace``) finds the stored sources
unchanged. The commit happens only on the snapshot the refresh started from; when another writer got there first,
the refresh starts over from the new tip (manifests already read are reused, forced ones too), so concurrent
refreshes never lose an item nor duplicate a time step, nor drop a re-index ``verify`` asked for.

:mod:`stackcube.verify` imports this module (``verify_cube(fix=True)`` refreshes); this one imports it only inside
``refresh_cube`` (``check_etags`` verifies first), which breaks the import cycle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from stackcube import _sync
from stackcube._hrefs import stored_href
from stackcube._remedies import allow_prefixes, give_catalog
from stackcube._text import counted
from stackcube._workers import Workers, resolve_workers
from stackcube.assets import SelectedAsset, choose_assets
from stackcube.cube import plan_sources
from stackcube.errors import ConcurrentUpdateError, RepositoryError, StackcubeError, UntrustedSourceError
from stackcube.extend import StoredArray, extend_arrays
from stackcube.options import CubeOptions, OnError
from stackcube.plan import Misfit
from stackcube.search import Since, search_again, with_catalog_credentials
from stackcube.settings import Credentials, Settings, current, with_credentials
from stackcube.sources import Source, read_sources, stac_digest
from stackcube.store import (
    Appended,
    Commit,
    RepoLike,
    StoredCube,
    StoredRow,
    append_steps,
    append_to,
    open_repository,
    read_stored,
    readonly_session,
    searched_now,
    source_row,
    updated_of,
    write_plan,
)
from stackcube.store.repo import repo_name, repo_url
from stackcube.tiff import normalize_href

if TYPE_CHECKING:
    import icechunk

__all__ = ["DATED_WINDOW", "UPDATED_WINDOW", "RefreshReport", "refresh_cube"]

UPDATED_WINDOW = timedelta(days=1)
"""How far before the last search a refresh asks a STAC API for items ``updated`` since (clock skew, and the delay
between a producer setting ``updated`` and the item appearing in the catalog)."""
DATED_WINDOW = timedelta(days=30)
"""How far before the last search a refresh asks a STAC API for items dated since, when the cube's items carry no
``updated``: an item published later than this after its acquisition is found only by a full search."""


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What a refresh found and did; ``str()`` is the log a person reads afterwards."""

    branch: str
    """The branch refreshed."""
    previous: str
    """The snapshot the refresh started from."""
    snapshot_id: str | None
    """The new snapshot, None when nothing was committed (nothing changed, or a dry run)."""
    added: tuple[str, ...] = ()
    """Items found for the first time."""
    changed: tuple[str, ...] = ()
    """``item/asset`` sources indexed again (STAC ``updated`` changed, or forced because the ETag changed)."""
    removed: tuple[str, ...] = ()
    """Items the search no longer finds (only a whole search can tell: ``remove=True`` or ``full_search=True``)."""
    kept_removed: bool = True
    """Whether removed items stay in the cube (the default) or were dropped."""
    failed: tuple[str, ...] = ()
    """``item/asset: reason`` for sources that could not be read (listed in the commit metadata too)."""
    dry_run: bool = False
    """True when nothing was read or written."""
    attempts: int = 1
    """1, or more when another writer committed first and the refresh started over."""
    headers_read: int = 0
    """TIFF headers this call read, on every attempt (only new, changed and forced sources; unchanged ones come
    from the stored manifests). An attempt after another writer's commit reuses what earlier ones read: it adds only
    the headers new to it, so none is counted twice and none is left out, however many attempts it took."""
    appended: bool = False
    """True when the commit only appended the new items' time steps (they all came after the cube's last one)."""
    rewritten: str | None = None
    """Why the commit rewrote the whole cube instead (a late, changed or removed item, a new band, a grid that
    grew, ...); None when it appended or committed nothing."""
    search: str = "the whole search"
    """What the search asked the catalog: the whole stored search, or only the items that can be new or changed
    ("items updated since ...", "items dated since ...")."""
    found: int = 0
    """Items the search returned."""
    rows_read: int = 0
    """Rows of the cube's source table read to compare (on the last attempt): those of the items a narrowed search
    found, through the table's id index; every row for a whole search, and for a cube without the index. A rewrite
    of the whole cube reads every row's manifest besides."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """The planner's notes."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: reading the cube's description and source table (or its id index), the search,
    comparing (reading the stored rows of the items found, through the index), reading new headers, planning,
    writing and committing."""

    @property
    def committed(self) -> bool:
        """Whether a snapshot was committed."""
        return self.snapshot_id is not None

    @property
    def message(self) -> str:
        """The commit message: what changed."""
        text = f"stackcube refresh: +{counted(len(self.added), 'item')}, {len(self.changed)} changed, "
        gone = len(self.removed)
        text += f"{gone} no longer in the catalog (kept)" if self.kept_removed and gone else f"{gone} removed"
        return text + (f", {len(self.failed)} failed" if self.failed else "")

    def __str__(self) -> str:
        if self.dry_run:
            head_line = f"dry run on {self.branch} at {self.previous}: would commit '{self.message}'"
        elif self.committed:
            head_line = f"{self.branch}: {self.previous} -> {self.snapshot_id}: {self.message}"
        else:
            head_line = f"{self.branch} at {self.previous}: nothing changed, nothing committed"
        lines = [head_line]
        lines.append(f"  searched: {self.search}: {counted(self.found, 'item')} found")
        if not self.dry_run:
            lines.append(f"  headers read: {self.headers_read}")
        if self.committed:
            lines.append(
                "  written: "
                + ("the new time steps, appended" if self.appended else f"the whole cube ({self.rewritten})")
            )
        if self.attempts > 1:
            lines.append(f"  another writer committed first; started over {self.attempts - 1} time(s)")
        if self.timings:
            lines.append("  took: " + ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in self.timings.items()))
        gone = (
            "no longer in the catalog (kept; remove=True, or --remove, drops them)" if self.kept_removed else "removed"
        )
        for label, values in (("added", self.added), ("changed", self.changed), (gone, self.removed)):
            lines.extend(f"  {label}: {v}" for v in values)
        lines.extend(f"  failed: {v}" for v in self.failed)
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _unchanged(previous: StoredRow, asset: SelectedAsset, force: frozenset[str], settings: Settings) -> bool:
    """Whether a stored source is the one the search found again, by what the cube stores of it: the href as a
    build would store it (a signed href without its signature, so a search signed afresh on each run finds every
    stored source unchanged) and the STAC ``updated``; a forced source never is. (What else STAC says of it, its
    digest, decides later whether the stored sources can stay as written: :func:`_why_not_extend`.)"""
    return (
        previous.href not in force
        and previous.href == _identity(asset, settings)
        and previous.updated == updated_of(asset.item.properties)
    )


def _identity(asset: SelectedAsset, settings: Settings) -> str | None:
    """The href a build stores for ``asset`` (:func:`stackcube._hrefs.stored_href` with the settings the build
    uses; made a URL as the manifest's), or None when none can be stored (the header read says why)."""
    try:
        stored, _ = stored_href(asset.href, settings.s3.endpoint, settings.azure.emulator)
        return normalize_href(stored)
    except StackcubeError:
        return None


def _within_allow(assets: Sequence[SelectedAsset], allow: Iterable[str], settings: Settings, repo: RepoLike) -> None:
    """Refuse new or changed sources outside ``allow`` before any is read: a refresh reads and adds only what the
    caller allows, as an open reads only that (the catalog the cube names may name any host)."""
    allowed = [a if a.endswith("/") else f"{a}/" for a in allow]
    # an href no cube can store (a credential stackcube cannot place) fails its own header read, naming it
    hrefs = [href for a in assets if (href := _identity(a, settings)) is not None]
    outside = sorted({h.rsplit("/", 1)[0] + "/" for h in hrefs if not h.startswith(tuple(allowed))})
    if outside:
        msg = (
            f"{repo_name(repo)}: the search finds new sources under {', '.join(outside)}, outside the allowed "
            f"prefixes {', '.join(allowed) or '(none)'}; nothing was read from them"
        )
        raise UntrustedSourceError(msg, remedy=allow_prefixes(outside))


def _in_stored_order(sources: Sequence[Source], stored: Sequence[Source]) -> list[Source]:
    """``sources`` in the order the cube holds them, new ones after (in search order): bands keep the order the cube
    was built with, whichever sources a refresh read again, and new bands come last."""
    position = {(s.item_id, s.asset): i for i, s in enumerate(stored)}
    return sorted(sources, key=lambda s: position.get((s.item_id, s.asset), len(position)))


def _new_bands(stored: Sequence[Source], sources: Sequence[Source]) -> tuple[str, ...]:
    """A note naming the bands a refresh adds (after the cube's own)."""
    known = {s.band for s in stored}
    new = list(dict.fromkeys(s.band for s in sources if s.band not in known))
    return (f"new band{'s' * (len(new) != 1)} {', '.join(new)}, after the cube's bands",) if new and known else ()


def _stored(
    repo: RepoLike, branch: str, allow: Iterable[str] | None, settings: Settings
) -> tuple[icechunk.Repository, StoredCube]:
    """The repository and what its branch's cube says about itself: its source table's id index, not its rows (but
    for a cube without the index)."""
    repository = open_repository(repo, allow=allow, settings=settings)
    session = readonly_session(repository, branch=branch, repo=repo)
    return repository, read_stored(session, repo, repository, allow=allow, rows=False)


@dataclass(frozen=True, slots=True)
class _Refresh:
    """What one refresh was asked to do (the same on every attempt)."""

    branch: str
    tag: str | None
    dry_run: bool
    remove: bool
    on_error: OnError
    progress: bool
    allow: Iterable[str] | None
    settings: Settings
    modifier: Callable[[Any], Any] | None = None
    workers: Workers | None = None
    full_search: bool = False
    window: timedelta | None = None
    force: frozenset[str] = frozenset()
    """Stored hrefs to index again whatever the catalog says: read on every attempt (after the first, from what
    this refresh already read), so a retry after another writer's commit still replaces their stored manifests."""
    catalog: str | None = field(default=None, repr=False)
    """The stored catalog's URL with its credential parameters, which the cube does not keep (None: without)."""
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    """Request headers for the catalog, which the cube does not keep (None: none)."""


def _since(stored: StoredCube, job: _Refresh) -> Since | None:
    """What a STAC API is asked for instead of the whole search: the items ``updated`` (when every stored item
    carries it), else dated, since the last search minus a window; None for the whole search (asked for, removing,
    sources forced, or no earlier search known)."""
    if job.full_search or job.remove or job.force or stored.searched is None:
        return None
    updated = stored.all_updated
    window = job.window if job.window is not None else UPDATED_WINDOW if updated else DATED_WINDOW
    return Since(stored.searched - window, updated=updated)


@dataclass(frozen=True, slots=True)
class _Compared:
    """The search's chosen assets against the stored sources."""

    same: list[tuple[StoredRow, SelectedAsset]]
    """Stored sources the search found unchanged, with the asset found."""
    to_read: list[SelectedAsset]
    """New, changed and forced sources, whose headers are read."""
    added: tuple[str, ...]
    """Items found for the first time."""
    changed: tuple[str, ...]
    """``item/asset`` of stored sources indexed again."""
    gone: list[StoredRow]
    """Stored sources among ``rows`` the search did not find (or did not ask about)."""


def _compare(rows: Sequence[StoredRow], chosen: Sequence[SelectedAsset], job: _Refresh) -> _Compared:
    """Which chosen assets are stored (in ``rows``: every stored row, or at least those of the items chosen) and
    unchanged (:func:`_unchanged`), which are new or changed, and which of ``rows`` the search did not find."""
    previous = {(r.item_id, r.asset): r for r in rows}
    same: list[tuple[StoredRow, SelectedAsset]] = []
    to_read: list[SelectedAsset] = []
    added: set[str] = set()
    changed: list[str] = []
    for asset in chosen:
        before = previous.get((asset.item.id, asset.key))
        if before is not None and _unchanged(before, asset, job.force, job.settings):
            same.append((before, asset))
            continue
        if before is None:
            added.add(asset.item.id)
        else:
            changed.append(f"{asset.item.id}/{asset.key}")
        to_read.append(asset)
    keys = {(a.item.id, a.key) for a in chosen}
    gone = [r for key, r in previous.items() if key not in keys]  # or not asked about: kept unless removing
    return _Compared(same, to_read, tuple(sorted(added)), tuple(changed), gone)


@dataclass(slots=True)
class _Read:
    """What the attempts of one refresh share: the sources read, which a retry reuses, and how many headers."""

    sources: dict[tuple[str, str, Any], Source] = field(default_factory=dict)
    """By item id, asset key and STAC ``updated``: what this call read (fresh, forced ones too), on any attempt."""
    headers: int = 0
    """Headers read on every attempt so far (the report's ``headers_read``)."""


def _cached(
    to_read: Sequence[SelectedAsset], done: _Read, options: CubeOptions
) -> tuple[list[Source], list[SelectedAsset]]:
    """The sources an earlier attempt of this refresh read, and the assets still to read."""
    fresh: list[Source] = []
    unread: list[SelectedAsset] = []
    for asset in to_read:
        hit = done.sources.get((asset.item.id, asset.key, asset.item.properties.get("updated")))
        if hit is not None:
            fresh.append(Source.of(asset, hit.manifest, options))
        else:
            unread.append(asset)
    return fresh, unread


async def _refresh_once(repo: RepoLike, job: _Refresh, done: _Read) -> RefreshReport:
    clock = _Clock()
    repository, stored = await asyncio.to_thread(_stored, repo, job.branch, job.allow, job.settings)
    clock.lap("read cube")
    if not stored.metadata.query.catalog:
        msg = f"{repo} was built from items in memory, not a catalog: build it again to add items"
        raise RepositoryError(msg)
    options = dataclasses.replace(stored.metadata.options, on_error=job.on_error)
    q, searched = with_catalog_credentials(stored.metadata.query, job.catalog, job.headers), searched_now()
    since, denied = _since(stored, job), give_catalog(repo_url(repo), stored.metadata.query.catalog)
    found = await asyncio.to_thread(search_again, q, job.settings, job.modifier, job.progress, since, denied=denied)
    clock.lap("search")
    # nothing new or changed since the last search is no error (a whole search that finds nothing is)
    nothing = not found.items and not found.whole
    chosen, skipped = ([], []) if nothing else choose_assets(found.items, q, options.assets, check_names=False)

    # a whole search tells which stored items are gone: every row; a narrowed one, only the found items' rows
    asked = None if found.whole else {item.id for item in found.items}
    rows = await asyncio.to_thread(stored.rows_of, asked, repo)
    compared = _compare(rows.rows, chosen, job)
    same, to_read, changed, gone_rows = compared.same, compared.to_read, compared.changed, compared.gone
    if job.allow is not None:
        _within_allow(to_read, job.allow, job.settings, repo)
    removed = sorted({r.item_id for r in gone_rows} - {a.item.id for a in chosen}) if found.whole else []
    report = RefreshReport(
        branch=job.branch,
        previous=stored.snapshot_id,
        snapshot_id=None,
        added=compared.added,
        changed=changed,
        removed=tuple(removed),
        kept_removed=not job.remove,
        dry_run=job.dry_run,
        search=found.asked,
        found=len(found.items),
        rows_read=rows.read,
    )
    clock.lap("compare")
    removing = job.remove and bool(gone_rows)
    if job.dry_run or not (to_read or removing):
        return dataclasses.replace(report, timings=clock.laps)

    fresh, unread = _cached(to_read, done, options)
    # none read fails the refresh (as a build) unless it has something else to do: sources to leave out (forced,
    # and failed) or items to remove
    read, failed = await read_sources(
        unread,
        options,
        progress=job.progress,
        settings=job.settings,
        workers=job.workers,
        require_some=not (changed or removing),
    )
    for source in read:
        done.sources[(source.item_id, source.asset, source.properties.get("updated"))] = source
    done.headers += len(unread)
    clock.lap("headers")
    metadata = {
        "stackcube": "refresh",
        "added": list(report.added),
        "changed": list(report.changed),
        "removed": list(report.removed),
        "failed": list(failed),
        "searched": searched,
    }
    report = dataclasses.replace(report, failed=tuple(failed), headers_read=done.headers)
    new = [*fresh, *read]  # after the stored sources, in this order (as _in_stored_order places them)
    to = Commit(job.branch, stored.snapshot_id, report.message, job.tag, job.progress, metadata)
    why = _why_not_extend(same, new, changed, removing=removing)
    if why is None:
        # the usual daily refresh: plan only the new sources, in the arrays as they are, and append them; the
        # stored sources' manifests are not even read
        try:
            arrays = extend_arrays(q, new, options, _stored_arrays(stored))
        except Misfit as exc:
            why = str(exc)
        else:
            clock.lap("plan")
            appended = await _sync.finish_in_thread(
                append_steps,
                arrays,
                new,
                repository,
                repo,
                to=to,
                accounts=stored.metadata.accounts,
                rows=stored.rows if stored.index is None else None,  # read whole: the append writes the index
            )
            if isinstance(appended, Appended):
                clock.lap("write")
                return dataclasses.replace(report, snapshot_id=str(appended), appended=True, timings=clock.laps)
            why = appended
    # the whole cube: the stored sources made again from their manifests, planned with the new ones; those the
    # search did not find (or a narrowed search did not ask about) stay, unless removing
    by_key = {(s.item_id, s.asset): s for s in stored.sources}
    kept = [Source.of(asset, by_key[(r.item_id, r.asset)].manifest, options) for r, asset in same]
    chosen_keys = {(a.item.id, a.key) for a in chosen}
    gone = [s for key, s in by_key.items() if key not in chosen_keys]
    sources = _in_stored_order([*kept, *fresh, *read, *([] if job.remove else gone)], stored.sources)
    plan = plan_sources(q, sources, options, skipped=skipped, failed=failed)
    clock.lap("plan")
    report = dataclasses.replace(report, failed=plan.failed, notes=plan.notes + _new_bands(stored.sources, sources))
    if _why_not_append(stored.sources, sources, changed, removing=removing) is None:
        # a cube written before arrays kept their grids (the append upgrades it), or new sources the stored arrays
        # do not hold as they are: the whole plan, appended if it is the stored cube grown along time
        new_count = len(sources) - len(stored.sources)
        appended = await _sync.finish_in_thread(append_to, plan, repository, repo, new=new_count, to=to)
        if isinstance(appended, Appended):
            clock.lap("write")
            return dataclasses.replace(report, snapshot_id=str(appended), appended=True, timings=clock.laps)
        why = appended
    report = dataclasses.replace(report, rewritten=why)
    _, snapshot = await _sync.finish_in_thread(
        write_plan,
        plan,
        repository,
        branch=job.branch,
        message=report.message,
        tag=job.tag,
        progress=job.progress,
        metadata=metadata,
        parent=stored.snapshot_id,
        settings=job.settings,
        workers=job.workers,
    )
    clock.lap("write")
    return dataclasses.replace(report, snapshot_id=snapshot, timings=clock.laps)


def _stored_arrays(stored: StoredCube) -> dict[str, StoredArray]:
    """What each stored array keeps of its plan (its bands from the coordinates its node keeps)."""
    out = {}
    for name, layout in stored.layouts.items():
        kept = (layout.coordinates.get("values") or {}).get("band")
        if not layout.grids or kept is None:
            continue  # written before arrays kept their grids, or too many bands to keep: a Misfit
        samples = layout.grids[0][0].samples
        names = [str(b) for b in kept["values"]]
        bands = names if samples == 1 else [b.removesuffix("_1") for b in names[::samples]]
        out[name] = StoredArray(name, layout.grids, tuple(bands))
    if len(out) != len(stored.layouts):
        return {}
    return out


def _why_not_extend(
    same: Sequence[tuple[StoredRow, SelectedAsset]], new: Sequence[Source], changed: Sequence[str], *, removing: bool
) -> str | None:
    """None when the refresh only adds sources and every stored one the search found is as it was: the same STAC
    item and asset (:func:`~stackcube.sources.stac_digest`; a kept item whose properties or band metadata changed
    without a new ``updated`` is not, and the cube is rewritten with them)."""
    if changed:
        return "changed items"
    if removing:
        return "removed items"
    if not new:
        return "no new source"
    if any(not row.digest for row, _ in same):
        return "a source table written before stackcube kept digests"
    if any(row.digest != stac_digest(asset) for row, asset in same):
        return "stored items' properties or band metadata changed"
    return None


def _differ(stored: Source, source: Source) -> bool:
    """Whether ``source`` would be another row of the source table than ``stored`` (a kept source shares the stored
    one's manifest)."""
    same_manifest = stored.manifest is source.manifest or stored.manifest.to_dict() == source.manifest.to_dict()
    return not same_manifest or source_row(stored, manifest=False) != source_row(source, manifest=False)


class _Clock:
    """Wall time per stage of a refresh."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = self.laps.get(stage, 0.0) + now - self._last
        self._last = now


def _why_not_append(
    stored: Sequence[Source], sources: Sequence[Source], changed: Sequence[str], *, removing: bool
) -> str | None:
    """None when the refresh only adds sources after the stored ones, each stored one as it was (a kept item whose
    properties or band metadata changed without a new ``updated`` is not: the cube is rewritten with them)."""
    if changed:
        return "changed items"
    if removing:
        return "removed items"
    if len(sources) <= len(stored):
        return "no new source"
    if any(_differ(a, b) for a, b in zip(stored, sources, strict=False)):
        return "stored items' properties or band metadata changed"
    return None


def refresh_cube(
    repo: RepoLike,
    *,
    branch: str = "main",
    tag: str | None = None,
    dry_run: bool = False,
    remove: bool = False,
    force: Iterable[str] = (),
    on_error: OnError = "raise",
    progress: bool = True,
    allow: Iterable[str] | None = None,
    attempts: int = 5,
    check_etags: bool = False,
    credentials: Credentials | None = None,
    modifier: Callable[[Any], Any] | None = None,
    client: Any = None,
    executor: Any = None,
    full_search: bool = False,
    window: timedelta | None = None,
    catalog: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> RefreshReport:
    """Bring a cube up to date with its catalog in one commit, or none when nothing changed.

    A STAC API is asked only for the items that can be new or changed since the last build or refresh that
    committed: those ``updated`` since its search started, less :data:`UPDATED_WINDOW` (one day), when every item
    of the cube carries STAC ``updated`` and the API takes CQL2 filters; else those dated since then, less
    :data:`DATED_WINDOW` (30 days): an item published later than that after its acquisition, or an old item
    changed without ``updated``, is found only by a whole search. Items the narrower search does not return stay
    as they are. The whole stored search runs with ``full_search``, ``remove``, ``force`` (or sources
    ``check_etags`` found changed), for a static catalog or stac-geoparquet file (read whole in any case), and for a
    cube committed by an earlier stackcube; ``RefreshReport.search`` says which ran. A scheduled job that refreshes
    daily can run a whole search weekly (``full_search=True``) to catch what the window misses and list removals.

    Parameters
    ----------
    repo
        The cube's repository (as :func:`stackcube.build_cube` takes it).
    branch, tag
        The branch to refresh, and a tag for the new snapshot.
    dry_run
        Search and compare only: no header read, nothing written; the report says what a refresh would do.
    remove
        Drop items the search no longer finds (by default they stay, and the report lists them).
    force
        Source hrefs to index again even though their STAC ``updated`` did not change
        (:func:`stackcube.verify_cube` finds them).
    check_etags
        First HEAD every source (as :func:`stackcube.verify_cube`) and index again those whose ETag changed:
        catches files replaced in place without a new STAC ``updated``, for one request per source. Sources that no
        longer exist are read again too with ``on_error="skip"`` (indexed where the catalog now points, or left
        out); otherwise they stay as indexed, and a note says so.
    on_error
        ``"raise"`` fails on the first unreadable source (nothing committed); ``"skip"`` commits the rest and lists
        the failures in the report and in the commit's metadata.
    allow
        URL prefixes the cube may read sources from; a cube pointing elsewhere is refused.
    attempts
        How many times to start over when another writer commits to the branch first.
    credentials
        What the sources' hosts want, per URL prefix (:data:`stackcube.settings.Credentials`): request headers for
        header reads of new items (and the checks of ``check_etags``). Never stored.
    modifier
        Called on every item the search finds, as the build's ``modifier`` was (it is not stored in the cube):
        ``planetary_computer.sign_inplace`` to read the new items' headers through signed hrefs. Stored sources are
        compared by the href a build stores for the signed one (without its token), so a new token changes nothing.
    client, executor
        A ``dask.distributed.Client``, or a ``concurrent.futures.Executor``: the new items' headers are read and the
        references written there (the one commit stays here).
    full_search
        Run the whole stored search, not only what can be new or changed (above).
    window
        How far before the last search to ask from (default :data:`UPDATED_WINDOW` or :data:`DATED_WINDOW`).
    catalog
        The cube's catalog URL with the credentials it was built with, which a cube never stores: a query
        parameter such as the Planetary Computer's ``subscription-key`` (any parameter
        :data:`stackcube._hrefs.SECRET_PARAMS` lists is split off a catalog URL when a cube is built). Without
        them it must be the catalog the cube stores (:class:`~stackcube.errors.SearchError` otherwise); a catalog
        that refuses the search for want of them (HTTP 401 or 403) raises a SearchError saying to pass this.
    headers
        Request headers for the catalog (an ``Authorization`` or API key header), as the build's ``headers=`` were:
        never stored either.

    Returns
    -------
    RefreshReport
        What was added, changed, removed and failed, and the new snapshot id (None when nothing changed).
    """
    if attempts < 1:
        msg = f"refresh_cube: attempts={attempts!r}; give 1 or more (how many times to start over after another "
        msg += "writer commits first)"
        raise ValueError(msg)
    allow = None if allow is None else tuple(allow)  # checked more than once: an iterator would be empty after
    settings = with_credentials(current(), credentials)
    workers = resolve_workers(client, executor)
    done = _Read()
    forced = set(force)
    notes: tuple[str, ...] = ()
    if check_etags:
        # imported here, not at the top: stackcube.verify imports this module (verify_cube(fix=True) refreshes)
        from stackcube.verify import gone_note, verify_cube

        checked, _ = verify_cube(repo, branch=branch, progress=progress, allow=allow, credentials=credentials)
        forced.update(href for href, _, _ in checked.changed)
        if on_error == "skip":
            forced.update(checked.gone)  # read again: indexed where the catalog now points, or failed: left out
        elif checked.gone:
            notes = (gone_note(checked.gone),)
    job = _Refresh(
        branch,
        tag,
        dry_run,
        remove,
        on_error,
        progress,
        allow,
        settings,
        modifier=modifier,
        workers=workers,
        full_search=full_search,
        window=window,
        force=frozenset(forced),
        catalog=catalog,
        headers=headers,
    )
    for attempt in range(1, attempts + 1):
        try:
            report = _sync.run(_refresh_once(repo, job, done))
        except ConcurrentUpdateError:
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0.05, 0.2 * attempt))
            continue
        # an attempt that read nothing (the one after another writer's commit, say) counts what earlier ones read
        return dataclasses.replace(report, attempts=attempt, headers_read=done.headers, notes=(*report.notes, *notes))
    raise AssertionError  # pragma: no cover - the loop returns or raises
