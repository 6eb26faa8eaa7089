"""Header bytes -> TiffManifest. Pure: the bytes read so far go in, a manifest (or a request for more bytes) comes out.

tifffile parses the structure. It reads through a :class:`SparseFile` holding only the byte ranges fetched so
far; touching any other byte raises :class:`NeedBytes` with the range, the caller fetches it and parses again.
A COG's header sits in its first kilobytes, so one ranged GET is enough; other layouts cost one more GET per
region of the file the header is spread over.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import dataclasses
import functools
import io
import logging
import struct
import threading
from collections.abc import Iterator
from typing import IO, Any, cast
from urllib.parse import urlsplit

import numpy as np
import tifffile

from stackcube.errors import CorruptTiffError, TiffError, UnsupportedTiffError, caused_by
from stackcube.tiff._decode import EER_COMPRESSIONS, JPEG_COMPRESSIONS, check_decodable
from stackcube.tiff._geo import GEOKEY_TAGS, parse_gdal_metadata, parse_geo, parse_nodata, transform_of
from stackcube.tiff._ifd import Unusual, chain_end, read_ifds
from stackcube.tiff._model import Geo, IfdManifest, Recipe, Role, TiffManifest, validator_of

__all__ = ["NeedBytes", "SparseFile", "parse_manifest"]

MAX_READS = 1_000_000
"""File operations one parse may make; bounds the time a hostile IFD chain can cost."""
MAX_IFDS = 100_000
"""IFDs (with SubIFDs) one file may declare."""
MAX_SEGMENTS = 50_000_000
"""Segments one IFD may declare (a 1.6-megapixel-square image of 256-pixel tiles has 40 million)."""


class NeedBytes(BaseException):
    """The parse touched bytes not fetched yet. A BaseException so that tifffile's ``except Exception`` passes it."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__(start, stop)
        self.start = start
        self.stop = stop


class SparseFile(io.RawIOBase):
    """A read-only, seekable view of an object of known size of which only some byte ranges are present."""

    def __init__(self, size: int, name: str = "") -> None:
        super().__init__()
        self.size = size
        self.name = name
        self._starts: list[int] = []
        self._blocks: list[bytes] = []
        self._pos = 0
        self.reads = 0
        self.fetched = 0
        self.zeroed = (0, 0)
        """Bytes [start, stop) read as zeros: the next-IFD offset where tifffile is to end the IFD chain."""

    def add(self, start: int, data: bytes) -> None:
        """Make ``data`` available at ``start``, merging it with the blocks it overlaps or touches."""
        stop = start + len(data)
        merged = bytearray(data)
        lo = bisect.bisect_left(self._starts, start)
        if lo > 0 and self._starts[lo - 1] + len(self._blocks[lo - 1]) >= start:
            lo -= 1
        hi = lo
        while hi < len(self._starts) and self._starts[hi] <= stop:
            hi += 1
        for block_start, block in zip(self._starts[lo:hi], self._blocks[lo:hi], strict=True):
            new_start = min(start, block_start)
            new_stop = max(stop, block_start + len(block))
            grown = bytearray(new_stop - new_start)
            grown[block_start - new_start : block_start - new_start + len(block)] = block
            grown[start - new_start : stop - new_start] = merged
            merged, start, stop = grown, new_start, new_stop
        self._starts[lo:hi] = [start]
        self._blocks[lo:hi] = [bytes(merged)]
        self.fetched += len(data)

    def block_at(self, offset: int) -> tuple[int, bytes] | None:
        """The fetched block holding byte ``offset`` and where it starts, or None."""
        index = bisect.bisect_right(self._starts, offset) - 1
        if index >= 0 and offset < self._starts[index] + len(self._blocks[index]):
            return self._starts[index], self._blocks[index]
        return None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        if self.reads > MAX_READS:
            msg = f"parsing made more than {MAX_READS} reads (an absurd IFD or tag count?)"
            raise CorruptTiffError(msg)
        start = self._pos
        stop = self.size if size is None or size < 0 else min(self.size, start + size)
        if stop <= start:
            return b""
        index = bisect.bisect_right(self._starts, start) - 1
        if index >= 0:
            block_start, block = self._starts[index], self._blocks[index]
            if block_start + len(block) >= stop:
                self._pos = stop
                data = block[start - block_start : stop - block_start]
                return self._zero(data, start) if start < self.zeroed[1] and self.zeroed[0] < stop else data
        raise NeedBytes(start, stop)

    def _zero(self, data: bytes, start: int) -> bytes:
        out = bytearray(data)
        lo, hi = max(self.zeroed[0], start) - start, min(self.zeroed[1], start + len(data)) - start
        out[lo:hi] = bytes(hi - lo)
        return bytes(out)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


