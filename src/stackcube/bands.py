"""Bands stage: what the stored values of each band mean (nodata, scale, offset, unit), from STAC and from the file.

Producers put this where they like: Landsat Collection 2 keeps scale, offset and nodata in the STAC item only
(``raster:bands``), Sentinel-2 L2A COGs carry nodata in the file and the processing-baseline offset in STAC (or
nowhere but ``s2:processing_baseline``). The rule, per band of an asset:

- STAC first: ``raster:bands`` (STAC 1.0) or ``bands`` (STAC 1.1: ``nodata``, ``unit``, ``raster:scale``,
  ``raster:offset``; the unprefixed names are read too), then the same fields on the asset itself;
- the TIFF's GDAL_NODATA and GDAL_METADATA scale/offset fill what STAC does not say;
- where both say something and disagree, STAC wins and the conflict is reported (once per array, by the plan);
- ``stac=False`` (``stac_metadata=False`` in the public API) ignores STAC's band metadata altogether.

Values that cannot be right (a scale of 0, an offset that is not a number, nodata outside the dtype's range) raise
:class:`~stackcube.errors.MetadataError` naming the item and asset. ``harmonize="sentinel-2"`` gives Sentinel-2
items from processing baseline 04.00 on, whose catalogs state no offset, ESA's BOA_ADD_OFFSET of -1000 DN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pystac

from stackcube._remedies import stac_metadata_off
from stackcube.errors import MetadataError
from stackcube.options import Harmonize
from stackcube.tiff import IfdManifest

__all__ = ["BandMetadata", "Conflict", "band_metadata", "baseline"]

S2_OFFSET_BASELINE = (4, 0)
"""Sentinel-2 processing baseline from which L1C and L2A digital numbers carry an offset of +1000 (25 January 2022)."""
S2_OFFSET_DN = -1000.0
"""ESA's BOA_ADD_OFFSET (L2A) and RADIO_ADD_OFFSET (L1C) from baseline 04.00 on, in digital numbers."""
S2_SPECTRAL = frozenset(
    {
        *(f"B{n:02d}" for n in range(1, 13)),
        "B8A",
        *("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09"),
        *("cirrus", "swir16", "swir22", "rededge", "wvp_band"),
    }
)
"""Asset keys and common names of the spectral bands the baseline offset applies to (not SCL, AOT, WVP, visual)."""


@dataclass(frozen=True, slots=True)
class BandMetadata:
    """What one band's stored values mean: ``physical = stored * scale + offset``, except where stored == nodata."""

    nodata: int | float | None = None
    """The value that marks missing pixels (NaN allowed for floats); None when nothing says."""
    scale: float = 1.0
    """Multiplier from stored values to physical ones."""
    offset: float = 0.0
    """Added after scaling."""
    unit: str | None = None
    """Unit of the physical values (``kelvin``, ``W/m2/sr/um``), when known."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (a NaN nodata as the string ``"nan"``, as STAC writes it)."""
        nodata: int | float | str | None = self.nodata
        if isinstance(nodata, float) and not math.isfinite(nodata):
            nodata = str(nodata)
        return {"nodata": nodata, "scale": self.scale, "offset": self.offset, "unit": self.unit}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The band :meth:`to_dict` stored."""
        nodata = data.get("nodata")
        return cls(
            nodata=float(nodata) if isinstance(nodata, str) else nodata,
            scale=float(data.get("scale", 1.0)),
            offset=float(data.get("offset", 0.0)),
            unit=data.get("unit"),
        )


@dataclass(frozen=True, slots=True)
class Conflict:
    """A field on which STAC and the file disagree for one band; STAC's value is the one used."""

    field: str
    """``nodata``, ``scale``, ``offset`` or ``data_type``."""
    stac: Any
    """What STAC says."""
    file: Any
    """What the file says."""

    def __str__(self) -> str:
        return f"{self.field}: STAC {self.stac!r}, the file {self.file!r}"


def baseline(properties: Mapping[str, Any]) -> tuple[int, ...] | None:
    """An item's Sentinel-2 processing baseline (``s2:processing_baseline`` ``"04.00"`` -> (4, 0)), if it has one."""
    text = properties.get("s2:processing_baseline")
    if not isinstance(text, str):
        return None
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return None


def _stac_entries(asset: pystac.Asset) -> list[dict[str, Any]]:
    """Per band, what STAC says: the band's own fields over the asset's (STAC 1.1 puts shared ones there)."""
    fields = asset.extra_fields
    bands = fields.get("raster:bands") or fields.get("bands") or [{}]
    shared: dict[str, Any] = {
        k: fields[k] for k in ("nodata", "unit", "data_type", "raster:scale", "raster:offset") if k in fields
    }
    return [{**shared, **band} for band in bands]


