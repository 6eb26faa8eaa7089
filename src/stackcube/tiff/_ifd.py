"""IFDs read directly for the layouts GDAL and rio-cogeo write: the fast path of header parsing.

tifffile builds a full ``TiffPage`` for every IFD (every tag read and converted, 30 attributes derived), about
0.15 ms each, which made header parsing CPU-bound at 900 headers per second. A manifest needs a dozen tags, so
this reads an IFD's entries with one ``struct`` call and decodes a tag when asked (text with tifffile's own
conversion, ``TiffTag._process_value``; GeoKeys with ``TiffPage.geotiff_tags``), and exposes them under
``TiffPage``'s attribute names, so the one IFD-to-manifest function (:func:`stackcube.tiff._parse._parse_page`)
serves both paths. A page's image structure is derived on first use from the tags in its ``key``, and its
georeferencing from those in its ``geokey``: the IFDs of a collection's files share a few structures and CRSs, so
the parser keeps what it derived for the next page with the same key (a header then costs reading its entries and
its segment tables, about 0.25 ms for a six-IFD COG).

Only files made of what tifffile would read the same way take this path: classic or BigTIFF, a plain IFD chain
(no SubIFDs), tags from :data:`KNOWN` only (baseline, GeoTIFF, GDAL), MinIsBlack or RGB samples of 8 to 64 bits,
one sample format. Anything else - and anything odd about these (a value beyond the file, a repeated tag) - raises
:class:`Unusual`, and tifffile parses the file instead; so errors are always tifffile's. Tests check that both paths
give the same manifest on every file of the corpus and on mutated headers.

An IFD chain that loops back to an IFD read before, or whose next-IFD offset points beyond the end of the file (a
file cut short), ends there, on both paths: tifffile reads the IFDs before such an offset and stops, and
:func:`chain_end` tells its path where the chain ends (tifffile looks for a loop only at its 100th IFD and may then
drop IFDs that come before the repeat; its iteration goes round a loop for ever).
"""

from __future__ import annotations

import struct
from typing import Any, Literal, cast

import numpy as np
import tifffile

__all__ = ["KNOWN", "STRUCTURE", "Unusual", "chain_end", "read_ifds"]

KNOWN = frozenset(
    {
        254, 256, 257, 258, 259, 262, 266, 269, 270, 271, 272, 273, 274, 277, 278, 279, 280, 281, 282, 283, 284, 285,
        296, 305, 306, 315, 316, 317, 322, 323, 324, 325, 338, 339, 340, 341, 347, 700, 33432, 33550, 33922, 34264,
        34675, 34735, 34736, 34737, 42112, 42113, 50674,
    }
)  # fmt: skip
"""Tags this path knows tifffile reads as plain values (no tag reader, no file-format quirk behind them)."""

STRUCTURE = frozenset({256, 257, 258, 259, 262, 266, 277, 278, 284, 317, 322, 323, 338, 339, 347, 42112, 42113, 50674})
"""Tags an IFD's image structure is derived from (all but where its segments lie, its GeoTIFF tags, and text that
describes it: name, software, date, ...); a page's ``key`` holds them."""

_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_KINDS = frozenset(_SIZES)
_GEOKEYS = (34735, 34736, 34737)  # GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams
_NUMPY = {1: "u1", 3: "u2", 4: "u4", 6: "i1", 8: "i2", 9: "i4", 11: "f4", 12: "f8", 13: "u4", 16: "u8", 17: "i8"}
_UNSIGNED = {3, 4, 13, 16}  # SHORT, LONG, IFD, LONG8
_TUPLES = tifffile.TIFF.TAG_TUPLE  # tags tifffile keeps as tuples even with one value
_PHOTOMETRIC = {1, 2}  # MinIsBlack, RGB
_BITS = {8, 16, 32, 64}
_MAX_TAGS = 4096  # as tifffile


class Unusual(Exception):  # noqa: N818 - not an error: a reason to take the other path
    """The file is not one this path reads exactly as tifffile would; tifffile parses it."""


