"""Whether a host's validators can protect reads: one cheap probe per host, at build time.

A virtual reference is only as safe as the host's answer to a conditional request. A host that ignores If-Match
(or If-Unmodified-Since) returns a replaced file's bytes as if nothing happened; an ETag that changes on every
response matches nothing, so every read of an unchanged file would fail. Neither shows in a header read, so each
host is asked, with a sample source, up to three one-byte GETs:

1. ``If-Match`` with the ETag the header read saw: must succeed and report the same ETag (else the ETag is per
   response, and is dropped as if the host sent none);
2. ``If-Match`` with a tag no object has: must be refused (412), else the host ignores If-Match;
3. ``If-Unmodified-Since`` a day before the Last-Modified it sent: must be refused, else the host ignores it.

Each source then keeps the strongest validator its host honours (:attr:`TiffManifest.validator`), or none: an
*unprotected* source, which the plan report, ``stackcube info`` and ``verify_cube`` name. Results are kept per host
for the life of the process (:func:`stackcube.tiff.clear_stores` forgets them).

Each probe GET is retried as every read is (:func:`stackcube.tiff._source.get_range`: transient failures, 5xx,
429, timeouts, dropped connections, within ``settings.retries`` and ``settings.retry_deadline``). A probe that
still fails answers nothing: the host's sources are left unprotected *for this build*, which names the host and the
reason (:func:`probe_hosts` returns it for the plan's report), and nothing is kept, so the next build asks again.
Caching the failure as "honours nothing" would have left every later build in a long-running process (a scheduler
refreshing cubes for months) unprotected without a word.

No library does this: obstore and Icechunk send conditional requests, but neither asks whether a host honours them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlparse

from stackcube.errors import SourceChangedError, StackcubeError
from stackcube.settings import Settings
from stackcube.tiff import _source
from stackcube.tiff._model import TiffManifest, is_weak, validator_of
from stackcube.tiff._source import get_range, limit, resolve

__all__ = ["UNASKED", "HostChecks", "clear_stores", "host_of", "probe_hosts"]

PROBE_TAG = '"stackcube-probe-no-such-version"'
"""An entity-tag no object has: a host that honours If-Match refuses it."""


@dataclass(frozen=True, slots=True)
class HostChecks:
    """What one host does with conditional requests (None: not asked, its sources did not need it)."""

    host: str
    """``scheme://netloc``."""
    stable_etag: bool | None = None
    """The ETag is the same on the next response (False: a new one each time, unusable)."""
    if_match: bool | None = None
    """A wrong If-Match is refused with 412."""
    if_unmodified_since: bool | None = None
    """An If-Unmodified-Since before the Last-Modified is refused with 412."""


_known: dict[str, HostChecks] = {}


def clear_stores() -> None:
    """Drop every cached store, request limit and host probe result: the next request makes new connections and
    the next build asks each host again."""
    _source.clear_stores()
    _known.clear()


def host_of(href: str) -> str:
    """``scheme://netloc`` of an href: what one probe stands for."""
    parsed = urlparse(href)
    return f"{parsed.scheme}://{parsed.netloc}"


async def _refused(href: str, settings: Settings, **condition: object) -> tuple[bool, str | None]:
    """GET the first byte under ``condition``: whether the host refused it (412), and the ETag it sent. The GET is
    retried as every read is (``get_range``); what still fails after that is raised."""
    location = resolve(href, settings=settings)
    try:
        async with limit(settings):
            _, info = await get_range(location, 0, 1, settings=settings, **condition)  # type: ignore[arg-type]
    except SourceChangedError:
        return True, None
    return False, info.etag


async def _probe(host: str, manifests: Sequence[TiffManifest], settings: Settings) -> HostChecks:
    checks = HostChecks(host)
    strong = next((m for m in manifests if m.etag and not is_weak(m.etag)), None)
    if strong is not None:
        refused, etag = await _refused(strong.href, settings, if_match=strong.etag)
        stable = not refused and etag == strong.etag
        checks = dataclasses.replace(checks, stable_etag=stable)
        if stable:
            refused, _ = await _refused(strong.href, settings, if_match=PROBE_TAG)
            checks = dataclasses.replace(checks, if_match=refused)
    dated = next((m for m in manifests if m.last_modified is not None), None)
    if dated is not None and dated.last_modified is not None:
        before = dated.last_modified - timedelta(days=1)
        refused, _ = await _refused(dated.href, settings, if_unmodified_since=before)
        checks = dataclasses.replace(checks, if_unmodified_since=refused)
    return checks


def _answers(checks: HostChecks | None, manifests: Sequence[TiffManifest]) -> bool:
    """Whether an earlier probe answered what these manifests need."""
    if checks is None:
        return False
    if checks.stable_etag is None and any(m.etag and not is_weak(m.etag) for m in manifests):
        return False
    return checks.if_unmodified_since is not None or all(m.last_modified is None for m in manifests)


def _apply(manifest: TiffManifest, checks: HostChecks) -> TiffManifest:
    etag = None if checks.stable_etag is False else manifest.etag
    validator = validator_of(etag, manifest.last_modified)
    if validator == "etag" and not checks.if_match:
        validator = validator_of(None, manifest.last_modified)
    if validator == "last-modified" and not checks.if_unmodified_since:
        validator = None
    if (etag, validator) == (manifest.etag, manifest.validator):
        return manifest
    return dataclasses.replace(manifest, etag=etag, validator=validator)


async def probe_hosts(
    manifests: Sequence[TiffManifest | StackcubeError], settings: Settings
) -> tuple[list[TiffManifest | StackcubeError], dict[str, str]]:
    """Probe each host of ``manifests`` once (hosts probed before in this process are not asked again); return the
    manifests with the validators their hosts honour, and why each host whose probe failed could not be asked.

    A probe's GETs are retried as reads are; a probe that fails even so (the host went away, or kept answering
    503) does not fail the build: that host's sources are returned unprotected (validator None), the host is in
    the returned mapping, and nothing is remembered of it, so the next call asks again. Errors in ``manifests`` pass
    through.
    """
    by_host: dict[str, list[TiffManifest]] = {}
    for m in manifests:
        if isinstance(m, TiffManifest) and m.validator is not None:
            by_host.setdefault(host_of(m.href), []).append(m)
    todo = [h for h in by_host if not _answers(_known.get(h), by_host[h])]
    unasked: dict[str, str] = {}

    async def one(host: str) -> None:
        try:
            _known[host] = await _probe(host, by_host[host], settings)
        except StackcubeError as exc:
            unasked[host] = _reason(exc)

    await asyncio.gather(*(one(h) for h in todo))

    def checks(m: TiffManifest) -> HostChecks:
        host = host_of(m.href)
        return UNASKED if host in unasked else _known[host]

    out = [_apply(m, checks(m)) if isinstance(m, TiffManifest) and m.validator is not None else m for m in manifests]
    return out, unasked


UNASKED = HostChecks("", stable_etag=None, if_match=False, if_unmodified_since=False)
"""What a host whose probe failed is taken to honour for one build: no conditional request, so its sources are
unprotected; their ETags are kept (not known to change with every response), for verify_cube to compare."""


def _reason(exc: StackcubeError) -> str:
    """Why a probe failed, in a few words for the plan's report (the error names the href; the note names the host)."""
    text = str(exc).split("\n", 1)[0]
    return text if len(text) <= 300 else text[:297] + "..."
