"""Plain data produced by the TIFF stage: a manifest per file, one entry per IFD, and a decoding recipe."""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

__all__ = ["Geo", "IfdManifest", "Recipe", "TiffManifest", "Validator", "is_weak", "same_etag", "validator_of"]

Role = Literal["image", "overview", "mask", "mask-overview"]


@dataclass(frozen=True, slots=True)
class Recipe:
    """How the bytes of one stored tile or strip become samples; the configuration of the ``stackcube.tiff`` codec.

    Field names follow TIFF tag names (and tifffile's spelling of them).
    """

    compression: int
    """Compression tag value (1 none, 5 LZW, 8 Deflate, 7 JPEG, 50000 ZSTD, ...)."""
    predictor: int
    """Predictor tag value (1 none, 2 horizontal differencing, 3 floating point)."""
    byteorder: Literal["<", ">"]
    """Byte order of the file, which is the byte order of uncompressed samples."""
    dtype: str
    """NumPy dtype string of one decoded sample, native order (``"uint16"``, ``"float32"``, ...)."""
    bitspersample: int
    """Bits per stored sample; below 8 or not a multiple of 8 means packed samples."""
    samples: int
    """Samples interleaved in one segment: SamplesPerPixel when chunky, 1 when planar-separate."""
    segment_length: int
    """Rows of one segment: TileLength, or RowsPerStrip clipped to the image length."""
    segment_width: int
    """Columns of one segment: TileWidth, or the image width for strips."""
    image_length: int
    """Rows of the whole image; with ``image_width``, tells an edge segment that stores only what remains."""
    image_width: int
    """Columns of the whole image."""
    tiled: bool
    """True for tiles, False for strips (only the last strip may be short)."""
    photometric: int
    """PhotometricInterpretation tag value (1 min-is-black, 2 RGB, 3 palette, 5 CMYK, 6 YCbCr, 8 CIE L*a*b*)."""
    planarconfig: int = 1
    """PlanarConfiguration: 1 chunky (samples interleaved), 2 separate (one plane per sample)."""
    fillorder: int = 1
    """FillOrder: 2 means bits within a byte are reversed before decoding."""
    extrasamples: tuple[int, ...] = ()
    """ExtraSamples tag values (alpha channels)."""
    subsampling: tuple[int, int] = (1, 1)
    """YCbCrSubSampling (horizontal, vertical) for YCbCr images that are not JPEG-compressed."""
    jpegtables: bytes | None = None
    """JPEGTables tag: quantization and Huffman tables shared by all JPEG segments."""
    lerc_compression: int = 0
    """Second stage of LERC as GDAL writes it (LercParameters): 0 none, 1 Deflate, 2 ZSTD."""
    t4options: int = 0
    """T4Options of CCITT Group 3 fax compression."""
    sampleformat: int = 1
    """SampleFormat tag value (1 unsigned, 2 signed, 3 float, 5 complex integer, 6 complex float); complex integers
    are stored as pairs of integers and decode to complex floats, as tifffile and GDAL present them."""
    eer: tuple[int, ...] = ()
    """(skip bits, horizontal bits, vertical bits) of EER compression (Thermo Fisher electron events); empty else."""

    def to_config(self) -> dict[str, Any]:
        """Return the recipe as JSON-compatible codec configuration.

        Optional fields at their default are left out, so a cube of ordinary files keeps the configuration an
        earlier stackcube wrote and can still read.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            if f.name == "jpegtables":
                value = None if value is None else base64.b64encode(value).decode("ascii")
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Recipe:
        """Inverse of :meth:`to_config`."""
        kwargs = dict(config)
        tables = kwargs.get("jpegtables")
        kwargs["jpegtables"] = None if tables is None else base64.b64decode(tables)
        for name in ("extrasamples", "subsampling", "eer"):
            if name in kwargs:
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Geo:
    """Georeferencing of one IFD, as GDAL reads it."""

    crs: str | None
    """``"EPSG:<code>"`` when the CRS GDAL reads from the GeoKeys is exactly a registry CRS, else WKT2; None when
    GDAL reads none (or only a LOCAL_CS or a geocentric CRS, which place no pixel on a map)."""
    transform: tuple[float, float, float, float, float, float] | None
    """Affine transform (a, b, c, d, e, f) of pixel corners, as rasterio's ``transform`` (PixelIsPoint shifted)."""
    raster_type: Literal["area", "point"] = "area"
    """GTRasterTypeGeoKey: whether the tie point refers to the pixel corner (area) or its centre (point)."""
    geokeys: dict[str, Any] = field(default_factory=dict)
    """The decoded GeoKeyDirectory, kept for provenance."""
    as_gdal: bool = True
    """The CRS was read as GDAL reads GeoKeys; False in manifests stored before it was (stackcube 0.x before
    #31), whose CRS :func:`stackcube.tiff.with_current_crs` reads again from :attr:`geokeys`."""


