"""How found assets become arrays (:class:`CubeOptions`, checked once, stored in the cube) and how arrays are
chunked when read (:data:`Chunks`).

A cube stores its options so that a refresh plans new items exactly as the build did; ``on_error`` is how one
run treats unreadable sources and is not stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self, cast, get_args

__all__ = ["BLOCK", "Chunks", "CubeOptions", "GroupBy", "Harmonize", "OnError", "Overlap", "sort_rank"]

Overlap = Literal["first", "last"]
"""Where sources of one time step claim the same chunk or pixel: the first or the last one in member order."""
GroupBy = Literal["datetime", "solar_day"] | None
"""How a union's time steps are formed: items of one acquisition datetime share a step (default), items of one
local solar day share a step, or (None) every item is its own step, as stackstac does."""
Harmonize = Literal["sentinel-2"] | None
"""An opt-in correction of a producer's change of encoding: ``"sentinel-2"`` gives items from processing baseline
04.00 on, whose catalog states no offset, ESA's offset of -1000 DN; None takes values as the catalog describes them."""
OnError = Literal["raise", "skip"]
"""A source that cannot be read fails the build (``"raise"``) or is left out and listed (``"skip"``)."""
Chunks = Mapping[str, int] | Literal[False] | None
"""How an opened array is chunked: None, dask chunks of whole source tiles, about :data:`BLOCK` pixels square, one
date and band each (a union: per block of tiles); a mapping such as ``{"y": 1024, "x": 1024}``, dask chunks of that
size; ``False``, no dask (each read is one call that fetches its tiles concurrently and decodes straight into
NumPy). Either way a tile is one GET, and a dask chunk fetches its tiles concurrently."""

BLOCK = 2048
"""Pixels along y and x that a default dask chunk spans at most (a whole number of tiles, at least one): fewer,
larger tasks than one per tile (a dask task costs more than a tile's GET in flight), still one date and band each."""


def sort_rank(value: Any) -> tuple[bool, Any]:
    """The ``sort_by`` rank of a property value: least first, a missing value (None or NaN) after every other."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return missing, 0 if missing else value


def _choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed[:-1]) + f" or {allowed[-1]!r}"
        msg = f"{name} must be {listed}, not {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class CubeOptions:
    """How the assets of the found items are chosen and placed; raises ``ValueError`` for a value out of range."""

    assets: tuple[str, ...] | None = None
    """Asset keys or common names, in band order; None takes every GeoTIFF data asset."""
    overlap: Overlap = "first"
    """Which source keeps a chunk or pixel that several sources of one time step claim."""
    sort_by: str | None = None
    """An item property ordering those sources (least first); None keeps search order."""
    groupby: GroupBy = "datetime"
    """How the time steps of a union are formed."""
    stac_metadata: bool = True
    """Whether STAC's band metadata (nodata, scale, offset, unit) is used; the file's alone when False."""
    harmonize: Harmonize = None
    """A producer's change of encoding to correct (``"sentinel-2"``), or None."""
    on_error: OnError = "raise"
    """What one run does with a source it cannot read (not stored)."""

    def __post_init__(self) -> None:
        _choice("overlap", self.overlap, get_args(Overlap))
        _choice("groupby", self.groupby, (*get_args(get_args(GroupBy)[0]), None))
        _choice("harmonize", self.harmonize, (*get_args(get_args(Harmonize)[0]), None))
        _choice("stac_metadata", self.stac_metadata, (True, False))
        _choice("on_error", self.on_error, get_args(OnError))
        if isinstance(self.assets, str):
            msg = f"assets must be a list of asset keys or common names, not the string {self.assets!r}"
            raise TypeError(msg)
        if self.assets is not None and not isinstance(self.assets, tuple):
            object.__setattr__(self, "assets", tuple(cast("Sequence[str]", self.assets)))

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as a cube stores it (without ``on_error``)."""
        return {
            "assets": list(self.assets) if self.assets is not None else None,
            "overlap": self.overlap,
            "sort_by": self.sort_by,
            "groupby": self.groupby,
            "stac_metadata": self.stac_metadata,
            "harmonize": self.harmonize,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The options :meth:`to_dict` stored (defaults for what an older cube did not store)."""
        assets = data.get("assets")
        return cls(
            assets=tuple(assets) if assets else None,
            overlap=data.get("overlap") or "first",
            sort_by=data.get("sort_by"),
            groupby=data.get("groupby", "datetime"),
            stac_metadata=bool(data.get("stac_metadata", True)),
            harmonize=data.get("harmonize"),
        )
