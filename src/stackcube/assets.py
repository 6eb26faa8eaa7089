"""Asset stage: which assets of each item become bands, and why the others are skipped.

An asset is chosen by its key (``"B04"``), by the ``common_name`` of its single ``eo:bands`` entry (``"red"``), or,
when nothing is asked, every data asset that is a GeoTIFF. Everything not chosen that was asked for is reported.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pystac

from stackcube._text import counted
from stackcube.errors import MissingAssetWarning, NothingFoundError
from stackcube.search import Query, require_items

__all__ = [
    "BAND_ENTRY_FIELDS",
    "ItemAssets",
    "SelectedAsset",
    "SkippedAsset",
    "band_fields",
    "check_asked",
    "choose_assets",
    "common_name",
    "item_assets",
    "select_assets",
    "summarize_skipped",
]

TIFF_MEDIA_TYPES = ("image/tiff", "image/vnd.stac.geotiff", "image/geotiff")
NOT_DATA_ROLES = {"thumbnail", "overview", "visual-preview", "metadata", "tiles", "preview"}


@dataclass(frozen=True, slots=True)
class SelectedAsset:
    """One (item, asset) that becomes a band."""

    item: pystac.Item
    """The item."""
    key: str
    """The asset key in the item."""
    band: str
    """The band name in the cube: the name asked for (key or common name), else the key."""
    href: str
    """The asset's href, absolute."""


@dataclass(frozen=True, slots=True)
class SkippedAsset:
    """An (item, asset) that was asked for, or looked like data, but does not become a band."""

    item_id: str
    """The item's id."""
    key: str
    """The asset key, or the name asked for when the item has no such asset."""
    reason: str
    """Why, in words a person can act on."""
    available: tuple[str, ...] = ()
    """When the item has no asset of that name: the keys (and common names) it has, to choose from."""

    def __str__(self) -> str:
        return f"{self.item_id}/{self.key}: {self.reason}"


def summarize_skipped(skipped: Sequence[SkippedAsset], n_items: int, *, limit: int = 20) -> list[str]:
    """One line per (name, reason) instead of one per item: how many items, and for a name no item has, the
    assets the items do have."""
    groups: dict[tuple[str, str], list[SkippedAsset]] = {}
    for s in skipped:
        groups.setdefault((s.key, s.reason), []).append(s)
    lines = []
    for (key, reason), members in groups.items():
        where = f"all {n_items} items" if len(members) == n_items and n_items > 1 else _items(members)
        line = f"{key!r} in {where}: {reason}"
        available = list(dict.fromkeys(name for s in members for name in s.available))
        if available:
            shown = ", ".join(available[:limit]) + (
                f", ... ({len(available)} in all)" if len(available) > limit else ""
            )
            line += f"; the items have {shown}"
        lines.append(line)
    return lines


def _items(members: Sequence[SkippedAsset]) -> str:
    ids = [s.item_id for s in members]
    listed = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    return f"{counted(len(ids), 'item')} ({listed})"


def is_geotiff(asset: pystac.Asset) -> bool:
    """True when the media type says GeoTIFF, or (without a media type) the href ends in .tif/.tiff."""
    media = (asset.media_type or "").lower()
    if media:
        return media.startswith(TIFF_MEDIA_TYPES)
    return asset.href.lower().split("?", 1)[0].endswith((".tif", ".tiff"))


def common_name(asset: pystac.Asset) -> str | None:
    """The common name of an asset's single band: ``eo:bands[0].common_name`` (STAC 1.0) or
    ``bands[0]["eo:common_name"]`` (1.1); None when it has several bands or none."""
    fields = asset.extra_fields
    bands = fields.get("eo:bands") or fields.get("bands") or []
    if len(bands) == 1:
        name = bands[0].get("common_name") or bands[0].get("eo:common_name")
        return str(name) if name is not None else None
    return None


BAND_ENTRY_FIELDS = ("common_name", "center_wavelength", "full_width_half_max", "solar_illumination", "gsd")
"""Fields of an ``eo:bands`` (STAC 1.0) or ``bands`` (1.1, ``eo:`` prefixed) entry presented along ``band``."""


def band_fields(asset: pystac.Asset) -> tuple[dict[str, Any], ...]:
    """What an asset says about each of its bands, as stackstac presents it along ``band``: the asset's ``title``,
    ``gsd`` and ``proj:*`` fields, and each band entry's :data:`BAND_ENTRY_FIELDS` (one dict per entry, or one for
    an asset without entries). Values and meanings of pixels (nodata, scale, offset) are :mod:`stackcube.bands`'."""
    fields = asset.extra_fields
    shared: dict[str, Any] = {"title": asset.title} if asset.title else {}
    shared |= {k: v for k, v in fields.items() if k == "gsd" or k.startswith("proj:")}
    entries = fields.get("eo:bands") or fields.get("bands") or [{}]
    out = []
    for entry in entries:
        own = {k.removeprefix("eo:"): v for k, v in entry.items() if k.removeprefix("eo:") in BAND_ENTRY_FIELDS}
        out.append(shared | own)
    return tuple(out)


