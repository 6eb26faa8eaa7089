"""The embedded default: a small GeoTIFF on a realistic UTM grid, written by tifffile, so the demo needs nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

__all__ = ["write_demo_tiff"]

# GeoKeyDirectory for EPSG:32635 (WGS 84 / UTM zone 35N), PixelIsArea: version 1.1.0, 3 keys
_GEOKEYS = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32635)


def write_demo_tiff(path: Path, size: int = 1024, tile: int = 256) -> tuple[Path, np.ndarray]:
    """Write a 4-band uint16 tiled Deflate+predictor GeoTIFF with two overviews; return its path and samples."""
    y, x = np.mgrid[0:size, 0:size]
    bands = np.stack([(x * 7 + y * 3 + 1000 * b) % 10000 for b in range(4)]).astype(np.uint16)
    geo = [
        (33550, "d", 3, (10.0, 10.0, 0.0), True),  # ModelPixelScale: 10 m
        (33922, "d", 6, (0.0, 0.0, 0.0, 600000.0, 9500020.0, 0.0), True),  # ModelTiepoint
        (34735, "H", len(_GEOKEYS), _GEOKEYS, True),  # GeoKeyDirectory
        (42113, "s", 0, "0", True),  # GDAL_NODATA
    ]
    options: dict[str, Any] = {
        "tile": (tile, tile),
        "compression": "zlib",
        "predictor": 2,
        "planarconfig": "separate",
        "photometric": "minisblack",
    }
    with tifffile.TiffWriter(path) as tif:
        tif.write(bands, extratags=geo, **options)
        for factor in (2, 4):
            tif.write(bands[:, ::factor, ::factor], subfiletype=1, **options)
    return path, bands
