"""Cube stage: the plan of a whole cube (one array per grid, unions of the arrays on one pixel lattice) and a report
of every decision. Pure data and pure functions: what the store writes.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stackcube._text import counted
from stackcube.assets import SkippedAsset, summarize_skipped
from stackcube.bands import S2_OFFSET_BASELINE, Conflict, baseline
from stackcube.errors import NothingFoundError
from stackcube.grid import GridKey, group_by_grid, unit_suffix
from stackcube.options import CubeOptions
from stackcube.plan import ArrayPlan, build_array, split_by_meaning
from stackcube.search import Query
from stackcube.sources import Source
from stackcube.tiff import host_of
from stackcube.union import UnionPlan, build_unions

__all__ = ["CubePlan", "plan_sources", "unprotected_lines"]


@dataclass(frozen=True, slots=True, eq=False)
class CubePlan:
    """Everything the writer needs, and a report of every decision."""

    query: Query
    """The search the plan came from."""
    arrays: tuple[ArrayPlan, ...]
    """One stored array per grid, each with its overview levels."""
    skipped: tuple[SkippedAsset, ...] = ()
    """Assets asked for (or looking like data) that do not become bands, with reasons."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Other decisions worth telling (sources that could not be gridded, arrays outside the bbox)."""
    failed: tuple[str, ...] = ()
    """``item/asset: reason`` for each source that could not be read and was left out (``on_error="skip"``)."""
    sources: tuple[Source, ...] = ()
    """Every source that was read, with its manifest: stored in the cube so a refresh rereads no header."""
    options: CubeOptions = field(default_factory=CubeOptions)
    """How sources were chosen and placed: stored for refreshes."""
    unions: tuple[UnionPlan, ...] = ()
    """Arrays on one pixel lattice presented as one array each (see :class:`~stackcube.union.UnionPlan`)."""

    @property
    def groups(self) -> tuple[ArrayPlan, ...]:
        """Deprecated name of :attr:`arrays`."""
        warnings.warn("CubePlan.groups is deprecated; use CubePlan.arrays", DeprecationWarning, stacklevel=2)
        return self.arrays

    @property
    def standalone(self) -> tuple[ArrayPlan, ...]:
        """The arrays that are not members of a union."""
        members = {m for u in self.unions for m in u.members}
        return tuple(a for a in self.arrays if a.name not in members)

    @property
    def array_names(self) -> list[str]:
        """The arrays a user opens first: unions, then the arrays on their own (a union's members open too)."""
        return [u.name for u in self.unions] + [a.name for a in self.standalone]

    def report(self) -> str:
        """A human-readable account of the grouping: the arrays a user opens first, then how each was made."""
        member_of = {m: u for u in self.unions for m in u.members}
        arrays = [u.describe() for u in self.unions] + [a.describe() for a in self.standalone]
        n = len(arrays)
        lines = [f"{counted(n, 'array')}: " + "; ".join(arrays)]
        crss = {a.crs for a in self.arrays}
        if len(crss) > 1:
            lines.append(f"the sources are on {len(crss)} CRSs; each grid is its own array")
        for u in self.unions:
            lines.append(f"  {u.name}: {u.describe()}, members:")
            lines.extend(_array_lines([a for a in self.arrays if member_of.get(a.name) is u], "    "))
        lines.extend(_array_lines(self.standalone, "  "))
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.extend(f"  could not be read: {failure}" for failure in self.failed)
        lines.extend(unprotected_lines(self.sources))
        if self.skipped:
            n_items = len({s.item_id for s in self.sources} | {s.item_id for s in self.skipped})
            lines.append(f"{counted(len(self.skipped), 'asset')} skipped:")
            lines.extend(f"  {line}" for line in summarize_skipped(self.skipped, n_items))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def __repr__(self) -> str:
        arrays = "; ".join(f"{name}: {a}" for name, a in self._summaries())
        counts = f"{len(self.sources)} sources" + "".join(
            f", {len(v)} {k}" for k, v in (("skipped", self.skipped), ("failed", self.failed)) if v
        )
        return f"<CubePlan of {self.query.catalog or 'items'}: {arrays}; {counts}; print() it for the whole report>"

    def _summaries(self) -> list[tuple[str, str]]:
        out = [(u.name, u.describe()) for u in self.unions]
        return out + [(a.name, a.describe()) for a in self.standalone]