def _names(item: pystac.Item) -> tuple[str, ...]:
    """The names an asset of the item can be asked for by: its key, with its common name in brackets."""
    names = []
    for key, asset in item.assets.items():
        common = common_name(asset)
        names.append(f"{key} ({common})" if common and common != key else key)
    return tuple(names)


def _not_data(roles: set[str]) -> str:
    kind = "a thumbnail" if "thumbnail" in roles else "an overview or preview"
    return f"{kind} (roles {sorted(roles)}), not data"


def _pick(item: pystac.Item, name: str) -> tuple[str, pystac.Asset] | None:
    if name in item.assets:
        return name, item.assets[name]
    matches = [(k, a) for k, a in item.assets.items() if common_name(a) == name]
    return matches[0] if len(matches) == 1 else None


def select_assets(
    items: Iterable[pystac.Item], assets: Sequence[str] | None = None
) -> tuple[list[SelectedAsset], list[SkippedAsset]]:
    """Choose the assets that become bands; return them and the ones skipped, with reasons.

    Parameters
    ----------
    items
        The items of the search.
    assets
        Asset keys or ``eo:bands`` common names, in band order; None takes every data asset that is a GeoTIFF.

    Examples
    --------
    >>> chosen, skipped = select_assets(items, ["red", "nir"])  # doctest: +SKIP
    >>> [str(s) for s in skipped]  # doctest: +SKIP
    ['S2B_.../nir: no asset with that key or common name']
    """
    chosen: list[SelectedAsset] = []
    skipped: list[SkippedAsset] = []
    for item in items:
        if assets is None:
            for key, asset in item.assets.items():
                roles = set(asset.roles or ["data"])
                if roles & NOT_DATA_ROLES and "data" not in roles:
                    if is_geotiff(asset):
                        skipped.append(SkippedAsset(item.id, key, _not_data(roles)))
                    continue
                if not is_geotiff(asset):
                    if "data" in roles and asset.roles:
                        skipped.append(SkippedAsset(item.id, key, f"not a TIFF (type {asset.media_type!r})"))
                    continue
                chosen.append(SelectedAsset(item, key, key, asset.get_absolute_href() or asset.href))
            continue
        for name in assets:
            found = _pick(item, name)
            if found is None:
                reason = "no asset with that key or common name"
                skipped.append(SkippedAsset(item.id, name, reason, available=_names(item)))
                continue
            key, asset = found
            roles = set(asset.roles or ["data"])
            if not is_geotiff(asset):
                skipped.append(SkippedAsset(item.id, key, f"not a TIFF (type {asset.media_type!r})"))
                continue
            if roles & NOT_DATA_ROLES and "data" not in roles:
                skipped.append(SkippedAsset(item.id, key, _not_data(roles)))
                continue
            chosen.append(SelectedAsset(item, key, name, asset.get_absolute_href() or asset.href))
    return chosen, skipped


@dataclass(frozen=True, slots=True)
class ItemAssets:
    """What one found item gives the cube: its chosen and skipped assets, and what the checks across items need to
    know of its asset names. Made as each item arrives (:func:`item_assets`), so that a search of many items keeps
    only these, not the items' every asset."""

    item_id: str
    """The item's id."""
    chosen: tuple[SelectedAsset, ...]
    """Its assets that become bands."""
    skipped: tuple[SkippedAsset, ...]
    """Its assets asked for, or that looked like data, that do not."""
    names: tuple[str, ...]
    """The names its assets can be asked for by (:func:`_names`: each key, with its common name in brackets)."""
    askable: frozenset[str]
    """Its asset keys and common names."""
    missing: frozenset[str]
    """The names asked for that it has no asset of."""


def item_assets(
    item: pystac.Item,
    assets: Sequence[str] | None = None,
    *,
    check_names: bool = True,
    slim: bool = False,
    shared: dict[Any, Any] | None = None,
) -> ItemAssets:
    """The assets of one item that become bands, the ones skipped, and its asset names, with the checks one item
    can fail (``check_names``: a name that picks one of several assets, two names of one asset, a name asked twice).
    With ``slim``, the item then keeps only its chosen assets (a Sentinel-2 item's 24 assets are most of its
    memory, and a build of 100,000 items would hold them all): only for items the caller made. ``shared`` (a dict
    kept across the items of one search) holds one copy of each distinct set of names, as a collection's items
    have the same (about 2.5 kB an item otherwise)."""
    if assets is not None and check_names:
        _check_item(item, assets)
    chosen, skipped = select_assets([item], assets)
    missing = frozenset() if assets is None else frozenset(n for n in assets if _pick(item, n) is None)
    askable = frozenset(item.assets) | {c for a in item.assets.values() if (c := common_name(a))}
    names = _names(item)
    if shared is not None:
        names, askable, missing = (shared.setdefault(v, v) for v in (names, askable, missing))
    found = ItemAssets(item.id, tuple(chosen), tuple(skipped), names, askable, missing)
    if slim:
        item.assets = {a.key: item.assets[a.key] for a in chosen}
    return found