@dataclass(frozen=True, slots=True, eq=False)
class IfdManifest:
    """One image file directory: its shape, where every segment lives and how to decode it."""

    path: tuple[int, ...]
    """``(i,)`` for the i-th top-level IFD (tifffile's ``pages[i]``); ``(i, j)`` for SubIFD j of IFD i, and so on."""
    role: Role
    """Full-resolution image, reduced-resolution overview, GDAL mask, or a mask's overview."""
    level: int
    """0 for full resolution; n for the n-th overview of the image (or mask) it follows."""
    shape: tuple[int, int, int]
    """(band, y, x); band is SamplesPerPixel (1 for single-sample images)."""
    dtype: np.dtype[Any]
    """Decoded sample type (native byte order)."""
    chunk_shape: tuple[int, int, int]
    """(band, y, x) of one segment: all bands when chunky, 1 when planar-separate."""
    offsets: np.ndarray
    """uint64 byte offsets, shaped as the chunk grid (band, y, x); 0 marks a missing segment."""
    lengths: np.ndarray
    """uint64 byte counts, same shape; 0 marks a missing segment."""
    recipe: Recipe
    """How to decode each segment."""
    fill_value: int | float | None
    """GDAL_NODATA parsed to ``dtype``; None when the file declares no nodata."""
    geo: Geo | None
    """CRS and transform, when the IFD carries GeoTIFF tags."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """Other metadata: photometric name, colormap, per-band scale/offset and descriptions, GDAL metadata."""
    damage: str | None = None
    """Why this IFD cannot be read (a segment beyond the end of the file, or more strips than its RowsPerStrip
    allows), naming it; None when it is intact. The file's other IFDs stay readable."""

    def __repr__(self) -> str:
        b, y, x = self.shape
        return (
            f"<IfdManifest {self.path} {self.role} level {self.level}: {y} x {x} px x {b} {self.dtype}, "
            f"{int(np.count_nonzero(self.lengths))} segments of {self.chunk_shape[1]} x {self.chunk_shape[2]}>"
        )

    @property
    def nbytes_stored(self) -> int:
        """Sum of the byte counts of all segments."""
        return int(self.lengths.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (segment tables as base64 little-endian uint64); inverse of :meth:`from_dict`."""
        geo = None
        if self.geo is not None:
            geo = {
                "crs": self.geo.crs,
                "transform": None if self.geo.transform is None else list(self.geo.transform),
                "raster_type": self.geo.raster_type,
                "geokeys": _jsonable(self.geo.geokeys),
                "as_gdal": self.geo.as_gdal,
            }
        fill = self.fill_value
        return {
            "path": list(self.path),
            "role": self.role,
            "level": self.level,
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "chunk_shape": list(self.chunk_shape),
            "grid": list(self.offsets.shape),
            "offsets": _pack(self.offsets),
            "lengths": _pack(self.lengths),
            "recipe": self.recipe.to_config(),
            "fill_value": repr(fill) if isinstance(fill, float) else fill,
            "geo": geo,
            "attrs": _jsonable(self.attrs),
            "damage": self.damage,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IfdManifest:
        """Inverse of :meth:`to_dict`."""
        grid = tuple(data["grid"])
        geo = data["geo"]
        fill = data["fill_value"]
        return cls(
            path=tuple(data["path"]),
            role=data["role"],
            level=int(data["level"]),
            shape=tuple(data["shape"]),
            dtype=np.dtype(data["dtype"]),
            chunk_shape=tuple(data["chunk_shape"]),
            offsets=_unpack(data["offsets"], grid),
            lengths=_unpack(data["lengths"], grid),
            recipe=Recipe.from_config(data["recipe"]),
            fill_value=float(fill) if isinstance(fill, str) else fill,
            geo=None
            if geo is None
            else Geo(
                crs=geo["crs"],
                transform=None if geo["transform"] is None else tuple(geo["transform"]),
                raster_type=geo["raster_type"],
                geokeys=geo["geokeys"],
                as_gdal=bool(geo.get("as_gdal", False)),
            ),
            attrs=data["attrs"],
            damage=data.get("damage"),
        )


def _pack(table: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(table, dtype="<u8").tobytes()).decode("ascii")


def _unpack(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u8").astype(np.uint64).reshape(shape)


def _jsonable(value: Any) -> Any:
    """Metadata as JSON can hold it: NumPy scalars and arrays become numbers and lists, other objects text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


type Validator = Literal["etag", "last-modified"]
"""What protects reads of a source against its replacement (see :attr:`TiffManifest.validator`)."""


def is_weak(etag: str | None) -> bool:
    """Whether ``etag`` is a weak entity-tag (``W/"..."``): never equal to anything under If-Match (RFC 9110
    strong comparison), so it cannot protect a read."""
    return bool(etag) and etag.startswith(("W/", "w/"))  # type: ignore[union-attr]


def same_etag(a: str | None, b: str | None) -> bool:
    """Weak comparison of two ETags (RFC 9110 8.8.3.2): the opaque tags are equal, ``W/`` or not. Used to tell
    whether a file is unchanged; reads are checked with strong ones only."""
    if not a or not b:
        return a == b
    return a.removeprefix("W/").removeprefix("w/") == b.removeprefix("W/").removeprefix("w/")


def same_version(a: str | None, b: str | None) -> bool:
    """Whether two responses carry the same strong ETag (RFC 9110 strong comparison): the same bytes, whatever their
    Last-Modified says. Replicas behind one name (CDN edges, multi-site object stores, servers fed by copies) keep
    content-hash ETags but modification times of their own, so a Last-Modified is not compared where this holds."""
    return bool(a) and not is_weak(a) and a == b


def validator_of(etag: str | None, last_modified: datetime | None) -> Validator | None:
    """The validator a response offers: a strong ETag, else Last-Modified, else none."""
    if etag and not is_weak(etag):
        return "etag"
    return "last-modified" if last_modified is not None else None


@dataclass(frozen=True, slots=True, eq=False)
class TiffManifest:
    """Every IFD of one TIFF and the identity (ETag, Last-Modified, size) of the bytes they were read from."""

    href: str
    """The URL the manifest's segment references point into (``file://``, ``http(s)://``, ``s3://``)."""
    etag: str | None
    """ETag the server returned with the header bytes; None when it gives none."""
    last_modified: datetime | None
    """Last-Modified returned with the same response."""
    size: int
    """Size of the object in bytes."""
    byteorder: Literal["<", ">"]
    """Byte order of the file."""
    bigtiff: bool
    """True for BigTIFF (64-bit offsets)."""
    ifds: tuple[IfdManifest, ...]
    """Every IFD in file order, each followed by its SubIFDs (depth first)."""
    header_requests: int = 1
    """Ranged GETs spent reading the header (1 for a COG)."""
    header_bytes: int = 0
    """Bytes transferred to read the header."""
    validator: Validator | None = None
    """What a read of a tile is checked against, so a replaced file fails instead of giving other pixels:
    ``"etag"`` (If-Match), ``"last-modified"`` (If-Unmodified-Since), or None when nothing can be (no validator,
    a weak or per-response ETag without Last-Modified, a host that ignores conditional requests): the source is
    *unprotected*. :func:`validator_of` is the choice from the response alone; the build's probe of each host
    (:func:`stackcube.tiff.probe_hosts`) can only make it weaker."""
    account: str | None = None
    """The Azure storage account of an ``az://CONTAINER/BLOB`` href (which names only the container)."""
    _images: tuple[IfdManifest, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # planning asks for the images of every source many times
        object.__setattr__(self, "_images", tuple(e for e in self.ifds if e.role == "image"))

    def __repr__(self) -> str:
        image = self.images[0] if self.images else None
        shape = f"{image.shape[1]} x {image.shape[2]} px x {image.shape[0]} {image.dtype}, " if image else ""
        return f"<TiffManifest {self.href}: {shape}{len(self.ifds)} IFDs, ETag {self.etag}, {self.size} bytes>"

    def ifd(self, path: int | tuple[int, ...] = 0) -> IfdManifest:
        """Return the IFD at ``path`` (an int counts top-level IFDs as tifffile's ``pages`` does)."""
        key = (path,) if isinstance(path, int) else tuple(path)
        for entry in self.ifds:
            if entry.path == key:
                return entry
        known = ", ".join(str(e.path if len(e.path) > 1 else e.path[0]) for e in self.ifds)
        msg = f"{self.href} has no IFD {path!r}; it has: {known}"
        raise KeyError(msg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form, so manifests can be stored and read back without reading the file again."""
        return {
            "href": self.href,
            "etag": self.etag,
            "last_modified": None if self.last_modified is None else self.last_modified.isoformat(),
            "size": self.size,
            "byteorder": self.byteorder,
            "bigtiff": self.bigtiff,
            "ifds": [ifd.to_dict() for ifd in self.ifds],
            "header_requests": self.header_requests,
            "header_bytes": self.header_bytes,
            "validator": self.validator,
            "account": self.account,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TiffManifest:
        """Inverse of :meth:`to_dict`."""
        modified = data["last_modified"]
        etag, last_modified = data["etag"], None if modified is None else datetime.fromisoformat(modified)
        return cls(
            href=data["href"],
            etag=etag,
            last_modified=last_modified,
            size=int(data["size"]),
            byteorder=data["byteorder"],
            bigtiff=bool(data["bigtiff"]),
            ifds=tuple(IfdManifest.from_dict(ifd) for ifd in data["ifds"]),
            header_requests=int(data["header_requests"]),
            header_bytes=int(data["header_bytes"]),
            # manifests stored before hosts were probed: what their responses offered
            validator=data["validator"] if "validator" in data else validator_of(etag, last_modified),
            account=data.get("account"),
        )

    @property
    def images(self) -> tuple[IfdManifest, ...]:
        """Full-resolution images (not overviews or masks)."""
        return self._images