class _TiffFileLog(logging.Handler):
    """Collects the errors tifffile logs (it logs, and carries on, where a file's structure is corrupt)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_log_lock = threading.Lock()


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[_TiffFileLog]:
    """Collect tifffile's error records whatever the caller configured for its logger; we raise them instead."""
    log = tifffile.logger()
    handler = _TiffFileLog()
    with _log_lock:
        level, propagate = log.level, log.propagate
        lower = log.getEffectiveLevel() > logging.ERROR  # setLevel clears every logger's cache: only if needed
        if lower:
            log.setLevel(logging.ERROR)
        log.propagate = False
        log.addHandler(handler)
        try:
            yield handler
        finally:
            log.removeHandler(handler)
            if lower:
                log.setLevel(level)
            log.propagate = propagate


def parse_manifest(
    href: str,
    fh: SparseFile,
    *,
    etag: str | None = None,
    last_modified: Any = None,
    header_requests: int = 1,
) -> TiffManifest:
    """Parse every IFD of the TIFF in ``fh`` into a manifest; raises NeedBytes for bytes it does not hold yet."""
    fh.reads = 0
    ifds: list[IfdManifest] = []
    slow = False
    try:
        with _tifffile_errors() as log:  # tifffile's code decodes the GeoKeys on this path too
            pages, byteorder, bigtiff = read_ifds(fh)
            _walk(pages, (), ifds, fh)
        if log.messages:
            raise Unusual(log.messages[0])
    except (Unusual, TiffError, ValueError, struct.error, IndexError, KeyError, TypeError, OverflowError):
        # a file tifffile reads differently, or one whose problems are best told in tifffile's words
        slow = True
    if slow:  # out of the except block: what fails there has no error of the fast path as __context__
        ifds, byteorder, bigtiff = _parse_with_tifffile(href, fh)
    return _manifest(href, fh, ifds, byteorder, bigtiff, etag, last_modified, header_requests)


def _parse_with_tifffile(href: str, fh: SparseFile) -> tuple[list[IfdManifest], str, bool]:
    """Every IFD as tifffile reads it (the files :func:`read_ifds` leaves to it, and its errors); an IFD chain that
    loops back or leads beyond the file ends there, as on the fast path.

    tifffile is given the file's name without the href's query string: its messages quote the name (cut to 32
    characters around an ellipsis, which would keep a signature's last characters where no redaction finds them).
    Its errors are raised as ours outside the ``except`` block, with no cause: our message quotes them.
    """
    fh.reads = 0
    with _tifffile_errors() as log, _chain_ended(fh):
        try:
            with tifffile.TiffFile(cast("IO[bytes]", fh), name=_file_name(href)) as tif:
                ifds = _parse_pages(tif, fh)
                byteorder = tif.byteorder
                bigtiff = tif.is_bigtiff
        except TiffError as exc:
            failure: TiffError | None = type(exc)(f"{href}: {exc}")
        except tifffile.TiffFileError as exc:
            failure = CorruptTiffError(f"{href} is not a valid TIFF: {exc}")
        except (ValueError, struct.error, IndexError, KeyError, TypeError, OverflowError) as exc:
            failure = CorruptTiffError(f"{href} has a corrupt TIFF structure: {type(exc).__name__}: {exc}")
        else:
            failure = None
        if failure is not None:
            raise caused_by(failure, None)
        if log.messages:
            msg = f"{href} has a corrupt TIFF structure: {log.messages[0]}"
            raise CorruptTiffError(msg)
    return ifds, byteorder, bigtiff


def _file_name(href: str) -> str:
    """The last segment of ``href``'s path: an URL's query (a signed URL's credential) and fragment left out."""
    path = urlsplit(href).path if "://" in href else href
    return path.rsplit("/", 1)[-1]


@contextlib.contextmanager
def _chain_ended(fh: SparseFile) -> Iterator[None]:
    """tifffile reads the next-IFD offset that loops back or leads beyond the file as 0: it reads the IFDs before
    it, as it would, without its error (or, for a loop of more than 100 IFDs, without going round it)."""
    end = chain_end(fh)
    fh.seek(0)  # tifffile reads the file from where it stands
    fh.zeroed = end or (0, 0)
    try:
        yield
    finally:
        fh.zeroed = (0, 0)


