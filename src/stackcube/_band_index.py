"""Selecting bands by common name: ``data.sel(band="red")`` on a cube whose bands are asset keys (``B04``).

Bands are labelled by the asset key (or the name a user asked for), as stackstac labels them; the ``common_name``
coordinate says what each is. :class:`BandIndex` is xarray's own pandas index for ``band`` that also accepts a
band's common name where the key is asked for, so notebooks written against catalogs whose keys are common names
(Earth Search) run on catalogs whose keys are not (Planetary Computer). Written here because neither xarray nor
odc-geo has alias labels for an index; everything but the translation of labels is xarray's ``PandasIndex``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Self, cast

import numpy as np
import xarray as xr
from xarray.core.indexes import PandasIndex

__all__ = ["BandIndex", "with_band_aliases"]


class BandIndex(PandasIndex):
    """The ``band`` index, with common names as aliases of the band labels they describe."""

    __slots__ = ("aliases",)

    def __init__(
        self,
        array: Any,
        dim: Hashable,
        coord_dtype: Any = None,
        *,
        fastpath: bool = False,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(array, dim, coord_dtype, fastpath=fastpath)
        self.aliases = dict(aliases or {})

    def _replace(self, index: Any, dim: Hashable | None = None, coord_dtype: Any = None) -> Self:
        new = cast("Self", super()._replace(index, dim, coord_dtype))  # type: ignore[no-untyped-call]
        new.aliases = self.aliases
        return new

    @classmethod
    def from_variables(cls, variables: Mapping[Any, xr.Variable], *, options: Mapping[str, Any]) -> Self:
        obj = cast("Self", super().from_variables(variables, options=options))
        obj.aliases = dict(options.get("aliases") or {})
        return obj

    @classmethod
    def concat(cls, indexes: Sequence[Self], dim: Hashable, positions: Iterable[Iterable[int]] | None = None) -> Self:
        obj = super().concat(indexes, dim, positions)
        obj.aliases = {k: v for index in indexes for k, v in getattr(index, "aliases", {}).items()}
        return obj

    def sel(self, labels: dict[Any, Any], method: Any = None, tolerance: Any = None) -> Any:
        (name, label), known = next(iter(labels.items())), set(self.index)
        if isinstance(label, str) and label not in known:
            label = self.aliases.get(label, label)
        elif isinstance(label, list | tuple | np.ndarray) and not isinstance(label, str):
            label = [self.aliases.get(v, v) if isinstance(v, str) and v not in known else v for v in label]
        return super().sel({name: label}, method=method, tolerance=tolerance)


def with_band_aliases[T: (xr.DataArray, xr.Dataset)](obj: T) -> T:
    """``obj`` with a :class:`BandIndex` on ``band`` whose aliases are the ``common_name`` coordinate (each common
    name that one band alone has and that is not itself a band label); ``obj`` itself when there is none."""
    if "common_name" not in obj.coords or "band" not in obj.indexes or obj["common_name"].dims != ("band",):
        return obj
    bands = [str(b) for b in obj["band"].values]
    names = [str(c) for c in obj["common_name"].values]
    aliases = {name: band for band, name in zip(bands, names, strict=True) if name and names.count(name) == 1}
    aliases = {name: band for name, band in aliases.items() if name not in bands}
    if not aliases:
        return obj
    return obj.drop_indexes("band").set_xindex("band", BandIndex, aliases=aliases)
