"""Sources stage: every chosen asset with the manifest of its TIFF header, read concurrently.

A :class:`Source` is the planner's view of one (item, asset): which band of which time step it becomes, the
manifest of its file (where every tile lives) and what its values mean (:mod:`stackcube.bands`). Header reads go
through :mod:`stackcube.tiff` (one ranged GET for a COG) within the settings' concurrency cap; a source that cannot
be read, or whose band metadata cannot be right, fails the run or, with ``on_error="skip"``, is left out and
listed; each host is then probed once for the conditional requests it honours (:func:`stackcube.tiff.probe_hosts`);
a host whose probe fails (after the retries every read gets) leaves its sources unprotected in this build, which
the plan's report says naming the host and the reason, and is asked again by the next build.
:func:`check_sources` asks every source, with one HEAD each, whether it is still the object that was
indexed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import pystac

from stackcube import _sync
from stackcube._georef import Affine, to_affine
from stackcube._hrefs import redact, stored_href
from stackcube._progress import progress_bar
from stackcube._workers import Workers, run_each
from stackcube.assets import SelectedAsset, band_fields
from stackcube.bands import BandMetadata, Conflict, band_metadata
from stackcube.errors import (
    CorruptTiffError,
    HostError,
    NotGriddableError,
    NothingFoundError,
    SignedHrefError,
    SourceNotFoundError,
    StackcubeError,
    UnknownCrsError,
)
from stackcube.options import CubeOptions
from stackcube.projection import Stated, disagreements, stated
from stackcube.settings import Settings, current
from stackcube.tiff import (
    IfdManifest,
    ObjectInfo,
    TiffManifest,
    head_async,
    host_of,
    probe_hosts,
    read_tiff_async,
    same_etag,
    same_version,
)

__all__ = ["Source", "SourceCheck", "check_sources", "compare", "item_datetime", "read_sources", "stac_digest"]


def item_datetime(item: pystac.Item) -> datetime:
    """When an item was acquired: its ``datetime``, else its ``start_datetime``."""
    if item.datetime is not None:
        return item.datetime
    start = item.common_metadata.start_datetime
    if start is None:
        msg = f"item {item.id} has neither datetime nor start_datetime"
        raise NothingFoundError(msg)
    return start


def stac_digest(asset: SelectedAsset) -> str:
    """A digest of what STAC says of an (item, asset) that a source is made of - the item's properties and the
    asset's fields, not its href (which a signing modifier changes on every search): equal digests and equal
    files make equal sources, so a refresh can keep a stored source without making it again."""
    fields = {k: v for k, v in asset.item.assets[asset.key].to_dict().items() if k != "href"}
    text = json.dumps([asset.item.properties, fields, asset.band], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Source:
    """One (item, asset) with the manifest of its full-resolution image: a candidate for one band of one time step."""

    item_id: str
    """The STAC item's id."""
    asset: str
    """The asset key."""
    band: str
    """The band name it becomes."""
    datetime: datetime
    """Acquisition time (the item's ``datetime``, else ``start_datetime``)."""
    properties: dict[str, Any]
    """The item's properties."""
    manifest: TiffManifest
    """The asset's TIFF manifest (href, ETag, every IFD)."""
    bands: tuple[BandMetadata, ...] = ()
    """What the stored values of each sample mean (nodata, scale, offset, unit); empty: the file's own."""
    conflicts: tuple[Conflict, ...] = ()
    """Where STAC and the file disagreed about them (STAC's values are in :attr:`bands`)."""
    level: int = 0
    """0 for the full-resolution image, n for its n-th internal overview."""
    fields: tuple[dict[str, Any], ...] = ()
    """What the asset says about each band (title, gsd, common name, wavelengths, proj:*), per sample."""
    digest: str = ""
    """:func:`stac_digest` of the item and asset it was made from ("" when not known: read from an older cube)."""
    positions: tuple[str, ...] = ()
    """Where STAC's projection extension and the file disagreed, or STAC's georeferencing stood in for the file's
    (:mod:`stackcube.projection`), one phrase each for the plan's report."""
    unasked: str = ""
    """Why its host could not be asked which conditional requests it honours (a probe that failed in this build),
    so its reads are unprotected though the host may honour them (the report's unprotected line says so); empty
    when the host was asked."""

    def __repr__(self) -> str:
        at = f", level {self.level}" if self.level else ""
        return (
            f"<Source {self.item_id}/{self.asset} as band {self.band!r} of {self.datetime:%Y-%m-%d %H:%M:%S}{at}: "
            f"{self.manifest.href}>"
        )

    @classmethod
    def of(
        cls,
        asset: SelectedAsset,
        manifest: TiffManifest,
        options: CubeOptions | None = None,
        *,
        properties: dict[str, Any] | None = None,
    ) -> Self:
        """The source a chosen asset becomes, given the manifest of its file; ``options`` say whether STAC's band
        metadata counts and what to harmonize; ``properties``, a copy of the item's properties the sources of one
        item share (default: a copy of its own). Raises MetadataError when the band metadata cannot be right."""
        options = options or CubeOptions()
        image = manifest.images[0] if manifest.images else None
        if image is None or image.damage is not None:
            msg = f"{manifest.href}: {image.damage if image is not None else 'no full-resolution image'}"
            raise CorruptTiffError(msg)
        bands, conflicts = band_metadata(
            asset.item,
            asset.key,
            image,
            stac=options.stac_metadata,
            harmonize=options.harmonize,
        )
        fields = band_fields(asset.item.assets[asset.key])
        return cls(
            item_id=asset.item.id,
            asset=asset.key,
            band=asset.band,
            datetime=item_datetime(asset.item),
            properties=dict(asset.item.properties) if properties is None else properties,
            manifest=manifest,
            bands=bands,
            conflicts=conflicts,
            fields=fields,
            digest=stac_digest(asset),
            positions=_positions(manifest, stated(fields[0] if fields else {}, asset.item.properties)),
        )

    @property
    def nodata(self) -> int | float | None:
        """The value that marks missing pixels: what STAC says, else the file's GDAL_NODATA."""
        return self.bands[0].nodata if self.bands else self.manifest.images[0].fill_value

    def metadata(self) -> tuple[BandMetadata, ...]:
        """One BandMetadata per sample: :attr:`bands`, or the file's nodata, scale and offset when there are none."""
        if self.bands:
            return self.bands
        image = self.manifest.images[0]
        scales = list(image.attrs.get("scale_factor") or [])
        offsets = list(image.attrs.get("add_offset") or [])
        return tuple(
            BandMetadata(
                image.fill_value,
                float(scales[k]) if k < len(scales) else 1.0,
                float(offsets[k]) if k < len(offsets) else 0.0,
            )
            for k in range(image.shape[0])
        )

    @property
    def image(self) -> IfdManifest:
        """The IFD of this level: the first full-resolution image, or its ``level``-th overview."""
        full = self.manifest.images[0]
        if self.level == 0:
            return full
        start = self.manifest.ifds.index(full)
        for entry in self.manifest.ifds[start + 1 :]:
            if entry.role == "image":
                break
            if entry.role == "overview" and entry.level == self.level and entry.damage is None:
                return entry
        msg = f"{self.manifest.href} has no overview level {self.level}"
        raise NotGriddableError(msg)

    def at_level(self, level: int) -> Source | None:
        """This source's internal overview ``level`` as a source of its own, or None when the file has none."""
        other = dataclasses.replace(self, level=level)
        try:
            _ = other.image
        except NotGriddableError:
            return None
        return other

    @property
    def stated(self) -> Stated:
        """What the item's projection extension says of this asset's grid."""
        return stated(self.fields[0] if self.fields else {}, self.properties)

    @property
    def crs(self) -> str | None:
        """The full-resolution image's CRS (overviews carry no GeoTIFF tags of their own): the file's, else the one
        STAC states."""
        geo = self.manifest.images[0].geo
        if geo is not None and geo.crs is not None:
            return geo.crs
        return self.stated.crs

    @property
    def base_transform(self) -> Affine | None:
        """The full-resolution image's affine transform: the file's, else STAC's ``proj:transform`` for a file
        without georeferencing (no GeoKeys, no model tags) whose size is STAC's ``proj:shape``; None when neither
        places it (a file placed by ground control points is not placed by a transform STAC states)."""
        full = self.manifest.images[0]
        geo = full.geo
        if geo is not None:
            return None if geo.transform is None else to_affine(geo.transform)
        said = self.stated
        if said.transform is not None and said.shape == full.shape[1:]:
            return said.transform
        return None

    @property
    def transform(self) -> Affine:
        """This level's affine transform; only sources that passed ``grid_key`` are planned, and they have one.

        An overview has the full-resolution origin and pixels larger by the ratio of the image sizes, as GDAL
        and rasterio (``overview_level``) derive it.
        """
        full = self.manifest.images[0]
        base = self.base_transform
        if base is None:
            msg = f"{self.manifest.href} has no affine transform"
            raise NotGriddableError(msg)
        if self.level == 0:
            return base
        image = self.image
        sx, sy = full.shape[2] / image.shape[2], full.shape[1] / image.shape[1]
        return Affine(base.a * sx, base.b * sy, base.c, base.d * sx, base.e * sy, base.f)


