"""Twins of product families on their producers' grids: COGs written by GDAL (through rasterio) with the CRS
definitions and GeoKeys the producers' tools give, and STAC items as the real catalogs publish them.

Each builder writes small files (a few hundred pixels a side at most) on the producer's exact lattice and returns a
:class:`ProductTwin`: the items, rewritten to point at ``base_url``, and the local paths of their files.

=====================  =========================================================================================
``modis``              MODIS land tiles h11v05 and h12v05 (MOD09A1, 500 m, 8-day) on the sinusoidal grid
                       (sphere R = 6371007.181 m), CRS as GDAL's HDF4 driver reads HDF-EOS (WKT without a code),
                       each tile's transform as GDAL derives it from the tile's HDF-EOS corners (six decimals),
                       downscaled 20x (120 x 120 pixels of 9266.25 m); items as the Planetary Computer publishes
                       them (``datetime`` null, ``proj:epsg`` null, ``proj:wkt2``, ``proj:transform``,
                       ``proj:shape``).
``goes``               GOES-16 ABI L2 CMIP full disk, band 13 on the 2 km fixed grid scaled down 24x (226 x 226):
                       geostationary (sweep x, h = 35786023 m, lon_0 = -75), CRS as GDAL's netCDF driver builds it
                       from ``goes_imager_projection`` (so GDAL writes an ESRI PE string), scale and offset in the
                       file only, space outside the disk as the fill value; item as stactools-goes writes it.
``nsidc-epsg``         NSIDC sea-ice polar stereographic north, 25 km (304 x 448, origin -3850000, 5850000), written
                       with ``EPSG:3413``; item with ``proj:code``.
``nsidc-user``         the same grid with the CRS as parameters and no code (older NSIDC products); item with
                       ``proj:projjson``.
``ease2-global``       EASE-Grid 2.0 global 36 km (EPSG:6933, 964 x 406 pixels of 36032.2208405844 m from
                       -17367530.44516138, 7314540.83063834, NSIDC's grid definition), SMAP L3 soil moisture,
                       float32 with fill -9999.
``ease2-north``        EASE-Grid 2.0 north 36 km (EPSG:6931, 500 x 500, origin -9000000, 9000000), SMAP L3
                       freeze/thaw.
``conus-albers``       NAD83 / Conus Albers (EPSG:5070), land cover at 30 m: the north-west 256 x 256 pixels of
                       Landsat ARD tile h21v09 on the ARD tile grid (origin -2565585, 3314805; 150 km tiles).
``state-plane``        NAD83 / New York Long Island in US survey feet (EPSG:2263), an RGB orthophoto tile of
                       2500 ft at 10 ft (250 x 250 pixels, three bands, no nodata).
=====================  =========================================================================================

Pixels follow :func:`tests.twins.pixels`: deterministic per item and band, with a nodata corner where there is
nodata. A CRS GDAL cannot write into GeoKeys would go to an ``.aux.xml`` sidecar; none of these need one, and
:func:`write_product_cog` refuses to leave one behind, so the TIFF alone says what GDAL reads.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyproj
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile

from tests.twins import pixels

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PROJECTION_V1 = "https://stac-extensions.github.io/projection/v1.0.0/schema.json"
PROJECTION_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_V1 = "https://stac-extensions.github.io/raster/v1.0.0/schema.json"
RASTER_V11 = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO_V1 = "https://stac-extensions.github.io/eo/v1.0.0/schema.json"


@dataclass(frozen=True)
class ProductTwin:
    """The twin of one product family: items whose one data asset points at files written here."""

    name: str
    """The family's name (a key of :data:`PRODUCTS`)."""
    items: list[dict[str, Any]]
    """STAC items (dicts), hrefs under ``base_url``."""
    asset: str
    """The asset key holding the COG."""
    paths: list[Path]
    """The local file of each item's asset, in item order."""
    resolution_deg: float
    """A pixel size in degrees close to the files' own, for warping them onto longitude/latitude."""
    bbox: tuple[float, float, float, float] | None = field(default=None)
    """An area (west, south, east, north) inside the data, for warps that need one; None for the whole grid."""