class _Tag:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Tags:
    """The tags of one IFD, converted on first use; ``get``/``valueof``/``[]``/``in`` as ``tifffile.TiffTags``."""

    def __init__(self, read: _Reader, byteorder: str, raw: dict[int, tuple[int, int, bytes]], slot: int) -> None:
        self._read = read
        self.byteorder = byteorder
        self._order: Literal["little", "big"] = "little" if byteorder == "<" else "big"
        self._slot = slot
        self._raw = raw
        self._values: dict[int, Any] = {}  # decoded on first use

    def __contains__(self, code: int) -> bool:
        return code in self._raw

    def count(self, code: int) -> int:
        return self._raw[code][1]

    def content(self, code: int) -> tuple[int, int, bytes]:
        """The tag's type, count and value as bytes."""
        kind, count, _ = self._raw[code]
        return kind, count, self._bytes(code)

    def _bytes(self, code: int) -> bytes:
        kind, count, value = self._raw[code]
        size = _SIZES[kind] * count
        if size <= self._slot:
            return value[:size]
        offset = int.from_bytes(value, self._order)
        if offset < 8 or offset + size > self._read.size:
            raise Unusual(f"tag {code} lies beyond the file")
        return self._read(offset, size)

    def array(self, code: int) -> np.ndarray:
        """A numeric tag as an array (segment offsets and byte counts)."""
        kind, count, _ = self._raw[code]
        if kind not in _NUMPY:
            raise Unusual(f"tag {code} is of type {kind}")
        return np.frombuffer(self._bytes(code), dtype=self.byteorder + _NUMPY[kind], count=count)

    def valueof(self, code: int, default: Any = None) -> Any:
        value = self._values.get(code, _MISSING)
        if value is not _MISSING:
            return value
        if code not in self._raw:
            return default
        kind, count, _ = self._raw[code]
        data = self._bytes(code)
        if kind in {1, 7}:
            value = data
        elif kind == 2:
            value = tifffile.TiffTag._process_value(data, code, kind, 0)  # tifffile's decoding of text
        else:
            # as tifffile's _process_value, without its enums (the manifest takes int() of them)
            letter = tifffile.TIFF.DATA_FORMATS[kind]
            value = struct.unpack(f"{self.byteorder}{count * int(letter[0])}{letter[1]}", data)
            if len(value) == 1 and code not in _TUPLES:
                value = value[0]
        self._values[code] = value
        return value

    def get(self, code: int, default: Any = None) -> _Tag | Any:
        return _Tag(self.valueof(code)) if code in self._raw else default

    def __getitem__(self, code: int) -> _Tag:
        if code not in self._raw:
            raise KeyError(code)
        return _Tag(self.valueof(code))


_MISSING = object()


class _Reader:
    """Bytes of the file: from the block read with its first bytes (where a COG's header is) without going through
    the file object, which costs more than the slice."""

    __slots__ = ("_block", "_fh", "_start", "_stop", "size")

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.size: int = fh.size
        found = fh.block_at(0) if hasattr(fh, "block_at") else None
        self._start, self._block = cast("tuple[int, bytes]", found or (0, b""))
        self._stop = self._start + len(self._block)

    def __call__(self, start: int, size: int) -> bytes:
        stop = start + size
        if self._start <= start and stop <= self._stop:
            return self._block[start - self._start : stop - self._start]
        self._fh.seek(start)
        return bytes(self._fh.read(size))  # a NeedBytes when not fetched yet


class _File:
    """What ``TiffPage.parent`` gives the manifest."""

    is_eer = False

    def __init__(self, byteorder: str) -> None:
        self.byteorder = byteorder