def _manifest(  # noqa: PLR0917 - the parts of one manifest
    href: str,
    fh: SparseFile,
    ifds: list[IfdManifest],
    byteorder: str,
    bigtiff: bool,
    etag: str | None,
    last_modified: Any,
    header_requests: int,
) -> TiffManifest:
    if not ifds:
        msg = f"{href} contains no images"
        raise CorruptTiffError(msg)
    if all(ifd.damage is not None for ifd in ifds):  # nothing intact to keep readable
        msg = f"{href}: {ifds[0].damage}"
        raise CorruptTiffError(msg)
    return TiffManifest(
        href=href,
        etag=etag,
        last_modified=last_modified,
        size=fh.size,
        byteorder=byteorder,  # type: ignore[arg-type]
        bigtiff=bigtiff,
        ifds=tuple(ifds),
        header_requests=header_requests,
        header_bytes=fh.fetched,
        validator=validator_of(etag, last_modified),
    )


def _parse_pages(tif: tifffile.TiffFile, fh: SparseFile) -> list[IfdManifest]:
    pages = tif.pages
    pages.useframes = False
    pages.cache = False
    count = len(pages)
    if count > MAX_IFDS:
        msg = f"declares {count} IFDs, more than the {MAX_IFDS} stackcube accepts"
        raise CorruptTiffError(msg)
    out: list[IfdManifest] = []
    _walk(pages, (), out, fh)
    return out


def _walk(pages: Any, parent: tuple[int, ...], out: list[IfdManifest], fh: SparseFile) -> None:
    counters = {"image": 0, "mask": 0}
    for i in range(len(pages)):
        page = pages[i]
        if isinstance(page, tifffile.TiffFrame):
            page = page.aspage()
        path = (*parent, i)
        kind = "mask" if int(page.subfiletype) & 4 else "image"
        reduced = bool(int(page.subfiletype) & 1)
        counters[kind] = counters[kind] + 1 if reduced else 0
        role: Role = (
            ("mask-overview" if reduced else "mask") if kind == "mask" else ("overview" if reduced else "image")
        )
        out.append(_parse_page(page, path, role, counters[kind], fh))
        if len(out) > MAX_IFDS:
            msg = f"declares more than {MAX_IFDS} IFDs and SubIFDs"
            raise CorruptTiffError(msg)
        sub = page.pages
        if sub is not None and len(sub):
            if len(path) > 8:
                msg = "SubIFDs nest deeper than 8 levels"
                raise CorruptTiffError(msg)
            _walk(sub, path, out, fh)


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """What an IFD's structure says about its image: its manifest but for where its segments lie and its geo."""

    shape: tuple[int, int, int]
    dtype: np.dtype[Any]
    chunk_shape: tuple[int, int, int]
    grid: tuple[int, int, int]
    recipe: Recipe
    fill_value: int | float | None
    attrs: dict[str, Any]


_LAYOUTS: dict[tuple[Any, ...], _Layout] = {}
"""Layouts by the structure key of the fast path's pages (:attr:`stackcube.tiff._ifd._Page.key`): the IFDs of a
collection's files share a handful of structures (a band's full resolution and each overview), so most IFDs skip
deriving theirs. Emptied when it holds :data:`MAX_LAYOUTS`."""
MAX_LAYOUTS = 4096