def _positions(manifest: TiffManifest, said: Stated) -> tuple[str, ...]:
    """What the plan's report says of a new source's georeferencing: where STAC disagrees with the file, and where
    STAC's stands in for the file's. Raises UnknownCrsError for GeoKeys without a CRS when STAC states none."""
    image = manifest.images[0]
    geo = image.geo
    crs = geo.crs if geo is not None else None
    transform = to_affine(geo.transform) if geo is not None and geo.transform is not None else None
    shape = (image.shape[1], image.shape[2])
    out = list(disagreements(said, crs, transform, shape))
    keys = {k: v for k, v in (geo.geokeys if geo is not None else {}).items() if k != "GTRasterTypeGeoKey"}
    if crs is None and said.crs is None and keys:
        listed = ", ".join(f"{k}={_brief(v)}" for k, v in keys.items())
        msg = (
            f"{manifest.href}: its GeoKeys describe no CRS that GDAL can read ({listed}); state the CRS in the "
            "item's projection extension (proj:code, proj:wkt2 or proj:projjson), or pass on_error='skip' (CLI: "
            "--skip-failed) to build without it"
        )
        raise UnknownCrsError(msg)
    if crs is None and said.crs is not None:
        if geo is not None:
            where = "the file's GeoKeys give no CRS" if keys else "the file has no GeoKeys"
            out.append(f"{where}; STAC's {said.field} is used")
        elif said.transform is not None and said.shape == shape:
            out.append(f"the file has no georeferencing; STAC's {said.field} and proj:transform are used")
    return tuple(out)


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


