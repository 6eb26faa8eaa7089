"""The embedded default: small GeoTIFFs and a static STAC catalog of them, written locally, so the demo needs nothing.

``write_demo_catalog`` makes a Sentinel-2-like catalog: several dates over one UTM tile (EPSG:32735, where
Sentinel-2 tile 35MNM lies), four 10 m bands (B02, B03, B04, B08) and two 20 m bands (B05, B11) per item, so a
plan has two grids. Files are tiled, Deflate with a horizontal predictor, with overviews, written by tifffile
(which puts each header after its image data: reading one costs two ranged GETs instead of a COG's one).

Examples
--------
>>> from stackcube.demo import write_demo_catalog
>>> catalog = write_demo_catalog("demo-output")  # doctest: +SKIP
>>> import stackcube
>>> print(stackcube.plan_cube(catalog, progress=False).report())  # doctest: +SKIP
2 arrays: EPSG:32735 10 m x 4 dates x 4 bands (...); EPSG:32735 20 m x 4 dates x 2 bands (...)
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pystac
import pystac.stac_io
import tifffile

__all__ = ["write_demo_catalog", "write_demo_offset_catalog", "write_demo_tiff", "write_quicklook"]

EPSG = 32735
ORIGIN = (600000.0, 9500020.0)  # upper-left corner, metres
BANDS_10M = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
BANDS_20M = {"B05": "rededge", "B11": "swir16"}


def _geokeys(epsg: int) -> tuple[int, ...]:
    # GeoKeyDirectory: version 1.1.0, 3 keys: projected model, PixelIsArea, ProjectedCSTypeGeoKey=epsg
    return (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg)


def _write(
    path: Path, bands: np.ndarray, resolution: float, origin: tuple[float, float], *, tile: int, nodata: int | None = 0
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    geo: list[tuple[Any, ...]] = [
        (33550, "d", 3, (resolution, resolution, 0.0), True),  # ModelPixelScale
        (33922, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), True),  # ModelTiepoint
        (34735, "H", 16, _geokeys(EPSG), True),  # GeoKeyDirectory
    ]
    if nodata is not None:
        geo.append((42113, "s", 0, str(nodata), True))  # GDAL_NODATA
    options: dict[str, Any] = {
        "tile": (tile, tile),
        "compression": "zlib",
        "predictor": 2,
        "planarconfig": "separate",
        "photometric": "minisblack",
    }
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        tif.write(bands, extratags=geo, **options)
        size = bands.shape[-1]
        factor = 2
        while size // factor >= tile:
            tif.write(bands[:, ::factor, ::factor], subfiletype=1, **options)
            factor *= 2
    _put(path, buffer.getvalue())


def _put(path: Path, data: bytes) -> None:
    """Write ``data`` unless the file already holds exactly it: writing the demo again changes nothing (not even
    modification times), so cubes built from it earlier stay valid."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)


class _IdempotentIO(pystac.stac_io.DefaultStacIO):
    """pystac's JSON, written as :func:`_put` writes files."""

    def write_text_to_href(self, href: str, txt: str) -> None:
        _put(Path(href), txt.encode())


def write_demo_tiff(path: Path, size: int = 1024, tile: int = 256) -> tuple[Path, np.ndarray]:
    """Write a 4-band uint16 tiled Deflate+predictor GeoTIFF with overviews; return its path and samples."""
    y, x = np.mgrid[0:size, 0:size]
    bands = np.stack([(x * 7 + y * 3 + 1000 * b) % 10000 for b in range(4)]).astype(np.uint16)
    _write(Path(path), bands, 10.0, ORIGIN, tile=tile)
    return Path(path), bands