def _parse_page(page: Any, path: tuple[int, ...], role: Role, level: int, fh: SparseFile) -> IfdManifest:
    where = f"IFD {'/'.join(map(str, path))}"
    key = getattr(page, "key", None)  # a tifffile page has none
    layout = _LAYOUTS.get(key) if key is not None else None
    if layout is None:
        layout = _layout(page, where)
        if key is not None:
            if len(_LAYOUTS) >= MAX_LAYOUTS:
                _LAYOUTS.clear()
            _LAYOUTS[key] = layout
    nseg = layout.grid[0] * layout.grid[1] * layout.grid[2]
    offsets = _segment_table(page.dataoffsets, where, "offset")
    lengths = _segment_table(page.databytecounts, where, "byte count")
    damage = None
    if not layout.recipe.tiled and layout.grid[1] == 1:
        offsets, lengths, damage = _one_strip_per_plane(page, layout, offsets, lengths, where)
    if offsets.size != nseg or lengths.size != nseg:
        samples, height, width = layout.shape
        msg = (
            f"{where}: expected {nseg} segment offsets and byte counts for {height} x {width} x {samples} in "
            f"segments of {layout.chunk_shape[1]} x {layout.chunk_shape[2]}, found {offsets.size} offsets and "
            f"{lengths.size} byte counts"
        )
        raise CorruptTiffError(msg)
    ends = offsets + lengths
    if ends.max(initial=0) > fh.size or (ends < offsets).any():  # a segment may lie beyond the end of the file
        missing = (offsets == 0) | (lengths == 0)
        beyond = ~missing & ((ends > fh.size) | (ends < offsets))
        if beyond.any() and damage is None:  # this IFD cannot be read, the others may (a COG cut short loses level 0)
            first = int(np.flatnonzero(beyond)[0])
            damage = (
                f"{where}: segment {first} at offset {int(offsets[first])} with {int(lengths[first])} bytes ends "
                f"beyond the end of the file ({fh.size} bytes); the file is truncated or corrupt"
            )
    if not (offsets.all() and lengths.all()):  # a missing segment is 0 and 0
        missing = (offsets == 0) | (lengths == 0)
        offsets[missing] = 0
        lengths[missing] = 0
    return IfdManifest(
        path=path,
        role=role,
        level=level,
        shape=layout.shape,
        dtype=layout.dtype,
        chunk_shape=layout.chunk_shape,
        offsets=offsets.reshape(layout.grid),
        lengths=lengths.reshape(layout.grid),
        recipe=layout.recipe,
        fill_value=layout.fill_value,
        geo=_geo(page, fh) if page.is_geotiff or any(code in page.tags for code in _MODEL_TAGS) else None,
        attrs=copy.deepcopy(layout.attrs),  # each manifest its own (a colormap is a list)
        damage=damage,
    )


def _segment_table(values: Any, where: str, what: str) -> np.ndarray:
    """Segment offsets or byte counts as uint64 (flat); a negative one (of a signed tag type) is corrupt."""
    table = np.asarray(values).reshape(-1)
    if table.dtype.kind == "O" or (table.dtype.kind in "if" and not (np.isfinite(table) & (table >= 0)).all()):
        msg = f"{where}: a segment's {what} is negative or not a number ({table[:4].tolist()}...); the file is corrupt"
        raise CorruptTiffError(msg)
    return table.astype(np.uint64)