def unprotected_lines(sources: Sequence[Source], indent: str = "  ") -> list[str]:
    """One line per host whose sources no read can check (:attr:`stackcube.tiff.TiffManifest.validator` None):
    how many, and why."""
    by_host: dict[str, list[Source]] = {}
    for s in sources:
        if s.manifest.validator is None:
            by_host.setdefault(host_of(s.manifest.href), []).append(s)
    lines = []
    for host, some in sorted(by_host.items()):
        unasked = next((s.unasked for s in some if s.unasked), "")
        sent = any(s.manifest.etag or s.manifest.last_modified for s in some)
        if unasked:  # the probe failed in this build: the host may honour them, and the next build asks again
            why = (
                f"could not be asked in this build whether it honours conditional requests ({unasked}); the next "
                "build asks again, and refresh_cube(repo, force=[their hrefs]) re-indexes them asking again"
            )
        elif sent:
            why = "ignores conditional requests (If-Match, If-Unmodified-Since)"
        else:
            why = "sends no ETag or Last-Modified"
        lines.append(
            f"{indent}unprotected: {counted(len(some), 'source')} on {host}: the host {why}, so a "
            "replaced file would be read without an error; verify_cube (stackcube verify) compares what it can"
        )
    return lines


def _array_lines(arrays: Sequence[ArrayPlan], indent: str) -> list[str]:
    lines = []
    for a in arrays:
        n = len(a.sources)
        placed = f", {n} sources placed side by side at tile offsets" if a.mosaic else ""
        lines.append(f"{indent}{a.name}: {a.describe()}, {a.n_chunks} chunks from {counted(n, 'source')}{placed}")
        if a.overviews:
            sizes = ", ".join(f"{o.shape[2]} x {o.shape[3]}" for o in a.overviews)
            lines.append(f"{indent}  {counted(len(a.overviews), 'overview level')}: {sizes} px")
    return lines


def _array_name(key: GridKey, taken: dict[str, int]) -> str:
    """``EPSG32735_10m`` (the CRS, pixel size and unit: ``EPSG2263_10ftUS``; ``EPSG4326_0p0001`` in degrees),
    ``custom_30`` for a CRS without a code, ``_2``, ``_3``... when another array already has the name.

    ``taken`` holds the names given, each with the suffix the next look for a name on its base starts from: names
    are only ever added, so the ones tried before are still taken (a union of 5,000 scenes is 5,000 arrays of one
    base, and trying ``_2``, ``_3``... from the start each time took 2 s of its plan)."""
    epsg = key.crs.startswith("EPSG:")
    crs = re.sub(r"[^A-Za-z0-9]", "", key.crs) if epsg else "custom"
    res = f"{abs(key.resolution[0]):g}".replace(".", "p")
    name = f"{crs}_{res}{unit_suffix(key.crs) if epsg else ''}"
    base, n = name, taken.get(name, 2)
    if name in taken:
        name, n = f"{base}_{n}", n + 1
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken[base] = n
    taken.setdefault(name, 2)
    return name