def _pixels(seed: int, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    data = ((x // 4 + y // 3 + seed * 37) % 4000 + 1).astype(np.uint16)
    data[: size // 10, : size // 10] = 0  # a nodata corner
    return np.asarray(data[np.newaxis])


def _footprint(size_m: float) -> tuple[list[float], dict[str, Any]]:
    to_lonlat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    x0, y1 = ORIGIN
    x1, y0 = x0 + size_m, y1 - size_m
    ring = [to_lonlat.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return [min(lons), min(lats), max(lons), max(lats)], {"type": "Polygon", "coordinates": [ring]}


def write_demo_catalog(out_dir: str | os.PathLike[str], *, dates: int = 4, size: int = 512) -> str:
    """Write a static STAC catalog of ``dates`` items with 10 m and 20 m bands; return the catalog.json path."""
    out = Path(out_dir)
    bbox, geometry = _footprint(size * 10.0)
    catalog = pystac.Catalog(id="stackcube-demo", description="stackcube's embedded demo: Sentinel-2-like scenes")
    start = datetime(2020, 6, 1, 8, 6, 11, tzinfo=UTC)
    for d in range(dates):
        when = start + timedelta(days=5 * d)
        item_id = f"DEMO_T35MNM_{when:%Y%m%d}"
        item = pystac.Item(
            id=item_id,
            geometry=geometry,
            bbox=bbox,
            datetime=when,
            properties={"eo:cloud_cover": float((d * 23) % 60), "platform": "demo-sat"},
        )
        for bands, resolution in ((BANDS_10M, 10.0), (BANDS_20M, 20.0)):
            px = int(size * 10.0 / resolution)
            for i, (key, common) in enumerate(bands.items()):
                path = out / "data" / item_id / f"{key}.tif"
                _write(path, _pixels(d * 10 + i, px), resolution, ORIGIN, tile=min(256, px))
                asset = pystac.Asset(
                    href=str(path.resolve()),
                    media_type=pystac.MediaType.COG,
                    roles=["data"],
                    extra_fields={
                        "proj:code": f"EPSG:{EPSG}",
                        "proj:shape": [px, px],
                        "proj:transform": [resolution, 0.0, ORIGIN[0], 0.0, -resolution, ORIGIN[1]],
                        "eo:bands": [{"name": key, "common_name": common}],
                        "raster:bands": [{"data_type": "uint16", "nodata": 0}],
                    },
                )
                item.add_asset(key, asset)
        catalog.add_item(item)
    catalog.normalize_hrefs(str(out / "catalog"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=_IdempotentIO())
    return str(out / "catalog" / "catalog.json")


def write_demo_offset_catalog(out_dir: str | os.PathLike[str], *, scenes: int = 6, size: int = 300) -> str:
    """Write a static catalog of Landsat-like 30 m scenes whose footprints move by whole pixels between dates.

    Every scene is on the same pixel lattice but not on one tile grid, so a plan makes one union of them (see
    :class:`stackcube.union.UnionPlan`); the first two share a datetime and overlap. Returns the catalog.json path.
    """
    out = Path(out_dir)
    catalog = pystac.Catalog(id="stackcube-demo-offsets", description="stackcube's demo: scenes at pixel offsets")
    start = datetime(2021, 5, 3, 9, 45, tzinfo=UTC)
    to_lonlat = pyproj.Transformer.from_crs(EPSG, 4326, always_xy=True)
    rng = np.random.default_rng(7)
    for i in range(scenes):
        row, col = (int(v) for v in rng.integers(0, 120, size=2))
        origin = (ORIGIN[0] + col * 30.0, ORIGIN[1] - row * 30.0)
        when = start + timedelta(days=16 * max(0, i - 1))
        item_id = f"DEMO_LS_{i:02d}_{when:%Y%m%d}"
        path = out / "data" / f"{item_id}.tif"
        _write(path, _pixels(i, size), 30.0, origin, tile=128)
        x0, y1 = origin
        x1, y0 = x0 + size * 30.0, y1 - size * 30.0
        ring = [to_lonlat.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        lons, lats = [q[0] for q in ring], [q[1] for q in ring]
        item = pystac.Item(
            id=item_id,
            geometry={"type": "Polygon", "coordinates": [ring]},
            bbox=[min(lons), min(lats), max(lons), max(lats)],
            datetime=when,
            properties={"eo:cloud_cover": float((i * 37) % 50)},
        )
        item.add_asset(
            "red",
            pystac.Asset(
                href=str(path.resolve()),
                media_type=pystac.MediaType.GEOTIFF,
                roles=["data"],
                extra_fields={
                    "proj:code": f"EPSG:{EPSG}",
                    "proj:shape": [size, size],
                    "proj:transform": [30.0, 0.0, origin[0], 0.0, -30.0, origin[1]],
                    "raster:bands": [{"data_type": "uint16", "nodata": 0}],
                },
            ),
        )
        catalog.add_item(item)
    catalog.normalize_hrefs(str(out / "catalog"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=_IdempotentIO())
    return str(out / "catalog" / "catalog.json")


def write_quicklook(
    tree: Any,
    path: str | os.PathLike[str],
    *,
    bands: tuple[str, str, str] = ("B04", "B03", "B02"),
    size: int = 512,
) -> Path:
    """Write an 8-bit RGB PNG of the first date of the first array that has ``bands`` (see :func:`quicklook`)."""
    from stackcube.quicklook import quicklook

    return quicklook(tree, bands=bands, size=size).save(path)
