"""Twins of real STAC items: local COGs on exactly the grids the items declare, and the items rewritten to them.

The metadata is real (``../shared/corpus/stac``); the pixels are ours: deterministic, different per item and
band, with a nodata corner. Each asset becomes a GDAL COG (tiled, Deflate with predictor 2, internal overviews)
with the dtype of its ``raster:bands``, on the grid of ``proj:code``/``proj:epsg``, ``proj:transform`` and
``proj:shape`` (the asset's, else the item's), optionally downscaled to keep tests small.

What the file itself says about its values follows the real producer (``metadata="producer"``, the default):
Landsat Collection 2 COGs carry neither nodata nor scale/offset (the STAC item alone states them); Sentinel-2 L2A
COGs carry nodata 0 and no scale/offset (the offset lives in STAC, or nowhere but ``s2:processing_baseline``);
other producers' files carry the nodata STAC states. ``metadata="file"`` writes STAC's nodata, scale and offset
into the file too (GDAL_NODATA, GDAL_METADATA), for tests of what files say.

Used by tests and benchmarks: ``twin_items(items, out_dir, base_url)`` writes the files and returns the items with
hrefs pointing at ``base_url`` (an nginx URL or ``s3://bucket/prefix``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from tests.conftest import CORPUS

TIFF_TYPES = ("image/tiff", "image/vnd.stac.geotiff")

Metadata = Literal["producer", "file"]
"""Where band metadata is written: where the real producer writes it, or into the file as well."""


def producer(item: dict[str, Any]) -> str:
    """``landsat``, ``sentinel-2`` or ``other``: whose files a twin of ``item`` imitates."""
    props = item.get("properties", {})
    text = " ".join(str(v) for v in (item.get("collection"), props.get("platform"), props.get("constellation")))
    if "landsat" in text.lower():
        return "landsat"
    if "sentinel-2" in text.lower() or any(k.startswith("s2:") for k in props):
        return "sentinel-2"
    return "other"


def file_nodata(item: dict[str, Any], stated: float | None) -> float | None:
    """The nodata the real producer writes into the file (GDAL_NODATA) of an asset whose STAC states ``stated``."""
    kind = producer(item)
    if kind == "landsat":
        return None  # USGS Collection 2 COGs: fill is 0 (SR) or -9999 (ST), stated only in STAC
    if kind == "sentinel-2":
        return 0 if stated is None else stated  # ESA L2A COGs: nodata 0 in the file, whatever STAC says
    return stated


def corpus_items(name: str) -> list[dict[str, Any]]:
    """Items of a corpus file (a FeatureCollection, a list of items or one item), without links.

    Links are dropped because pystac would try to resolve the ``root`` link over the network.
    """
    path = next(p for p in (CORPUS / "stac").rglob(name))
    doc = json.loads(path.read_text())
    if isinstance(doc, list):
        return [_without_links(i) for i in doc]
    return [_without_links(i) for i in (doc["features"] if doc.get("type") == "FeatureCollection" else [doc])]


def _without_links(item: dict[str, Any]) -> dict[str, Any]:
    item = copy.deepcopy(item)
    item["links"] = []
    return item


@dataclass(frozen=True)
class Grid:
    """The grid an asset declares."""

    crs: str
    transform: Affine
    shape: tuple[int, int]


def asset_grid(item: dict[str, Any], asset: dict[str, Any]) -> Grid | None:
    """The asset's declared grid (falling back to the item's properties), or None when it declares none."""
    props = item.get("properties", {})

    def get(key: str) -> Any:
        return asset.get(key, props.get(key))

    code = get("proj:code") or (f"EPSG:{get('proj:epsg')}" if get("proj:epsg") else None)
    transform, shape = get("proj:transform"), get("proj:shape")
    if not (code and transform and shape):
        return None
    return Grid(crs=code, transform=Affine(*transform[:6]), shape=(int(shape[0]), int(shape[1])))


def asset_bands(asset: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per band: dtype, nodata, scale, offset as STAC states them (raster:bands, or STAC 1.1 bands with
    ``raster:scale``/``raster:offset``; uint16 without nodata by default)."""
    raster = asset.get("raster:bands") or asset.get("bands") or []
    count = max(len(raster), len(asset.get("eo:bands") or []), 1)
    out = []
    for i in range(count):
        band = {
            **{k: asset[k] for k in ("nodata", "data_type") if k in asset},
            **(raster[i] if i < len(raster) else {}),
        }
        out.append(
            {
                "dtype": band.get("data_type", "uint16"),
                "nodata": band.get("nodata"),
                "scale": band.get("scale", band.get("raster:scale", 1.0)),
                "offset": band.get("offset", band.get("raster:offset", 0.0)),
            }
        )
    return out