def choose_assets(
    items: Sequence[pystac.Item | ItemAssets],
    query: Query,
    assets: Sequence[str] | None = None,
    *,
    check_names: bool = True,
) -> tuple[list[SelectedAsset], list[SkippedAsset]]:
    """The assets of the found items that become bands, and the ones skipped; fails when there is none.

    With ``check_names`` (a build or a plan; a refresh passes False, its names having been checked when the cube
    was built), a name in ``assets`` that no item has is an error, and one that only some items have a
    :class:`~stackcube.errors.MissingAssetWarning`: a misspelt band never makes a quietly smaller cube.

    Raises
    ------
    NothingFoundError
        The search found no items (the message names the search), no item has a usable asset (it gives the
        first reasons), or no item has an asset of a name asked for (it lists the names they have).
    """
    require_items(list(items), query)
    if assets is not None and check_names:
        check_asked(assets)
    found = [i if isinstance(i, ItemAssets) else item_assets(i, assets, check_names=check_names) for i in items]
    chosen = [a for f in found for a in f.chosen]
    skipped = [a for f in found for a in f.skipped]
    if assets is not None and check_names:
        _check_names(found, assets)
    if not chosen:
        reasons = "; ".join(summarize_skipped(skipped, len(items))[:5]) or "no item has a GeoTIFF data asset"
        which = "the one item found has no" if len(items) == 1 else f"none of the {len(items)} items found has a"
        msg = f"{which} usable asset: {reasons}"
        raise NothingFoundError(msg)
    return chosen, skipped


def check_asked(assets: Sequence[str]) -> None:
    """Refuse a name asked for twice (before a search: it needs no item)."""
    twice = [name for name in dict.fromkeys(assets) if list(assets).count(name) > 1]
    if twice:
        msg = f"{', '.join(map(repr, twice))} asked for more than once; ask for each band once"
        raise NothingFoundError(msg)


def _check_item(item: pystac.Item, assets: Sequence[str]) -> None:
    """Refuse a name asked twice, a name that picks one of several assets of ``item``, and two names of one."""
    check_asked(assets)
    keys: dict[str, str] = {}
    for name in assets:
        shared = [k for k, a in item.assets.items() if common_name(a) == name and name not in item.assets]
        if len(shared) > 1:
            msg = f"{name!r} is the common name of several assets ({', '.join(shared)}); ask for them by key"
            raise NothingFoundError(msg)
        found = _pick(item, name)
        if found is not None and keys.setdefault(found[0], name) != name:
            msg = f"{keys[found[0]]!r} and {name!r} are the same asset ({found[0]}); ask for it once"
            raise NothingFoundError(msg)


def _check_names(items: Sequence[ItemAssets], assets: Sequence[str]) -> None:
    """Refuse names no item has; warn of names only some items have (each item was checked on its own by
    :func:`item_assets`)."""
    have = list(dict.fromkeys(name for item in items for name in item.names))
    shown = ", ".join(have[:30]) + (f", ... ({len(have)} in all)" if len(have) > 30 else "") or "no assets"
    missing = {name: [item.item_id for item in items if name in item.missing] for name in assets}
    unknown = [name for name, ids in missing.items() if len(ids) == len(items)]
    if unknown:
        askable = set().union(*(item.askable for item in items))
        guesses = [close for name in unknown for close in difflib.get_close_matches(name, sorted(askable), n=1)]
        guess = f"; did you mean {', '.join(map(repr, dict.fromkeys(guesses)))}?" if guesses else ""
        names = ", ".join(map(repr, unknown))
        where = "the one item" if len(items) == 1 else f"any of the {len(items)} items"
        msg = (
            f"asset{'s' * (len(unknown) != 1)} {names} not found in {where} the search found (neither an asset key "
            f"nor an eo:bands common name); {'it has' if len(items) == 1 else 'they have'}: {shown}{guess}"
        )
        raise NothingFoundError(msg)
    for name, ids in missing.items():
        if ids:
            listed = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            msg = (
                f"asset {name!r} is missing from {len(ids)} of the {len(items)} items found ({listed}): the cube's "
                f"{name} is empty where only {'it covers' if len(ids) == 1 else 'they cover'}; the items have: {shown}"
            )
            warnings.warn(msg, MissingAssetWarning, stacklevel=2)