# --------------------------------------------------------------------------------------------------------------
# Writing


def write_product_cog(
    path: Path,
    *,
    crs: CRS,
    transform: Affine,
    shape: tuple[int, int],
    dtype: str,
    seed: str,
    count: int = 1,
    fill: float | None = None,
    file_nodata: float | None = None,
    scale: float = 1.0,
    offset: float = 0.0,
    outside: np.ndarray | None = None,
    blocksize: int = 512,
) -> None:
    """Write one COG as a producer's ``gdal_translate -of COG -co COMPRESS=DEFLATE`` does from its source
    dataset: GDAL's COG driver (tiles of ``blocksize``, Deflate) from an in-memory dataset holding ``crs``,
    ``transform``, the file's nodata and the band scale/offset.

    ``fill`` is the value of missing pixels (a corner, and where ``outside`` is true), whether or not the file says
    so (``file_nodata``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.stack([pixels(seed, band, shape, dtype, fill) for band in range(count)])
    if outside is not None and fill is not None:
        data[:, outside] = np.dtype(dtype).type(fill)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": shape[0],
        "width": shape[1],
        "count": count,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": file_nodata,
    }
    with MemoryFile() as memory, memory.open(**profile) as source:
        source.write(data)
        if scale != 1.0 or offset != 0.0:
            source.scales, source.offsets = [scale] * count, [offset] * count
        rasterio.shutil.copy(source, path, driver="COG", compress="DEFLATE", blocksize=blocksize)
    sidecar = Path(f"{path}.aux.xml")
    if sidecar.exists():
        sidecar.unlink()
        msg = f"GDAL could not write the CRS of {path.name} into GeoKeys (it wrote a sidecar)"
        raise AssertionError(msg)


def _lonlat_footprint(crs: CRS, transform: Affine, shape: tuple[int, int]) -> tuple[dict[str, Any], list[float]]:
    """A GeoJSON polygon through the grid's corners in longitude/latitude, and its bbox."""
    to_lonlat = pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(crs.to_wkt()), "EPSG:4326", always_xy=True)
    rows, cols = shape
    t = transform
    corners = [(t.c, t.f + t.e * rows), (t.c + t.a * cols, t.f + t.e * rows), (t.c + t.a * cols, t.f), (t.c, t.f)]
    ring = [list(to_lonlat.transform(x, y)) for x, y in corners]
    ring.append(ring[0])
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return {"type": "Polygon", "coordinates": [ring]}, [min(lons), min(lats), max(lons), max(lats)]


def _href(base_url: str, rel: str) -> str:
    return f"{base_url.rstrip('/')}/{rel}"


def _item(
    item_id: str,
    collection: str,
    properties: dict[str, Any],
    geometry: dict[str, Any],
    bbox: Sequence[float],
    assets: dict[str, Any],
    extensions: Sequence[str],
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": list(extensions),
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": list(bbox),
        "properties": properties,
        "links": [],
        "assets": assets,
    }


# --------------------------------------------------------------------------------------------------------------
# MODIS sinusoidal tiles

MODIS_WKT = (
    'PROJCS["unnamed",GEOGCS["Unknown datum based upon the custom spheroid",'
    'DATUM["Not specified (based on custom spheroid)",SPHEROID["Custom spheroid",6371007.181,0]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]]],'
    'PROJECTION["Sinusoidal"],PARAMETER["longitude_of_center",0],PARAMETER["false_easting",0],'
    'PARAMETER["false_northing",0],UNIT["Meter",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
)
"""The CRS GDAL's HDF4 driver reads from a MODIS HDF-EOS tile, and the Planetary Computer's ``proj:wkt2`` (which
holds this WKT1 text)."""