def _number(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        msg = f"{where}: {what} {value!r} is not a number"
        raise MetadataError(msg, remedy=stac_metadata_off())
    try:
        number = float(value)
    except ValueError:
        msg = f"{where}: {what} {value!r} is not a number"
        raise MetadataError(msg, remedy=stac_metadata_off()) from None
    if not math.isfinite(number):
        msg = f"{where}: {what} {value!r} is not a finite number"
        raise MetadataError(msg, remedy=stac_metadata_off())
    return number


def _nodata(value: Any, dtype: np.dtype[Any], where: str) -> int | float:
    """A nodata value as the array's dtype holds it; refused when no pixel of that dtype could hold it."""
    if isinstance(value, str) and value.lower() in {"nan", "inf", "-inf", "+inf"}:
        number = float(value)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}: nodata {value!r} is not a number"
        raise MetadataError(msg, remedy=stac_metadata_off())
    else:
        number = float(value)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not math.isfinite(number) or number != int(number) or not info.min <= number <= info.max:
            msg = f"{where}: nodata {value!r} cannot occur in {dtype.name} data (values {info.min} to {info.max})"
            raise MetadataError(msg, remedy=stac_metadata_off())
        return int(number)
    return float(dtype.type(number))  # as the file's own nodata is read: rounded to the sample type


def _file_scale_offset(image: IfdManifest, k: int) -> tuple[float | None, float | None]:
    scales = list(image.attrs.get("scale_factor") or [])
    offsets = list(image.attrs.get("add_offset") or [])
    return (
        float(scales[k]) if k < len(scales) else None,
        float(offsets[k]) if k < len(offsets) else None,
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def band_metadata(
    item: pystac.Item,
    key: str,
    image: IfdManifest,
    *,
    stac: bool = True,
    harmonize: Harmonize = None,
) -> tuple[tuple[BandMetadata, ...], tuple[Conflict, ...]]:
    """The meaning of every band (sample) of asset ``key`` of ``item``, whose full-resolution image is ``image``.

    Returns the bands and where STAC and the file disagreed. Raises MetadataError for values that cannot be right.
    """
    where = f"{item.id}/{key}"
    samples = image.shape[0]
    entries = _stac_entries(item.assets[key]) if stac else [{}]
    if len(entries) not in {1, samples}:
        entries = entries[:1]  # a count that does not match the file: the first band's fields for all
    conflicts: list[Conflict] = []
    bands = []
    for k in range(samples):
        entry = entries[k if len(entries) == samples else 0]
        data_type = entry.get("data_type")
        if data_type is not None and str(data_type) != image.dtype.name:
            conflicts.append(Conflict("data_type", str(data_type), image.dtype.name))
        nodata = image.fill_value
        if entry.get("nodata", entry.get("raster:nodata")) is not None:
            stated = _nodata(entry.get("nodata", entry.get("raster:nodata")), image.dtype, where)
            if nodata is not None and not _same(stated, nodata):
                conflicts.append(Conflict("nodata", stated, nodata))
            nodata = stated
        file_scale, file_offset = _file_scale_offset(image, k)
        values = {"scale": file_scale, "offset": file_offset}
        for name in ("scale", "offset"):
            raw = entry.get(f"raster:{name}", entry.get(name))
            if raw is None:
                continue
            stated_value = _number(raw, name, where)
            if name == "scale" and stated_value == 0:
                msg = f"{where}: a scale of 0 would turn every value into the offset"
                raise MetadataError(msg, remedy=stac_metadata_off())
            if values[name] is not None and not _same(stated_value, values[name]):
                conflicts.append(Conflict(name, stated_value, values[name]))
            values[name] = stated_value
        scale = 1.0 if values["scale"] is None else values["scale"]
        offset = values["offset"]
        if offset is None and harmonize == "sentinel-2" and _s2_offset_applies(item, key):
            offset = S2_OFFSET_DN * scale
        unit = entry.get("unit")
        bands.append(BandMetadata(nodata, scale, 0.0 if offset is None else offset, str(unit) if unit else None))
    return tuple(bands), tuple(dict.fromkeys(conflicts))


def _s2_offset_applies(item: pystac.Item, key: str) -> bool:
    """Whether ESA's baseline offset applies to this asset: a spectral band of an item from baseline 04.00 on."""
    found = baseline(item.properties)
    if found is None or found < S2_OFFSET_BASELINE:
        return False
    common = [b.get("common_name") for b in item.assets[key].extra_fields.get("eo:bands") or []]
    return key in S2_SPECTRAL or any(name in S2_SPECTRAL for name in common)


def uniform(bands: Sequence[BandMetadata]) -> BandMetadata | None:
    """The one BandMetadata all of ``bands`` share, or None when they differ."""
    first = bands[0] if bands else None
    return first if first is not None and all(b == first or _same_band(b, first) for b in bands) else None


def _same_band(a: BandMetadata, b: BandMetadata) -> bool:
    return _same(a.nodata, b.nodata) and (a.scale, a.offset, a.unit) == (b.scale, b.offset, b.unit)