BATCH = 256
"""Header reads per task on a cluster: enough to keep a worker's requests in flight, few enough to spread them."""


async def read_sources(
    chosen: Sequence[SelectedAsset],
    options: CubeOptions | None = None,
    *,
    progress: bool = True,
    settings: Settings | None = None,
    workers: Workers | None = None,
    require_some: bool = True,
) -> tuple[list[Source], list[str]]:
    """Read the header of every chosen asset concurrently; return the sources and, with ``options.on_error="skip"``,
    the ones that could not be read or described as ``item/asset: reason`` (with ``"raise"``, the first failure is
    raised; with ``require_some``, a build's, also when none could be read). With ``workers`` (a
    ``dask.distributed.Client`` or a ``concurrent.futures.Executor``), the headers are read there."""
    options = options or CubeOptions()
    settings = settings or current()
    with progress_bar(len(chosen), "reading TIFF headers", "header", enabled=progress) as advance:
        manifests: list[TiffManifest | StackcubeError] = [StackcubeError("not read")] * len(chosen)
        readable = []
        for n, asset in enumerate(chosen):
            try:
                _storable(asset, settings)  # refused before any request
                readable.append(n)
            except StackcubeError as exc:
                manifests[n] = exc
                advance(1)
        hrefs = [chosen[n].href for n in readable]
        if workers is None:
            read = await read_headers(hrefs, settings, advance)
        else:
            read = await asyncio.to_thread(_read_on_workers, workers, hrefs, settings, advance)
        for n, manifest in zip(readable, read, strict=True):
            manifests[n] = manifest
    probed, unasked = await probe_hosts(manifests, settings)
    # the host a probe stood for, from the href read (a signed one's host, before the cube's form of it)
    hosts = [host_of(m.href) if isinstance(m, TiffManifest) else "" for m in probed]
    sources: list[Source] = []
    failures: list[tuple[SelectedAsset, StackcubeError]] = []
    copies: dict[int, dict[str, Any]] = {}  # an item's properties, copied once for all its bands (items stay alive)
    for asset, manifest, host in zip(chosen, probed, hosts, strict=True):
        try:
            if isinstance(manifest, StackcubeError):
                raise manifest
            properties = copies.get(id(asset.item))
            if properties is None:
                properties = copies[id(asset.item)] = dict(asset.item.properties)
            source = Source.of(asset, _stored(manifest, asset, settings), options, properties=properties)
        except StackcubeError as exc:
            failures.append((asset, exc))
            continue
        if host in unasked:
            source = dataclasses.replace(source, unasked=unasked[host])
        sources.append(source)
    if failures and (options.on_error == "raise" or (require_some and not sources)):
        if len(failures) == 1:
            raise failures[0][1]
        raise _all_failed(failures, len(chosen), skip=options.on_error == "skip")
    failed = []
    for asset, error in failures:
        where = f"{asset.item.id}/{asset.key}"
        failed.append(f"{where}: {str(error).removeprefix(f'{where}: ')}")
    return sources, failed