def _one_strip_per_plane(
    page: Any, layout: _Layout, offsets: np.ndarray, lengths: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The segments of an image whose RowsPerStrip puts every row of a plane in one strip (2**32-1, or any value
    from ImageLength on), and the damage when the IFD stores more strips than that.

    tifffile then keeps one strip per plane. Of one plane of uncompressed 8- to 64-bit samples it reads the image's
    bytes from the first strip on: they are the image when the strips lie one after the other and hold exactly its
    bytes, and are read as one strip here. Any other such strip it pads with zeros or fails to decode: which rows
    each strip holds is unknown, and the IFD is refused.
    """
    stored = _segment_table(page.tags.valueof(273, ()), where, "offset")
    counts = _segment_table(page.tags.valueof(279, ()), where, "byte count")
    if stored.size <= layout.grid[0] or stored.size != counts.size:
        return offsets, lengths, None
    recipe = layout.recipe
    samples, height, width = layout.shape
    size = height * width * samples * recipe.bitspersample // 8
    if (
        layout.grid[0] == 1
        and recipe.compression == 1
        and recipe.bitspersample in {8, 16, 32, 64}
        and recipe.sampleformat != 5
        and tuple(recipe.subsampling) == (1, 1)
        and sum(counts.tolist()) == size  # Python integers: no wrap-around
        and (np.diff(stored) == counts[:-1]).all()
    ):
        return stored[:1], np.array([size], dtype=np.uint64), None
    rows = page.tags.valueof(278)
    said = f"RowsPerStrip={rows}" if rows is not None else "no RowsPerStrip (all rows in one strip)"
    damage = (
        f"{where}: {said} puts all {height} rows of a plane in one strip, but StripOffsets lists {stored.size} "
        f"strips for {layout.grid[0]} plane(s); which rows each strip holds is unknown, so the IFD cannot be read "
        "(the file is corrupt: rewrite it with a correct RowsPerStrip)"
    )
    return offsets[: layout.grid[0]], lengths[: layout.grid[0]], damage


_GEOS: dict[tuple[Any, ...], Geo] = {}
"""Georeferencing by the GeoKeys of the fast path's pages (:attr:`stackcube.tiff._ifd._Page.geokey`): a
collection's files share a few CRSs; only the transform is each file's. Emptied when it holds :data:`MAX_LAYOUTS`."""


def _geo(page: Any, fh: SparseFile) -> Geo | None:
    key = page.geokey if hasattr(page, "geokey") else None  # a tifffile page has none
    known = _GEOS.get(key) if key is not None else None
    if known is None:
        raw = {code: page.tags.valueof(code) for code in GEOKEY_TAGS[:2] if code in page.tags}
        if GEOKEY_TAGS[2] in page.tags:
            raw[GEOKEY_TAGS[2]] = _ascii_bytes(page, GEOKEY_TAGS[2], fh)
        geo = parse_geo(page.geotiff_tags if page.is_geotiff else _model_only(page), raw)
        if key is not None and geo is not None:
            if len(_GEOS) >= MAX_LAYOUTS:
                _GEOS.clear()
            _GEOS[key] = geo
        return geo
    return dataclasses.replace(
        known, transform=transform_of(page.model(), known.raster_type), geokeys=dict(known.geokeys)
    )


def _ascii_bytes(page: Any, code: int, fh: SparseFile) -> bytes:
    """A text tag's bytes as stored (tifffile's text strips whitespace and wants 7-bit ASCII; GeoAsciiParams are
    addressed by offset and GDAL reads them as bytes)."""
    if hasattr(page.tags, "content"):
        return page.tags.content(code)[2]  # type: ignore[no-any-return]
    tag = page.tags[code]
    fh.seek(tag.valueoffset)
    return fh.read(tag.count)


_MODEL_TAGS = {33550: "ModelPixelScale", 33922: "ModelTiepoint", 34264: "ModelTransformation"}


def _model_only(page: Any) -> dict[str, Any]:
    """The model tags of a page without GeoKeys: GDAL reads a transform from them all the same."""
    if hasattr(page, "model"):
        return cast("dict[str, Any]", page.model())
    values = {name: page.tags.valueof(code) for code, name in _MODEL_TAGS.items() if code in page.tags}
    return {name: list(v) if isinstance(v, tuple) else [v] for name, v in values.items()}


def _layout(page: Any, where: str) -> _Layout:
    if page.imagedepth != 1 or page.tiledepth != 1:
        raise UnsupportedTiffError(f"{where}: volumetric images (ImageDepth={page.imagedepth}) are not supported")
    if isinstance(page.bitspersample, tuple):
        raise UnsupportedTiffError(f"{where}: BitsPerSample={page.bitspersample} differs between samples")
    if page.dtype is None:
        msg = f"{where}: SampleFormat={int(page.sampleformat)} with BitsPerSample={page.bitspersample}"
        raise UnsupportedTiffError(f"{msg} is not supported")
    if int(page.sampleformat) == 5 and int(page.predictor) != 1:
        # as tifffile: unpredicting complex integers is not defined
        msg = f"{where}: Predictor={int(page.predictor)} with complex integer samples is not supported"
        raise UnsupportedTiffError(msg)
    formats = page.tags.valueof(339)
    if isinstance(formats, tuple | list | np.ndarray) and len(set(np.ravel(formats).tolist())) > 1:
        raise UnsupportedTiffError(f"{where}: SampleFormat={formats} differs between samples")
    if page.imagelength == 0 or page.imagewidth == 0 or page.samplesperpixel == 0:
        raise CorruptTiffError(f"{where}: empty image ({page.imagelength} x {page.imagewidth})")

    samples = int(page.samplesperpixel)
    height, width = int(page.imagelength), int(page.imagewidth)
    separate = page.planarconfig == 2 and samples > 1
    if page.is_tiled:
        seg_len, seg_w = int(page.tilelength), int(page.tilewidth)
    else:
        seg_len, seg_w = int(page.rowsperstrip) or height, width
    if seg_len <= 0 or seg_w <= 0:
        raise CorruptTiffError(f"{where}: segment shape {seg_len} x {seg_w} is empty")
    chunk_shape = (1 if separate else samples, min(seg_len, height) if not page.is_tiled else seg_len, seg_w)
    grid = (samples if separate else 1, -(-height // chunk_shape[1]), -(-width // seg_w))
    nseg = grid[0] * grid[1] * grid[2]
    if nseg > MAX_SEGMENTS:
        raise CorruptTiffError(f"{where}: {nseg} segments is more than the {MAX_SEGMENTS} stackcube accepts")
    recipe = _recipe(
        page,
        samples=samples,
        seg_len=seg_len if page.is_tiled else chunk_shape[1],
        seg_w=seg_w,
        separate=separate,
        where=where,
    )
    dtype, _ = _native(page.dtype)
    nodata_tag = page.tags.get(42113)
    return _Layout(
        shape=(samples, height, width),
        dtype=dtype,
        chunk_shape=chunk_shape,
        grid=grid,
        recipe=recipe,
        fill_value=parse_nodata(nodata_tag.value if nodata_tag is not None else None, dtype),
        attrs=_attrs(page, samples),
    )


@functools.lru_cache(maxsize=64)
def _native(dtype: Any) -> tuple[np.dtype[Any], str]:
    """The dtype as zarr knows it (tifffile may say 'L' where zarr knows 'Q'), and its name; every IFD asks."""
    native = np.dtype(np.dtype(dtype).str)
    return native, native.name


def _recipe(page: tifffile.TiffPage, *, samples: int, seg_len: int, seg_w: int, separate: bool, where: str) -> Recipe:
    compression = int(page.compression)
    jpegtables = page.jpegtables if compression in JPEG_COMPRESSIONS else None
    if jpegtables is not None:
        jpegtables = bytes(jpegtables)
    lerc = 0
    if compression == 34887:
        params = page.tags.valueof(50674)
        if params is not None and len(params) > 1:
            lerc = int(params[1])
            if lerc not in {0, 1, 2}:
                raise UnsupportedTiffError(f"{where}: LercParameters additional compression {lerc} is not supported")
    subsampling = (1, 1)
    if int(page.photometric) == 6 and compression not in JPEG_COMPRESSIONS:
        subsampling = tuple(int(v) for v in (page.subsampling or (2, 2)))  # type: ignore[assignment]
    recipe = Recipe(
        compression=compression,
        predictor=int(page.predictor),
        byteorder=page.parent.byteorder,
        dtype=_native(page.dtype)[1],
        bitspersample=int(page.bitspersample),
        samples=1 if separate else samples,
        segment_length=seg_len,
        segment_width=seg_w,
        image_length=int(page.imagelength),
        image_width=int(page.imagewidth),
        tiled=bool(page.is_tiled),
        photometric=int(page.photometric),
        planarconfig=int(page.planarconfig),
        fillorder=int(page.fillorder),
        extrasamples=tuple(int(v) for v in page.extrasamples),
        subsampling=subsampling,
        jpegtables=jpegtables,
        lerc_compression=lerc,
        t4options=int(page.tags.valueof(292, 0)) if compression == 3 else 0,
        sampleformat=int(page.sampleformat),
        eer=_eer_bits(page, compression, where),
    )
    try:
        check_decodable(recipe)
    except TiffError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return recipe


def _eer_bits(page: tifffile.TiffPage, compression: int, where: str) -> tuple[int, ...]:
    """EER's (skip, horizontal, vertical) bits, from the compression and tags 65007-65009, as tifffile reads them.

    tifffile decodes EER only in files with EER metadata (tag 65001); so does this, and refuses it elsewhere.
    """
    if compression not in EER_COMPRESSIONS:
        return ()
    if not page.parent.is_eer:
        name = tifffile.COMPRESSION(compression).name
        raise UnsupportedTiffError(f"{where}: Compression={compression} ({name}) outside an EER file is not supported")
    if compression == 65002:
        return (int(page.tags.valueof(65007, 7)), int(page.tags.valueof(65008, 2)), int(page.tags.valueof(65009, 2)))
    return (7 if compression == 65001 else 8, 2, 2)


def _attrs(page: tifffile.TiffPage, samples: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "photometric": tifffile.PHOTOMETRIC(int(page.photometric)).name.lower()
        if int(page.photometric) in tifffile.PHOTOMETRIC._value2member_map_
        else int(page.photometric)
    }
    if int(page.photometric) == 3:
        colormap = page.colormap
        if colormap is not None:
            attrs["colormap"] = np.asarray(colormap).tolist()
    if page.extrasamples:
        attrs["extrasamples"] = [int(v) for v in page.extrasamples]
    gdal = page.tags.get(42112)
    if gdal is not None:
        attrs.update(parse_gdal_metadata(gdal.value, samples))
    return attrs