def is_tiff_data(asset: dict[str, Any]) -> bool:
    roles = asset.get("roles") or ["data"]
    return str(asset.get("type", "")).startswith(TIFF_TYPES) and "data" in roles


def downscaled(grid: Grid, factor: int) -> Grid:
    """The same extent at ``factor`` times coarser pixels (shape rounded up)."""
    if factor == 1:
        return grid
    t = grid.transform
    shape = (math.ceil(grid.shape[0] / factor), math.ceil(grid.shape[1] / factor))
    return Grid(grid.crs, Affine(t.a * factor, t.b, t.c, t.d, t.e * factor, t.f), shape)


def pixels(seed: str, band: int, shape: tuple[int, int], dtype: str, nodata: float | None) -> np.ndarray:
    """Deterministic content that differs per item (seed) and band, with a nodata corner when there is nodata."""
    digest = int(hashlib.sha256(f"{seed}/{band}".encode()).hexdigest()[:8], 16)
    y, x = np.ogrid[0 : shape[0], 0 : shape[1]]
    dt = np.dtype(dtype)
    if dt.kind == "f":
        data = ((x // 7 + y // 5) % 97 + digest % 1000 + band * 0.25).astype(dt)
    else:
        top = min(np.iinfo(dt).max, 10_000)
        data = ((x // 7 + y // 5 + digest) % top).astype(dt)
        if nodata is not None and data.min() <= nodata <= data.max():
            data[data == dt.type(nodata)] = dt.type(nodata + 1 if nodata < top - 1 else nodata - 1)
    if nodata is not None:
        data[: shape[0] // 8, : shape[1] // 8] = dt.type(nodata)
    return data


def write_cog(
    path: Path,
    grid: Grid,
    bands: list[dict[str, Any]],
    seed: str,
    *,
    blocksize: int = 512,
    layout: str = "cog",
    nodata: float | None = None,
    metadata: Metadata = "file",
) -> None:
    """Write one asset: a COG (or, with layout='strips', a plain stripped GTiff without overviews).

    Missing pixels hold the nodata STAC states (``bands``); the file's GDAL_NODATA is ``nodata`` with
    ``metadata="producer"`` (what the real producer writes), and scale and offset are written only with "file".
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype, fill = bands[0]["dtype"], bands[0]["nodata"]
    if fill is None and metadata == "producer":
        fill = nodata  # a producer that writes nodata into its files fills missing pixels with it
    data = np.stack([pixels(seed, i, grid.shape, dtype, fill) for i in range(len(bands))])
    profile: dict[str, Any] = {
        "height": grid.shape[0],
        "width": grid.shape[1],
        "count": len(bands),
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": fill if metadata == "file" else nodata,
    }
    if layout == "strips":
        profile |= {"driver": "GTiff", "compress": "DEFLATE", "blockysize": 37}
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
        return
    in_file = metadata == "file"
    scales = [b["scale"] if in_file else 1.0 for b in bands]
    offsets = [b["offset"] if in_file else 0.0 for b in bands]
    _write_as_cog(path, data, profile, blocksize, scales, offsets)


def _write_as_cog(
    path: Path, data: np.ndarray, profile: dict[str, Any], blocksize: int, scales: list[float], offsets: list[float]
) -> None:
    """GDAL's COG driver (Deflate, horizontal predictor, nearest overviews), by way of a plain GTiff."""
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", driver="GTiff", **profile) as ds:
        ds.write(data)
        if any(s != 1.0 for s in scales) or any(o != 0.0 for o in offsets):
            ds.scales, ds.offsets = scales, offsets
    with rasterio.open(tmp) as src:
        cog = src.profile | {
            "driver": "COG",
            "blocksize": blocksize,
            "compress": "DEFLATE",
            "predictor": 2,
            "overview_resampling": Resampling.nearest.name,
        }
        for key in ("blockxsize", "blockysize", "tiled", "interleave", "compress"):
            cog.pop(key, None)
        cog["compress"] = "DEFLATE"
        with rasterio.open(path, "w", **cog) as dst:
            dst.write(src.read())
            dst.scales, dst.offsets = src.scales, src.offsets
    tmp.unlink()


def twin_items(
    items: Iterable[dict[str, Any]],
    out_dir: Path,
    base_url: str,
    *,
    downscale: int = 1,
    assets: Iterable[str] | None = None,
    blocksize: int = 512,
    layout: str = "cog",
    metadata: Metadata = "producer",
) -> list[dict[str, Any]]:
    """Write a twin of every TIFF data asset and return the items rewritten to point at ``base_url``.

    Assets without a declared grid or that are not TIFF data keep their original (unreachable) hrefs. ``metadata``
    says where band metadata goes (see the module docstring).
    """
    wanted = set(assets) if assets is not None else None
    out = []
    for original in items:
        item = _without_links(original)
        collection = item.get("collection", "items")
        for key, asset in item["assets"].items():
            if (wanted is not None and key not in wanted) or not is_tiff_data(asset):
                continue
            grid = asset_grid(item, asset)
            if grid is None:
                continue
            grid = downscaled(grid, downscale)
            rel = f"{collection}/{item['id']}/{key}.tif"
            bands = asset_bands(asset)
            write_cog(
                out_dir / rel,
                grid,
                bands,
                seed=f"{item['id']}/{key}",
                blocksize=blocksize,
                layout=layout,
                nodata=file_nodata(item, bands[0]["nodata"]),
                metadata=metadata,
            )
            asset["href"] = f"{base_url.rstrip('/')}/{rel}"
            if downscale != 1:
                asset["proj:shape"] = list(grid.shape)
                asset["proj:transform"] = list(grid.transform)[:6]
        out.append(item)
    return out


def change_in_place(path: Path) -> None:
    """Rewrite a twin with other pixels on the same grid and in the same encoding, so only its ETag changes (as a
    provider reprocessing a file would)."""
    with rasterio.open(path) as src:
        profile = {k: src.profile[k] for k in ("height", "width", "count", "dtype", "crs", "transform", "nodata")}
        data, scales, offsets, blocksize = src.read(), list(src.scales), list(src.offsets), src.block_shapes[0][0]
    stat = path.stat()
    changed = path.with_suffix(".changed.tif")
    _write_as_cog(changed, data + np.ones_like(data), profile, blocksize, scales, offsets)
    changed.replace(path)
    os.utime(path, (stat.st_atime + 2, stat.st_mtime + 2))


def in_zone(item: dict[str, Any], epsg: int) -> dict[str, Any]:
    """A copy of an item whose assets declare the same footprint on the grid of another CRS (e.g. the next UTM zone).

    The corners are reprojected and snapped outwards to whole pixels of the asset's resolution.
    """
    item = copy.deepcopy(item)
    item["id"] = f"{item['id']}-epsg{epsg}"
    src_code = item["properties"].get("proj:code") or f"EPSG:{item['properties'].get('proj:epsg')}"
    to = pyproj.Transformer.from_crs(src_code, f"EPSG:{epsg}", always_xy=True)
    item["properties"].pop("proj:code", None)
    item["properties"]["proj:epsg"] = epsg
    for asset in item["assets"].values():
        t, shape = asset.get("proj:transform"), asset.get("proj:shape")
        if not (t and shape):
            continue
        res = t[0]
        xs = [t[2], t[2] + shape[1] * res]
        ys = [t[5], t[5] - shape[0] * res]
        corners = [to.transform(x, y) for x in xs for y in ys]
        minx = math.floor(min(c[0] for c in corners) / res) * res
        maxx = math.ceil(max(c[0] for c in corners) / res) * res
        miny = math.floor(min(c[1] for c in corners) / res) * res
        maxy = math.ceil(max(c[1] for c in corners) / res) * res
        asset["proj:transform"] = [res, 0.0, minx, 0.0, -res, maxy]
        asset["proj:shape"] = [round((maxy - miny) / res), round((maxx - minx) / res)]
        asset.pop("proj:bbox", None)
        asset.pop("proj:code", None)
    return item


def upload_dir(client: Any, local_dir: Path, bucket: str, prefix: str = "") -> None:
    """Upload every file under ``local_dir`` to ``s3://bucket/prefix/...`` (boto3 client), keeping relative paths."""
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(local_dir).as_posix()]))
        client.upload_file(str(path), bucket, key)


def read_served(href: str, root: Path, base: str, level: int = 0) -> np.ndarray:
    """Band 1 of a file served from ``root`` at ``base``, as rasterio reads it; ``level`` n > 0 is its n-th internal
    overview."""
    options = {"overview_level": level - 1} if level else {}
    with rasterio.open(root / href.removeprefix(base + "/"), **options) as ds:
        return ds.read(1)


def redated(item: dict[str, Any], when: str, **properties: Any) -> dict[str, Any]:
    """A copy of ``item`` acquired at ``when`` (ISO 8601, UTC), with its own id and ``properties`` set, as a later
    overpass of the same path or tile would be."""
    copy_ = _without_links(item)
    stamp = when.replace("-", "").replace(":", "")[:15]
    copy_["id"] = f"{item['id']}-{stamp}"
    copy_["properties"] = {**copy_["properties"], "datetime": when, **properties}
    return copy_


S2_SCALE, S2_OFFSET = 1e-4, -0.1
"""How Earth Search states Sentinel-2 L2A reflectance from processing baseline 04.00 on (offset 0 before)."""


def with_s2_offsets(item: dict[str, Any]) -> dict[str, Any]:
    """A Sentinel-2 L2A item as Earth Search describes it: every spectral band with ``raster:bands`` scale 1e-4 and
    offset -0.1 from processing baseline 04.00 on, 0 before (nodata 0)."""
    copy_ = _without_links(item)
    later = tuple(int(p) for p in copy_["properties"].get("s2:processing_baseline", "0").split(".")) >= (4, 0)
    for key, asset in copy_["assets"].items():
        if is_tiff_data(asset) and key not in {"SCL", "visual", "AOT", "WVP"}:
            band = {"nodata": 0, "data_type": "uint16", "scale": S2_SCALE, "offset": S2_OFFSET if later else 0.0}
            asset["raster:bands"] = [band]
    return copy_


def as_stac_1_1(item: dict[str, Any], *, nodata_on_asset: bool = False) -> dict[str, Any]:
    """``item`` as STAC 1.1 writes band metadata: ``bands`` with ``nodata``, ``data_type``, ``unit``,
    ``raster:scale`` and ``raster:offset`` (and, with ``nodata_on_asset``, nodata on the asset itself)."""
    copy_ = _without_links(item)
    copy_["stac_version"] = "1.1.0"
    for asset in copy_["assets"].values():
        raster = asset.pop("raster:bands", None)
        if not raster:
            continue
        bands = []
        for band in raster:
            renamed = {k: v for k, v in band.items() if k in {"nodata", "data_type", "unit"}}
            renamed |= {f"raster:{k}": band[k] for k in ("scale", "offset") if k in band}
            bands.append(renamed)
        if nodata_on_asset and all("nodata" in b for b in bands):
            asset["nodata"] = bands[0]["nodata"]
            for b in bands:
                del b["nodata"]
        asset["bands"] = bands
    return copy_


def series(root: Path, base_url: str, dates: int, *, size: int = 256, blocksize: int = 128) -> list[dict[str, Any]]:
    """``dates`` single-band uint16 COGs (GDAL's COG driver) on one 10 m UTM grid, ``s0.tif``... under ``root``,
    and one STAC item per file with its href under ``base_url``: a time series as a producer publishes it."""
    from rasterio.transform import from_origin

    root.mkdir(parents=True, exist_ok=True)
    profile = {
        "height": size,
        "width": size,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(500_000, 4_000_000, 10, 10),
        "nodata": 0,
    }
    rng = np.random.default_rng(dates)
    items = []
    for n in range(dates):
        data = rng.integers(1, 4000, (1, size, size), dtype="uint16")
        _write_as_cog(root / f"s{n}.tif", data, profile, blocksize, [1.0], [0.0])
        day = np.datetime64("2024-06-01") + np.timedelta64(n, "D")
        items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": f"scene-{n}",
                "geometry": None,
                "properties": {"datetime": f"{day}T10:00:00Z"},
                "links": [],
                "assets": {"B04": {"href": f"{base_url}/s{n}.tif", "type": "image/tiff; application=geotiff"}},
            }
        )
    return items