class _Page:
    """One IFD under ``tifffile.TiffPage``'s attribute names, derived as tifffile derives them.

    Where its segments lie and its GeoTIFF tags are read at once; the image structure (shape, samples, tiling,
    compression, ...) on first use, from the tags that :attr:`key` holds: pages with equal keys have equal structure,
    so a caller may keep what it derived from one page's structure for the next page with that key.
    """

    pages = None  # no SubIFDs on this path
    imagedepth = 1
    tiledepth = 1
    subsampling = None
    colormap = None

    def __init__(self, tags: _Tags, parent: _File, key: tuple[Any, ...]) -> None:
        self.tags = tags
        self.parent = parent
        self.key = key
        self.subfiletype = int(tags.valueof(254, 0))
        offsets, counts = (324, 325) if 324 in tags else (273, 279)
        if offsets not in tags or counts not in tags:
            raise Unusual("no segment offsets or byte counts")
        self.dataoffsets = tags.array(offsets)
        self.databytecounts = tags.array(counts)
        self.is_geotiff = 34735 in tags
        self._derived = False

    def __getattr__(self, name: str) -> Any:  # the structure's attributes, derived on first use
        if name.startswith("_") or self._derived:
            raise AttributeError(name)
        self.derive()
        return getattr(self, name)

    def derive(self) -> None:
        """Derive the image structure from the tags (raises :class:`Unusual` for one tifffile treats specially)."""
        self._derived = True
        try:
            value = self.tags.valueof
            self.imagewidth = int(value(256, 0))
            self.imagelength = int(value(257, 0))
            self.samplesperpixel = int(value(277, 1))
            self.compression = int(value(259, 1))
            self.photometric = int(value(262, 0))
            self.fillorder = int(value(266, 1))
            self.planarconfig = int(value(284, 1))
            # a predictor on uncompressed data is ignored, as libtiff and tifffile ignore it (applied, it made other
            # pixels than theirs)
            self.predictor = int(value(317, 1)) if self.compression != 1 else 1
            self.tilewidth = int(value(322, 0))
            self.tilelength = int(value(323, 0))
            self.extrasamples = tuple(int(v) for v in value(338, ()))
            self.jpegtables = value(347)
            if self.photometric not in _PHOTOMETRIC or self.compression in {2, 3, 4, 6} or self.fillorder != 1:
                raise Unusual("a photometric interpretation, compression or fill order tifffile treats specially")
            self.bitspersample = self._uniform(258, 1)
            self.sampleformat = self._uniform(339, 1)
            if self.bitspersample not in _BITS or self.sampleformat not in {1, 2, 3}:
                raise Unusual("samples other than 8 to 64 bits of one format")
            if 322 in self.tags:
                self.rowsperstrip = 0
            else:
                rows = value(278) if 278 in self.tags and self.tags.count(278) == 1 else self.imagelength
                self.rowsperstrip = min(int(rows), self.imagelength)
            kind = tifffile.TIFF.SAMPLE_DTYPES.get((self.sampleformat, self.bitspersample))
            self.dtype = np.dtype(kind) if kind is not None else None
            self.is_tiled = self.tilewidth > 0
        except (TypeError, ValueError, KeyError, struct.error, OverflowError) as exc:  # tag values of a wrong kind
            raise Unusual(str(exc)) from None

    def _uniform(self, code: int, default: int) -> int:
        value = self.tags.valueof(code)
        if value is None:
            return default
        if isinstance(value, tuple):
            value = value[: self.samplesperpixel]
            if len(set(value)) != 1:
                raise Unusual(f"tag {code} differs between samples")
            value = value[0]
        return int(value)

    @property
    def geokey(self) -> tuple[Any, ...]:
        """The GeoKey directory and the values it points into: equal for pages with equal GeoKeys."""
        tags = self.tags
        return (tags.byteorder, *((code, *tags.content(code)) for code in _GEOKEYS if code in tags))

    def model(self) -> dict[str, Any]:
        """The tie point, pixel scale and transformation tags, as ``geotiff_tags`` has them (shapes checked as
        tifffile checks them)."""
        value = self.tags.valueof
        model: dict[str, Any] = {}
        if (scale := value(33550)) is not None:
            model["ModelPixelScale"] = list(scale) if isinstance(scale, tuple) else [scale]
        if (tie := value(33922)) is not None:
            tie = list(tie) if isinstance(tie, tuple) else [tie]
            if len(tie) % 6:
                raise Unusual("a ModelTiepoint of other than 6 values a point")
            model["ModelTiepoint"] = tie
        if (matrix := value(34264)) is not None:
            matrix = list(matrix) if isinstance(matrix, tuple) else [matrix]
            if len(matrix) != 16:
                raise Unusual("a ModelTransformation of other than 16 values")
            model["ModelTransformation"] = matrix
        return model

    @property
    def geotiff_tags(self) -> dict[str, Any] | None:
        decode: Any = tifffile.TiffPage.geotiff_tags.func  # type: ignore[attr-defined]  # tifffile's own decoding
        return cast("dict[str, Any] | None", decode(self))


class _Header:
    """What the first bytes of a TIFF say: byte order, classic or BigTIFF, the layout of its IFDs."""

    def __init__(self, head: bytes) -> None:
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            self.bigtiff = False
        elif head[:4] in (b"II+\x00", b"MM\x00+") and head[4:8] in (b"\x08\x00\x00\x00", b"\x00\x08\x00\x00"):
            self.bigtiff = True
        else:
            raise Unusual("not a classic TIFF or BigTIFF header")
        if len(head) < (16 if self.bigtiff else 8):
            raise Unusual("a header cut short")
        self.byteorder = "<" if head[:2] == b"II" else ">"
        self.number, self.entry, self.slot, self.pointer = (
            ("Q", "HHQ8s", 8, "Q") if self.bigtiff else ("H", "HHI4s", 4, "I")
        )
        self.entry_size = struct.calcsize("<" + self.entry)
        self.number_size = 8 if self.bigtiff else 2
        self.first = struct.unpack_from(self.byteorder + self.pointer, head, 8 if self.bigtiff else 4)[0]