MODIS_XMIN, MODIS_YMAX = -20015109.354, 10007554.677
"""The MODIS land grid's corner (metres, as the HDF-EOS grid definitions round it)."""
MODIS_TILE = -MODIS_XMIN / 18
"""The side of one of the 36 x 18 tiles: 1111950.5196667 m (the HDF-EOS corners' lattice)."""
MODIS_PIXELS = 2400
"""Pixels per tile side of the 500 m products."""
MODIS_DOWNSCALE = 20
"""The twins' tiles have 2400 / 20 = 120 pixels a side."""

Lattice = Literal["hdf-eos", "shared"]
"""How MODIS twins place their tiles: each tile's own transform as GDAL derives it from its HDF-EOS corners (the
real COGs), or one pixel size for all (the ideal lattice)."""


def modis_tile_corners(h: int, v: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """The upper-left and lower-right corners of tile hHHvVV as HDF-EOS stores them (``UpperLeftPointMtrs``,
    ``LowerRightMtrs``: metres to six decimals)."""
    upper_left = (round(MODIS_XMIN + h * MODIS_TILE, 6), round(MODIS_YMAX - v * MODIS_TILE, 6))
    lower_right = (round(MODIS_XMIN + (h + 1) * MODIS_TILE, 6), round(MODIS_YMAX - (v + 1) * MODIS_TILE, 6))
    return upper_left, lower_right


def modis_transform(h: int, v: int, pixels_per_side: int) -> Affine:
    """Tile hHHvVV's transform as GDAL's HDF4 driver derives it: the upper-left corner and (lower right - upper
    left) / pixels, per tile (so two tiles' pixel sizes can differ in the last bits)."""
    (x0, y0), (x1, y1) = modis_tile_corners(h, v)
    return Affine((x1 - x0) / pixels_per_side, 0.0, x0, 0.0, (y1 - y0) / pixels_per_side, y0)


def modis(
    out_dir: Path, base_url: str, *, tiles: Sequence[tuple[int, int]] = ((11, 5), (12, 5)), lattice: Lattice = "hdf-eos"
) -> ProductTwin:
    """MOD09A1 (surface reflectance, 8-day, 500 m) tiles of one date, asset ``sur_refl_b01`` (int16; the file's
    nodata -28672, the HDF ``_FillValue``; STAC states only the scale 0.0001, as the Planetary Computer does).

    ``lattice="hdf-eos"`` gives each tile the transform GDAL derives from its own HDF-EOS corners, as the real COGs
    have; ``"shared"`` gives every tile the first tile's pixel size (the ideal lattice), to tell a last-bit
    difference from anything else.
    """
    n = MODIS_PIXELS // MODIS_DOWNSCALE
    crs = CRS.from_wkt(MODIS_WKT)
    first = modis_transform(*tiles[0], n)
    items, paths = [], []
    for h, v in tiles:
        t = modis_transform(h, v, n)
        if lattice == "shared":
            t = Affine(first.a, 0.0, t.c, 0.0, first.e, t.f)
        item_id = f"MOD09A1.A2022033.h{h:02d}v{v:02d}.061.2022042043514"
        rel = f"modis-09A1-061/{item_id}_sur_refl_b01.tif"
        write_product_cog(
            out_dir / rel, crs=crs, transform=t, shape=(n, n), dtype="int16", seed=item_id, fill=-28672,
            file_nodata=-28672,
        )  # fmt: skip
        geometry, bbox = _lonlat_footprint(crs, t, (n, n))
        (x0, y0), (x1, y1) = modis_tile_corners(h, v)
        properties = {
            "start_datetime": "2022-02-02T00:00:00Z",
            "end_datetime": "2022-02-09T23:59:59Z",
            "modis:horizontal-tile": h,
            "modis:vertical-tile": v,
            "modis:tile-id": f"510{h:02d}0{v:02d}",
            "instruments": ["modis"],
            "platform": "terra",
            "created": "2022-02-11T04:35:14Z",
            "updated": "2022-02-10T22:44:13.607000Z",
            "proj:epsg": None,
            "proj:wkt2": MODIS_WKT,
            "proj:geometry": {
                "type": "Polygon",
                "coordinates": [[[x1, y1], [x1, y0], [x0, y0], [x0, y1], [x1, y1]]],
            },
            "proj:transform": list(t)[:6],
            "proj:shape": [n, n],
            "datetime": None,
        }
        asset = {
            "href": _href(base_url, rel),
            "type": COG_TYPE,
            "title": "Surface Reflectance Band 1 (620-670 nm)",
            "raster:bands": [{"data_type": "int16", "spatial_resolution": 500, "scale": 0.0001}],
            "eo:bands": [
                {"name": "sur_refl_b01", "common_name": "red", "center_wavelength": 0.645, "full_width_half_max": 0.5}
            ],
            "roles": ["data", "reflectance"],
        }
        extensions = [RASTER_V1, EO_V1, PROJECTION_V1]
        items.append(_item(item_id, "modis-09A1-061", properties, geometry, bbox, {"sur_refl_b01": asset}, extensions))
        paths.append(out_dir / rel)
    return ProductTwin("modis", items, "sur_refl_b01", paths, resolution_deg=0.1)


# --------------------------------------------------------------------------------------------------------------
# GOES-R ABI full disk

GOES_WKT = (
    'PROJCS["unnamed",GEOGCS["unknown",DATUM["unnamed",SPHEROID["Spheroid",6378137,298.2572221]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]]],'
    'PROJECTION["Geostationary_Satellite"],PARAMETER["central_meridian",-75],'
    'PARAMETER["satellite_height",35786023],PARAMETER["false_easting",0],PARAMETER["false_northing",0],'
    'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],'
    'EXTENSION["PROJ4","+proj=geos +lon_0=-75 +h=35786023 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs '
    '+sweep=x"]]'
)
"""The CRS GDAL's netCDF driver builds from a GOES-16 file's ``goes_imager_projection`` (what the real CMIP COGs
carry: GDAL writes it as an ESRI PE string in ``PCSCitationGeoKey``)."""

GOES_STAC_WKT2 = (
    'PROJCRS["undefined",BASEGEOGCRS["undefined",DATUM["undefined",ELLIPSOID["GRS 1980(IUGG, 1980)",6378137,'
    '298.257222101,LENGTHUNIT["metre",1,ID["EPSG",9001]]]],PRIMEM["Greenwich",0,ANGLEUNIT["degree",'
    '0.0174532925199433],ID["EPSG",8901]]],CONVERSION["unknown",METHOD["Geostationary Satellite (Sweep X)"],'
    'PARAMETER["Satellite height",35786023,LENGTHUNIT["metre",1,ID["EPSG",9001]]],PARAMETER["Latitude of natural '
    'origin",0,ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8801]],PARAMETER["Longitude of natural origin",-75,'
    'ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8802]],PARAMETER["False easting",0,LENGTHUNIT["metre",1],'
    'ID["EPSG",8806]],PARAMETER["False northing",0,LENGTHUNIT["metre",1],ID["EPSG",8807]]],CS[Cartesian,2],'
    'AXIS["(E)",east,ORDER[1],LENGTHUNIT["metre",1,ID["EPSG",9001]]],AXIS["(N)",north,ORDER[2],'
    'LENGTHUNIT["metre",1,ID["EPSG",9001]]]]'
)
"""``proj:wkt2`` of goes-cmi items (stactools-goes)."""

GOES_ORIGIN = -5434895.081637931
"""The full disk's west (and, negated, north) edge in metres, as GDAL reads the fixed grid from the netCDF files
(goes-cmi items' ``proj:transform``); every ABI resolution's grid starts there."""
GOES_PIXEL_500M = 501.0043288718853
"""The 0.5 km fixed grid's pixel (goes-cmi full-disk items, 21696 pixels a side); the 1 and 2 km grids' are 2 and 4
times it."""
GOES_PIXELS_2KM = 5424
"""Pixels a side of the full disk at 2 km."""
GOES_DOWNSCALE = 24
"""The twin has 5424 / 24 = 226 pixels of 2 km x 24 a side."""
GOES_C13_SCALE, GOES_C13_OFFSET = 0.06145332, 89.62
"""Band 13's ``scale_factor`` and ``add_offset`` (brightness temperature in K), which GDAL writes into the COG."""


def goes(out_dir: Path, base_url: str) -> ProductTwin:
    """A GOES-16 ABI L2 CMIP full-disk item with asset ``CMIP_C13`` (uint16, nodata 65535 in STAC and file, the
    file's scale and offset only in the file; pixels off the Earth's disk hold the fill value)."""
    n = GOES_PIXELS_2KM // GOES_DOWNSCALE
    size = GOES_PIXEL_500M * 4 * GOES_DOWNSCALE
    t = Affine(size, 0.0, GOES_ORIGIN, 0.0, -size, -GOES_ORIGIN)
    crs = CRS.from_wkt(GOES_WKT)
    rows, cols = np.mgrid[0:n, 0:n]
    x, y = t.c + t.a * (cols + 0.5), t.f + t.e * (rows + 0.5)
    to_lonlat = pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(crs.to_wkt()), "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(x, y, errcheck=False)
    outside = ~(np.isfinite(lon) & np.isfinite(lat))
    item_id = "OR_ABI-L2-F-M6_G16_s20220011800205"
    rel = f"goes-cmi/{item_id}/OR_ABI-L2-CMIPF-M6C13_G16_s20220011800205_e20220011809525_c20220011810003_CMI.tif"
    write_product_cog(
        out_dir / rel, crs=crs, transform=t, shape=(n, n), dtype="uint16", seed=item_id, fill=65535,
        file_nodata=65535, scale=GOES_C13_SCALE, offset=GOES_C13_OFFSET, outside=outside,
    )  # fmt: skip
    west, east = float(np.nanmin(lon[~outside])), float(np.nanmax(lon[~outside]))
    south, north = float(np.nanmin(lat[~outside])), float(np.nanmax(lat[~outside]))
    geometry = {
        "type": "Polygon",
        "coordinates": [[[east, south], [east, north], [west, north], [west, south], [east, south]]],
    }
    properties = {
        "platform": "GOES-16",
        "instruments": ["ABI"],
        "processing:software": {"stactools-goes": "0.1.6"},
        "goes:system-environment": "OR",
        "goes:image-type": "FULL DISK",
        "goes:mode": "6",
        "goes:processing-level": "L2",
        "proj:epsg": None,
        "proj:wkt2": GOES_STAC_WKT2,
        "proj:shape": [n, n],
        "proj:transform": list(t)[:6],
        "proj:bbox": [t.c + t.a / 2, t.f + t.e / 2, t.c + t.a * (n - 0.5), t.f + t.e * (n - 0.5)],  # as stactools
        "datetime": "2022-01-01T18:00:20.500000Z",
    }
    asset = {
        "href": _href(base_url, rel),
        "type": COG_TYPE,
        "title": "Cloud and Moisture Imagery brightness temperature at top of atmosphere - Band 13",
        "goes:end_observation_time": "2022-01-01T18:09:52.500000Z",
        "eo:bands": [
            {
                "name": "ABI Band 13",
                "description": "Surface and cloud",
                "center_wavelength": 10.35,
            }
        ],
        "raster:bands": [{"nodata": 65535, "spatial_resolution": 2000, "data_type": "uint16"}],
        "roles": ["data"],
    }
    extensions = ["https://stac-extensions.github.io/processing/v1.0.0/schema.json", PROJECTION_V1]
    item = _item(item_id, "goes-cmi", properties, geometry, [west, south, east, north], {"CMIP_C13": asset}, extensions)
    return ProductTwin(
        "goes", [item], "CMIP_C13", [out_dir / rel], resolution_deg=0.5, bbox=(-120.0, -50.0, -30.0, 50.0)
    )


# --------------------------------------------------------------------------------------------------------------
# Grids with EPSG codes (and one without)

NSIDC_PROJ = "+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
"""NSIDC Sea Ice Polar Stereographic North (EPSG:3413) as parameters, as NSIDC's older tools define it."""


@dataclass(frozen=True)
class CodedGrid:
    """A product on a grid of a CRS with an EPSG code, and how its catalog describes it."""

    name: str
    """The family's name (a key of :data:`PRODUCTS`)."""
    collection: str
    """The item's collection."""
    item_id: str
    """The item's id."""
    asset: str
    """The key of its one data asset."""
    epsg: int
    """The CRS's EPSG code."""
    transform: Affine
    """The grid's transform (pixel corners)."""
    shape: tuple[int, int]
    """(rows, columns)."""
    dtype: str
    """Sample type."""
    nodata: float | None
    """Nodata as STAC states it (``raster:bands``), and the value of missing pixels; None: every pixel is valid."""
    file_nodata: float | None
    """Nodata as the file states it (GDAL_NODATA), or None."""
    datetime: str
    """The item's ``datetime``."""
    resolution_deg: float
    """A pixel size in degrees close to the grid's, for warping onto longitude/latitude."""
    count: int = 1
    """Bands of the asset (samples per pixel)."""
    proj: str = "code"
    """How the item states the CRS: ``code`` (``proj:code``, projection v2), ``epsg`` (``proj:epsg``, v1), or
    ``projjson`` (``proj:projjson`` and no code: the file's CRS is written without its code too)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """More item properties."""
    bands: list[dict[str, Any]] = field(default_factory=list)
    """``eo:bands`` of the asset."""


CODED: dict[str, CodedGrid] = {
    grid.name: grid
    for grid in (
        CodedGrid(
            "nsidc-epsg", "nsidc-seaice-ps-n25km", "seaice_conc_ps_n25km_20230915", "concentration", 3413,
            Affine(25000.0, 0.0, -3850000.0, 0.0, -25000.0, 5850000.0), (448, 304), "uint8", 255, 255,
            "2023-09-15T00:00:00Z", 0.25,
        ),
        CodedGrid(
            "nsidc-user", "nsidc-seaice-ps-n25km-legacy", "nt_20230915_f18_nrt_n", "concentration", 3413,
            Affine(25000.0, 0.0, -3850000.0, 0.0, -25000.0, 5850000.0), (448, 304), "uint8", 255, None,
            "2023-09-15T00:00:00Z", 0.25, proj="projjson",
        ),
        CodedGrid(
            "ease2-global", "smap-l3-sm-p", "SMAP_L3_SM_P_20230915_R19240_001", "soil_moisture", 6933,
            Affine(36032.2208405844, 0.0, -17367530.44516138, 0.0, -36032.2208405844, 7314540.83063834),
            (406, 964), "float32", -9999.0, -9999.0, "2023-09-15T12:00:00Z", 0.25,
        ),
        CodedGrid(
            "ease2-north", "smap-l3-ft-p", "SMAP_L3_FT_P_20230915_R19240_001", "freeze_thaw", 6931,
            Affine(36000.0, 0.0, -9000000.0, 0.0, -36000.0, 9000000.0), (500, 500), "uint8", 255, 255,
            "2023-09-15T12:00:00Z", 0.25,
        ),
        CodedGrid(
            "conus-albers", "annual-nlcd", "Annual_NLCD_LndCov_2023_CU_h021v009", "landcover", 5070,
            Affine(30.0, 0.0, -2565585.0 + 21 * 150000.0, 0.0, -30.0, 3314805.0 - 9 * 150000.0), (256, 256),
            "uint8", 250, 250, "2023-01-01T00:00:00Z", 0.0003, proj="epsg",
            extra={"start_datetime": "2023-01-01T00:00:00Z", "end_datetime": "2023-12-31T23:59:59Z"},
        ),
        CodedGrid(
            "state-plane", "nyc-orthoimagery", "nyc-ortho-2022-985000-217500", "image", 2263,
            Affine(10.0, 0.0, 985000.0, 0.0, -10.0, 217500.0), (250, 250), "uint8", None, None,
            "2022-04-15T00:00:00Z", 0.00003, count=3, proj="epsg",
            extra={"gsd": 3.048},
            bands=[{"name": n, "common_name": n} for n in ("red", "green", "blue")],
        ),
    )
}  # fmt: skip
"""The products on EPSG-coded grids (one written without its code), by name."""


def _projjson(crs: pyproj.CRS) -> dict[str, Any]:
    """The CRS as PROJJSON without identifiers (what a catalog states for a CRS it holds as parameters)."""
    doc = crs.to_json_dict()
    doc.pop("id", None)
    return doc


def coded(name: str, out_dir: Path, base_url: str) -> ProductTwin:
    """The product ``name`` of :data:`CODED`: its file and its item."""
    grid = CODED[name]
    if grid.proj == "projjson":
        crs = CRS.from_proj4(NSIDC_PROJ)  # written as parameters: GDAL keeps the CRS user-defined
        stated = pyproj.CRS.from_proj4(NSIDC_PROJ)
    else:
        crs = CRS.from_epsg(grid.epsg)
        stated = pyproj.CRS.from_epsg(grid.epsg)
    rel = f"{grid.collection}/{grid.item_id}/{grid.asset}.tif"
    write_product_cog(
        out_dir / rel, crs=crs, transform=grid.transform, shape=grid.shape, dtype=grid.dtype, seed=grid.item_id,
        count=grid.count, fill=grid.nodata, file_nodata=grid.file_nodata,
    )  # fmt: skip
    geometry, bbox = _lonlat_footprint(crs, grid.transform, grid.shape)
    proj: dict[str, Any]
    if grid.proj == "projjson":
        proj, extension = {"proj:code": None, "proj:projjson": _projjson(stated)}, PROJECTION_V2
    elif grid.proj == "epsg":
        proj, extension = {"proj:epsg": grid.epsg}, PROJECTION_V1
    else:
        proj, extension = {"proj:code": f"EPSG:{grid.epsg}"}, PROJECTION_V2
    band: dict[str, Any] = {"data_type": grid.dtype}
    if grid.nodata is not None:
        band["nodata"] = grid.nodata
    asset: dict[str, Any] = {
        "href": _href(base_url, rel),
        "type": COG_TYPE,
        "title": grid.asset.replace("_", " "),
        "raster:bands": [dict(band) for _ in range(grid.count)],
        "roles": ["data"],
        **({"eo:bands": grid.bands} if grid.bands else {}),
    }
    properties = {
        "datetime": grid.datetime,
        **grid.extra,
        **proj,
        "proj:shape": list(grid.shape),
        "proj:transform": list(grid.transform)[:6],
    }
    extensions = [extension, RASTER_V11, *([EO_V1] if grid.bands else [])]
    item = _item(grid.item_id, grid.collection, properties, geometry, bbox, {grid.asset: asset}, extensions)
    if extension == PROJECTION_V2:
        item["stac_version"] = "1.1.0"
    return ProductTwin(name, [item], grid.asset, [out_dir / rel], resolution_deg=grid.resolution_deg)


PRODUCTS: dict[str, Callable[[Path, str], ProductTwin]] = {
    "modis": modis,
    "goes": goes,
    **{name: functools.partial(coded, name) for name in CODED},
}
"""Every product family's builder: ``PRODUCTS[name](out_dir, base_url)``."""


def stated_crs(item: dict[str, Any]) -> pyproj.CRS | None:
    """The CRS an item's properties state (``proj:code``, ``proj:epsg``, ``proj:wkt2`` or ``proj:projjson``)."""
    props = item["properties"]
    if props.get("proj:code"):
        return pyproj.CRS.from_user_input(props["proj:code"])
    if props.get("proj:epsg"):
        return pyproj.CRS.from_epsg(props["proj:epsg"])
    if props.get("proj:wkt2"):
        return pyproj.CRS.from_wkt(props["proj:wkt2"])
    if props.get("proj:projjson"):
        return pyproj.CRS.from_json(json.dumps(props["proj:projjson"]))
    return None
