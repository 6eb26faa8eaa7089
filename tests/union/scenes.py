"""Landsat-like scenes on one pixel lattice (whole 30 m pixels apart), none on another's tile grid: the test data of
the union tests, written by rasterio, with their items and what a union of them must hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pystac
import rasterio
from affine import Affine

T0 = datetime(2021, 5, 1, 10, 0, tzinfo=UTC)
RES = 30.0
X0, Y0 = 600_000.0, 5_000_010.0
NODATA = 0


def write_scene(path, *, row: int, col: int, height: int, width: int, seed: int, hole: bool = False) -> None:
    """A tiled (64 px) uint16 GeoTIFF whose origin is ``row``, ``col`` whole pixels from (X0, Y0)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 60_000, size=(1, height, width), dtype=np.uint16)
    if hole:
        data[:, height // 3 : height // 2, width // 2 :] = NODATA
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": Affine(RES, 0.0, X0 + col * RES, 0.0, -RES, Y0 - row * RES),
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
        "compress": "deflate",
        "nodata": NODATA,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)


SCENES = [
    # name, (row, col), (height, width), days after T0, hole
    ("A", (0, 0), (300, 280), 0, True),
    ("B", (100, 170), (260, 300), 0, False),  # same datetime as A, overlapping it
    ("C", (250, 40), (200, 220), 16, False),
    ("D", (7, 13), (150, 150), 32, False),
]


def make_items(directory, base_href: str) -> list[pystac.Item]:
    items = []
    for i, (name, (row, col), (height, width), days, hole) in enumerate(SCENES):
        write_scene(directory / f"{name}.tif", row=row, col=col, height=height, width=width, seed=i, hole=hole)
        item = pystac.Item(
            id=f"SCENE_{name}",
            geometry=None,
            bbox=None,
            datetime=T0 + timedelta(days=days),
            properties={"eo:cloud_cover": float(10 * (3 - i)), "proj:epsg": 32633},
        )
        item.add_asset(
            "red",
            pystac.Asset(
                href=f"{base_href}/{name}.tif",
                media_type=pystac.MediaType.GEOTIFF,
                roles=["data"],
                extra_fields={
                    "proj:epsg": 32633,
                    "proj:shape": [height, width],
                    "proj:transform": [RES, 0.0, X0 + col * RES, 0.0, -RES, Y0 - row * RES],
                },
            ),
        )
        items.append(item)
    return items


def expected_union(directory) -> tuple[np.ndarray, list[str]]:
    """What the union must hold, from rasterio reads: per datetime, the first valid pixel in search order."""
    height = max(r + h for _, (r, _), (h, _), _, _ in SCENES)
    width = max(c + w for _, (_, c), (_, w), _, _ in SCENES)
    days = sorted({d for *_, d, _ in SCENES})
    out = np.full((len(days), 1, height, width), NODATA, np.uint16)
    for t, day in enumerate(days):
        for name, (row, col), (h, w), d, _ in SCENES:
            if d != day:
                continue
            with rasterio.open(directory / f"{name}.tif") as ds:
                values = ds.read(1)
            window = out[t, 0, row : row + h, col : col + w]
            take = (window == NODATA) & (values != NODATA)
            window[take] = values[take]
    return out, [f"SCENE_{n}" for n, *_ in SCENES]


def stackstac_on_union(items: list, union, asset: str, epsg: int):
    """stackstac.stack of ``items`` onto a union's grid, nearest (pixel centres coincide: nothing is resampled)."""
    import stackstac
    from rasterio.enums import Resampling

    for d in items:
        d["properties"]["proj:epsg"] = epsg
    a, _, x0, _, e, y0 = union.transform[:6]
    _, _, height, width = union.shape
    return stackstac.stack(
        items,
        assets=[asset],
        epsg=epsg,
        resolution=abs(a),
        bounds=(x0, y0 + e * height, x0 + a * width, y0),
        snap_bounds=False,
        resampling=Resampling.nearest,
        dtype="uint16",
        fill_value=np.uint16(0),
        rescale=False,
    )