def _ends_chain(offset: int, seen: set[int], size: int) -> bool:
    """Whether a next-IFD offset ends the chain: it points back at an IFD read before, or beyond the file."""
    return offset in seen or offset >= size


def chain_end(fh: Any) -> tuple[int, int] | None:
    """The bytes (start, stop) of the next-IFD offset that ends the top-level IFD chain, when one loops back or
    points beyond the file (tifffile is to read it as 0); None for a chain that ends with 0, or one tifffile is left
    to judge (a header or tag count it refuses). Raises ``NeedBytes`` for bytes not fetched yet."""
    read = _Reader(fh)
    try:
        header = _Header(read(0, 16 if fh.size >= 16 else 8))
    except Unusual:
        return None
    number, pointer = header.byteorder + header.number, header.byteorder + header.pointer
    offset, seen = header.first, set()
    while 8 <= offset < fh.size and offset not in seen:
        seen.add(offset)
        if offset + header.number_size > fh.size:
            return None
        (n,) = struct.unpack(number, read(offset, header.number_size))
        at = offset + header.number_size + n * header.entry_size
        if not 0 < n <= _MAX_TAGS or at + header.slot > fh.size:
            return None
        (offset,) = struct.unpack(pointer, read(at, header.slot))
        if offset and _ends_chain(offset, seen, fh.size):
            return at, at + header.slot
    return None


def read_ifds(fh: Any) -> tuple[list[_Page], str, bool]:
    """The IFD chain of the TIFF in ``fh`` as pages (up to an offset that loops back or points beyond the file), its
    byte order, and whether it is a BigTIFF; raises :class:`Unusual` for a file tifffile should read, and
    ``NeedBytes`` for bytes not fetched yet."""
    read = _Reader(fh)
    header = _Header(read(0, 16 if fh.size >= 16 else 8))
    byteorder, bigtiff = header.byteorder, header.bigtiff
    order: Literal["little", "big"] = "little" if byteorder == "<" else "big"
    number, entry, slot, pointer = header.number, header.entry, header.slot, header.pointer
    entry_size, number_size, pointer_size = header.entry_size, header.number_size, slot
    offset = header.first
    parent = _File(byteorder)
    pages: list[_Page] = []
    seen: set[int] = set()
    size = fh.size
    while offset:
        if pages and _ends_chain(offset, seen, size):
            break  # as tifffile: the IFDs before it are read
        if offset < 8 or offset >= size:
            raise Unusual("an IFD offset points outside the file")
        seen.add(offset)
        (n,) = struct.unpack(byteorder + number, read(offset, number_size))
        if not 0 < n <= _MAX_TAGS:
            raise Unusual(f"{n} tags")
        data = read(offset + number_size, n * entry_size + pointer_size)
        fields = struct.unpack_from(byteorder + entry * n, data)
        codes, kinds = fields[0::4], fields[1::4]
        if not KNOWN.issuperset(codes) or not _KINDS.issuperset(kinds) or len(set(codes)) != n:
            raise Unusual("a tag not known here, of a type not known here, or repeated")
        counts, slots = fields[2::4], fields[3::4]
        raw = dict(zip(codes, zip(kinds, counts, slots, strict=True), strict=True))
        structure: list[tuple[int, int, int, bytes]] = []
        for code, kind, count, value in zip(codes, kinds, counts, slots, strict=True):
            nbytes = count * _SIZES[kind]
            if nbytes > slot:
                where = int.from_bytes(value, order)
                if where < 8 or where + nbytes > size:
                    raise Unusual(f"tag {code}'s value lies outside the file")  # tifffile calls the file corrupt
                if code in STRUCTURE:
                    structure.append((code, kind, count, read(where, nbytes)))
            elif code in STRUCTURE:  # the slot as it is (bytes past the value are part of the key: a miss at worst)
                structure.append((code, kind, count, value))
        try:
            pages.append(_Page(_Tags(read, byteorder, raw, slot), parent, (byteorder, *structure)))
        except (TypeError, ValueError, KeyError, struct.error, OverflowError) as exc:  # tag values of a wrong kind
            raise Unusual(str(exc)) from None
        offset = struct.unpack_from(byteorder + pointer, data, n * entry_size)[0]
    if not pages:
        raise Unusual("no IFD")
    return pages, byteorder, bigtiff
