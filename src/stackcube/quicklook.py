"""Quicklooks: an 8-bit PNG of one date of a cube, read from the coarsest level that is still large enough.

Plain functions over an opened DataTree; PNG encoding by imagecodecs (already a dependency, for decoding).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stackcube._text import counted
from stackcube.errors import ArrayNotFoundError, SelectionError
from stackcube.store import OpenOptions, open_datatree, read_metadata
from stackcube.store.layout import DATA, CubeMetadata, level_path

__all__ = ["Quicklook", "quicklook"]

RGB_CHOICES = (("red", "green", "blue"), ("B04", "B03", "B02"))
"""Band triples tried, in order, when none is given: common names, then Sentinel-2 keys."""


@dataclass(frozen=True, slots=True)
class Quicklook:
    """A PNG image with what it shows written under it in Jupyter (and into the PNG as its description); written
    to a file by :meth:`save`."""

    png: bytes
    """The encoded image."""
    array: str
    """The array it was read from (``EPSG32735_10m/1``)."""
    bands: tuple[str, ...]
    """The bands shown (red, green, blue, or one grey band)."""
    time: Any
    """The time step shown."""
    stretch: tuple[float, float] = (0.0, 1.0)
    """The values shown as black and white (the 2nd and 98th percentiles of the valid values)."""
    shape: tuple[int, int] = (0, 0)
    """Height and width in pixels."""

    @property
    def caption(self) -> str:
        """Date, bands, array and stretch in one line."""
        day = np.datetime_as_string(np.datetime64(self.time, "s"), unit="D") if self.time is not None else "?"
        lo, hi = self.stretch
        return (
            f"{day} · {', '.join(self.bands)} · {self.array} ({self.shape[0]} x {self.shape[1]} px) · "
            f"2-98 % stretch {lo:.4g} to {hi:.4g}"
        )

    def __repr__(self) -> str:
        return f"<Quicklook {self.caption}; {len(self.png)} bytes of PNG>"

    def _repr_png_(self) -> bytes:
        return self.png

    def _repr_html_(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        return (
            f'<figure style="margin:0"><img src="data:image/png;base64,{data}" alt="{html.escape(self.caption)}"/>'
            f"<figcaption><small>{html.escape(self.caption)}</small></figcaption></figure>"
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the PNG to ``path``."""
        out = Path(path)
        out.write_bytes(self.png)
        return out


def _levels(tree: Any, name: str) -> list[tuple[str, Any]]:
    """(path, data) of every level of array ``name`` in an opened tree, full resolution first."""
    levels = sorted(int(k) for k in tree[name].children)
    return [(level_path(name, n), tree[level_path(name, n)][DATA]) for n in levels]


def quicklook(
    cube: Any, *, bands: Sequence[str] | None = None, time: int = 0, size: int = 512, array: str | None = None
) -> Quicklook:
    """An 8-bit PNG (2-98 % stretch) of one time step of the first array that has ``bands``.

    ``cube``: an opened cube (the DataTree :func:`stackcube.open_cube` gives), or the cube itself (a path or URL
    of its repository, a Repository, a :class:`stackcube.Cube`), which is opened. ``bands``: three for RGB or one
    for grey; by default ``red, green, blue`` or ``B04, B03, B02``, else the first band. ``time``: the index of
    the date (negative from the end). It reads the coarsest level that is still at least ``size`` pixels
    wide or tall (overviews cost fewer bytes), or full resolution when no overview is that large.

    Examples
    --------
    >>> from stackcube.quicklook import quicklook
    >>> look = quicklook("demo-output/cube.icechunk", time=-1)  # doctest: +SKIP
    >>> look.save("last-date.png")  # doctest: +SKIP
    """
    import imagecodecs
    import xarray as xr

    if isinstance(cube, xr.DataTree):
        tree = cube
    elif isinstance(cube, str | os.PathLike) or not hasattr(cube, "snapshot_id"):  # a path, URL, Storage, Repository
        # a union's member is in the tree only when asked for: every member then (thousands, 6 ms each), so only
        # when the array asked for is one (the root's attributes say, without opening anything)
        tree = open_datatree(cube, OpenOptions(members=array is not None and array in read_metadata(cube).members))
    else:  # a stackcube.Cube (whose module comes later in the pipeline): its own snapshot
        tree = cube.open(members=array is not None and any(array in u.members for u in cube.plan.unions))
    if array is not None and array not in tree.children:
        metadata = CubeMetadata.from_attrs(tree.attrs)
        union = next((u.name for u in metadata.unions if array in u.members), None)
        if union is None:
            msg = f"the cube has no array {array!r}; it has {', '.join(metadata.array_names)}"
        else:
            msg = (
                f"{array} is a member of union {union}, which this tree lists without opening: open it with "
                "stackcube.open_cube(repo, members=True), or give quicklook the cube itself"
            )
        raise ArrayNotFoundError(msg)
    names = [array] if array else CubeMetadata.from_attrs(tree.attrs).array_names
    choices = [tuple(bands)] if bands else list(RGB_CHOICES)
    for choice in choices:
        for name in names:
            levels = _levels(tree, name)
            path, data = next(
                ((p, d) for p, d in reversed(levels) if max(d.sizes["y"], d.sizes["x"]) >= size), levels[0]
            )
            if all(b in data.band.values for b in choice):
                break
        else:
            continue
        break
    else:
        if bands:
            msg = f"no array of the cube has the bands {tuple(bands)}; it has {', '.join(names)}"
            raise ArrayNotFoundError(msg)
        path, data = _levels(tree, names[0])[-1]
        choice = (str(data.band.values[0]),)
    steps = data.sizes["time"]
    if not -steps <= time < steps:
        msg = f"time={time} is not a date of {path}: it has {counted(steps, 'date')}"
        if steps:
            first, last = np.datetime_as_string(data.time.values[[0, -1]], unit="D")
            msg += f" ({first} to {last}): give 0 to {steps - 1}, or -{steps} to -1 from the end"
        raise SelectionError(msg)
    pixels = data.isel(time=time).sel(band=list(choice)).values.astype("float64")
    valid = np.isfinite(pixels) & (pixels > 0)
    lo, hi = np.percentile(pixels[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(pixels) - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    image = scaled.transpose(1, 2, 0) if len(choice) == 3 else scaled[0]
    look = Quicklook(
        png=b"",
        array=path,
        bands=tuple(choice),
        time=data.time.values[time],
        stretch=(float(lo), float(hi)),
        shape=(image.shape[0], image.shape[1]),
    )
    png = imagecodecs.png_encode(np.ascontiguousarray(image))
    return dataclasses.replace(look, png=_with_description(bytes(png), look.caption))


def _with_description(png: bytes, text: str) -> bytes:
    """The PNG with an iTXt "Description" chunk after its header (imagecodecs writes no text chunks; a chunk is
    length, type, data and a CRC, per the PNG specification)."""
    body = b"iTXt" + b"Description\0\0\0\0\0" + text.encode("utf-8")
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes, CRC
    return png[:end_of_header] + chunk + png[end_of_header:]