async def read_headers(
    hrefs: Sequence[str], settings: Settings, advance: Callable[[int], Any] | None = None
) -> list[TiffManifest | StackcubeError]:
    """The manifest of each href, read concurrently (within ``settings.max_concurrency``), or the error it gave."""

    async def one(href: str) -> TiffManifest | StackcubeError:
        try:
            return await read_tiff_async(href, settings=settings)
        except StackcubeError as exc:
            return exc
        finally:
            if advance is not None:
                advance(1)

    return list(await asyncio.gather(*(one(h) for h in hrefs)))


def _read_batch(hrefs: Sequence[str], settings: Settings) -> list[TiffManifest | StackcubeError]:
    """A worker's share of the header reads (run on a Dask worker: manifests and errors are plain data)."""
    return _sync.run(read_headers(hrefs, settings))


def _read_on_workers(
    workers: Workers, hrefs: Sequence[str], settings: Settings, advance: Callable[[int], Any]
) -> list[TiffManifest | StackcubeError]:
    """The headers read on ``workers``, in batches of about :data:`BATCH` (each worker reads its batches with the
    same retries and concurrency cap as one process); a Dask worker that dies has its batches read again by
    another. Progress advances as batches finish."""
    batches = [list(hrefs[i : i + BATCH]) for i in range(0, len(hrefs), BATCH)]
    read: list[list[TiffManifest | StackcubeError]] = [[] for _ in batches]

    def done(n: int, manifests: list[TiffManifest | StackcubeError]) -> None:
        read[n] = manifests
        advance(len(manifests))

    run_each(workers, _read_batch, [(batch, settings) for batch in batches], done)
    return [manifest for batch in read for manifest in batch]


def _storable(asset: SelectedAsset, settings: Settings) -> tuple[str, str | None]:
    """The href a cube stores for ``asset`` (without a credential: :func:`stackcube._hrefs.stored_href`); the error
    names the item and the asset."""
    try:
        return stored_href(asset.href, settings.s3.endpoint, settings.azure.emulator)
    except SignedHrefError as exc:
        raise SignedHrefError(f"asset {asset.key} of item {asset.item.id}: {exc}") from None


def _stored(manifest: TiffManifest, asset: SelectedAsset, settings: Settings) -> TiffManifest:
    """The manifest as a cube keeps it: its href without a credential (unchanged for most hrefs)."""
    stored, account = _storable(asset, settings)
    if stored == asset.href:
        return manifest
    return dataclasses.replace(manifest, href=stored, account=account)


def _all_failed(failures: Sequence[tuple[SelectedAsset, StackcubeError]], total: int, *, skip: bool) -> StackcubeError:
    """One error for many failed sources: how many, a count per reason with the first few hrefs, what to do."""
    remedies = {exc.remedy for _, exc in failures}
    remedy = remedies.pop() if len(remedies) == 1 else None  # said once, after the reasons, in the caller's words
    by_reason: dict[str, list[str]] = {}
    for asset, exc in failures:
        text = str(exc).removesuffix(f"; {redact(remedy.python)}") if remedy is not None else str(exc)
        by_reason.setdefault(_reason(text), []).append(asset.href)
    hosts = {_reason(str(exc)) for _, exc in failures if isinstance(exc, HostError)}  # they name the host
    parts = []
    for reason, hrefs in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(hrefs[:3]) + (f" and {len(hrefs) - 3} more" if len(hrefs) > 3 else "")
        parts.append(f"{len(hrefs)} x {reason}" + ("" if reason in hosts else f" ({shown})"))
    n = len(failures)
    head = f"all {total} sources failed" if n == total else f"{n} of {total} sources could not be read"
    todo = "" if hosts == set(by_reason) or remedy is not None else "; check the hrefs, the network and the credentials"
    if not skip and n != total and remedy is None:
        todo += "; or pass on_error='skip' (CLI: --skip-failed) to build from the others"
    kinds = {type(exc) for _, exc in failures}
    kind = kinds.pop() if len(kinds) == 1 else StackcubeError
    return kind(f"{head}: {'; '.join(parts)}{todo}", remedy=remedy)