def plan_sources(
    query: Query,
    sources: Sequence[Source],
    options: CubeOptions | None = None,
    *,
    skipped: Sequence[SkippedAsset] = (),
    failed: Sequence[str] = (),
) -> CubePlan:
    """Group read sources by grid and place them: one ArrayPlan per grid, and the unions among them.

    Raises
    ------
    NothingFoundError
        No source can be gridded, or no source grid overlaps the query's bbox.
    """
    options = options or CubeOptions()
    by_grid, rejected = group_by_grid(sources)
    notes = _position_notes(sources)
    notes += [f"{s.item_id}/{s.asset} has {why}; skipped" for s, why in rejected]
    notes += _nodata_notes(list(by_grid))
    arrays: list[ArrayPlan] = []
    taken: dict[str, int] = {}
    for key, members in sorted(by_grid.items(), key=lambda kv: (kv[0].crs, abs(kv[0].resolution[0]))):
        parts = split_by_meaning(members)
        names = [_array_name(key, taken) for _ in parts]
        if len(parts) > 1:
            notes.append(
                f"{', '.join(names)}: sources of one time step and band state different scales or offsets; "
                "each (scale, offset) is its own array"
            )
        for name, part in zip(names, parts, strict=True):
            array = build_array(name, key, part, options, bbox=query.bbox)
            if array is None:
                notes.append(f"{name} ({key.describe()}) lies outside the bbox; dropped")
                continue
            arrays.append(array)
            notes += _meaning_notes(array, part)
    if not arrays:
        if not by_grid:
            msg = f"none of the {len(sources)} sources can be placed on a grid: " + "; ".join(notes[:5])
        else:
            msg = f"no source grid overlaps the bbox {query.bbox}: " + "; ".join(notes[:5])
        raise NothingFoundError(msg)
    unions, union_notes = build_unions(arrays, options)
    return CubePlan(
        query=query,
        arrays=tuple(arrays),
        skipped=tuple(skipped),
        notes=tuple(notes + list(union_notes)),
        failed=tuple(failed),
        sources=tuple(sources),
        options=options,
        unions=unions,
    )


def _some(names: Sequence[str], shown: int = 2) -> str:
    """``a, b`` or ``a, b and 3 more``: the sources a report line is about."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _position_notes(sources: Sequence[Source]) -> list[str]:
    """Where STAC's projection extension and the files disagreed, or stood in for them (:attr:`Source.positions`),
    a line per phrase naming the sources."""
    where: dict[str, list[str]] = {}
    for s in sources:
        for phrase in s.positions:
            where.setdefault(phrase, []).append(f"{s.item_id}/{s.asset}")
    return [f"{_some(names)}: {phrase}" for phrase, names in where.items()]


def _nodata_notes(keys: Sequence[GridKey]) -> list[str]:
    """Why grids that differ only in nodata are not one array."""
    by_rest: dict[GridKey, list[str]] = {}
    for key in keys:
        by_rest.setdefault(dataclasses.replace(key, fill_value=""), []).append(key.fill_value)
    return [
        f"sources on {rest.describe()} state different nodata ({', '.join(sorted(values))}); each is its own array"
        for rest, values in by_rest.items()
        if len(values) > 1
    ]


def _meaning_notes(array: ArrayPlan, sources: Sequence[Source]) -> list[str]:
    """Where STAC and the files disagreed (STAC wins), and Sentinel-2 DNs of two encodings in one array."""
    notes = []
    where: dict[Conflict, list[str]] = {}
    for s in sources:
        for conflict in s.conflicts:
            where.setdefault(conflict, []).append(f"{s.item_id}/{s.asset}")
    if where:
        said = "; ".join(f"{conflict} ({_some(names)})" for conflict, names in where.items())
        notes.append(f"{array.name}: STAC and the files disagree ({said}); STAC's values are used")
    versions = {b for s in sources if (b := baseline(s.properties)) is not None}
    offset_stated = bool(np.any(array.offset != 0))
    if versions and min(versions) < S2_OFFSET_BASELINE <= max(versions) and not offset_stated:
        notes.append(
            f"{array.name}: Sentinel-2 processing baselines before and from 04.00 in one array, and no offset: "
            "the digital numbers of the later items are 1000 higher for the same reflectance; pass "
            "harmonize='sentinel-2' to apply ESA's offset, or use a catalog that states raster:bands offsets"
        )
    return notes