def _reason(message: str) -> str:
    """A failure's message without hrefs, paths and timings, so failures of one kind group together."""
    first, _, rest = message.partition(" ")
    reason = rest.removeprefix(": ") if ("://" in first or first.startswith("/")) else message
    reason = re.sub(r"[a-z0-9+]+://[^\s']+|(?<![\w.])/[^\s:)]+|(?<=location |for path )[^\s:)]+", "<href>", reason)
    return re.sub(r" in [0-9.]+\s*(?:µs|us|ms|s)\b", "", reason)[:300]


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """What one HEAD (or one-byte GET, where HEAD is refused) said about an indexed source."""

    href: str
    """The source."""
    recorded: str
    """What it was when indexed, in the validator that differs now (``ETag "x"``, ``size N``, ...)."""
    found: str | None = None
    """The same validator now, when it differs; None when every recorded validator is unchanged."""
    error: str | None = None
    """Why it could not be asked (vanished, refused, unreachable); None when it answered."""
    gone: bool = False
    """The host said the object does not exist (deleted or moved), rather than failing to answer."""
    size_only: bool = False
    """The host gave neither ETag nor Last-Modified: only the size was compared, so a replacement of the same
    size cannot be seen."""

    @property
    def changed(self) -> bool:
        """The object answered and is not the one indexed."""
        return self.error is None and self.found is not None


def compare(manifest: TiffManifest, info: ObjectInfo) -> tuple[str, str] | None:
    """The first validator of ``manifest`` that ``info`` contradicts, as (recorded, found); None when none does.

    Every validator recorded counts: the ETag (weakly compared: ``W/"x"`` and ``"x"`` are the same version),
    Last-Modified and size; one the host no longer sends is not evidence of a change, and the same strong ETag is
    the same version whatever Last-Modified says (:func:`stackcube.tiff.same_version`, as a header read judges it).
    """
    if manifest.etag and info.etag and not same_etag(manifest.etag, info.etag):
        return f"ETag {manifest.etag}", f"ETag {info.etag}"
    modified = manifest.last_modified and info.last_modified and manifest.last_modified != info.last_modified
    if modified and not same_version(manifest.etag, info.etag):
        return (
            f"Last-Modified {manifest.last_modified:%Y-%m-%d %H:%M:%S}",
            f"Last-Modified {info.last_modified:%Y-%m-%d %H:%M:%S}",
        )
    if manifest.size != info.size:
        return f"size {manifest.size}", f"size {info.size}"
    return None


async def check_sources(
    sources: Sequence[Source], *, progress: bool = True, settings: Settings | None = None
) -> list[SourceCheck]:
    """Ask every source concurrently (within the concurrency cap) what it is now and compare every validator its
    manifest recorded (:func:`compare`)."""
    settings = settings or current()
    with progress_bar(len(sources), "checking sources", "source", enabled=progress) as advance:

        async def one(source: Source) -> SourceCheck:
            manifest = source.manifest
            size_only = not manifest.etag and manifest.last_modified is None
            try:
                info = await head_async(manifest.href, settings=settings, account=manifest.account)
            except StackcubeError as exc:
                gone = isinstance(exc, SourceNotFoundError)
                return SourceCheck(manifest.href, manifest.etag or "", error=str(exc), gone=gone, size_only=size_only)
            finally:
                advance(1)
            differs = compare(manifest, info)
            if differs is None:
                return SourceCheck(manifest.href, manifest.etag or "", size_only=size_only)
            return SourceCheck(manifest.href, differs[0], differs[1], size_only=size_only)

        return list(await asyncio.gather(*(one(s) for s in sources)))
