"""Reading arrays of Deflate sources without a predictor: Zarr's own codecs against ``stackcube.tiff``.

    python -m benchmarks.codec_bench                   # 8 dates of 2048 x 2048 uint16, 7 repetitions
    python -m benchmarks.codec_bench --dates 4 --repeat 5

Such sources are written with ``bytes`` + ``numcodecs.zlib`` (``stackcube.tiff.standard_codecs``); the same sources
are built a second time with ``stackcube.tiff`` (as cubes were written before). Side by side in one run, each read
the whole cube without dask (``open_dataarray(..., chunks=False).values``, local files), interleaved:

- ``Zarr's codecs``: as stackcube reads them, ``numcodecs.zlib`` inflated with libdeflate (``stackcube.tiff.Zlib``);
- ``stackcube.tiff``: the same tiles through the TIFF codec (libdeflate too);
- ``Zarr's codecs, numcodecs' zlib``: as a process without stackcube's codec reads them (Python's zlib module).

Reported: wall time (median and spread) and CPU time (median) per read.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _items(root: Path, dates: int) -> list[dict[str, Any]]:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "GTiff",
        "height": 2048,
        "width": 2048,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(500_000, 4_000_000, 10, 10),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "nodata": 0,
    }
    rng = np.random.default_rng(0)
    items = []
    for n in range(dates):
        path = root / f"d{n}.tif"
        values = (rng.integers(0, 3000, (1, 2048, 2048)) // 50 * 50).astype("uint16")  # compressible, as imagery
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(values)
        day = f"2024-06-{n + 1:02d}T10:00:00Z"
        asset = {"href": path.as_posix(), "type": "image/tiff; application=geotiff"}
        items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": f"d{n}",
                "geometry": None,
                "properties": {"datetime": day},
                "links": [],
                "assets": {"data": asset},
            }
        )
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    import zarr

    import stackcube
    from stackcube.store import write
    from stackcube.tiff._standard import ZLIB

    root = Path(tempfile.mkdtemp())
    items = _items(root, args.dates)
    standard, tiff = root / "standard.icechunk", root / "tiff.icechunk"
    stackcube.build_cube(items, repo=standard, progress=False)
    chosen = write.standard_codecs
    write.standard_codecs = lambda *a, **k: None  # as cubes were written before
    stackcube.build_cube(items, repo=tiff, progress=False)
    write.standard_codecs = chosen

    def zlib_is(name: str) -> None:
        zarr.config.set({"codecs": {**dict(zarr.config.get("codecs")), "numcodecs.zlib": name}})

    runs = {
        "Zarr's codecs": (standard, ZLIB),
        "stackcube.tiff": (tiff, ZLIB),
        "Zarr's codecs, numcodecs' zlib": (standard, "zarr.codecs.numcodecs.Zlib"),
    }
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, (repo, zlib) in runs.items():
            zlib_is(zlib)
            data = stackcube.open_dataarray(repo, mask_and_scale=False, chunks=False)
            started, used = time.perf_counter(), time.process_time()
            data.to_numpy()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - used)
    zlib_is(ZLIB)
    print(f"\n{args.dates} dates of 2048 x 2048 uint16, Deflate without predictor, 512 px tiles; {args.repeat} reads\n")
    print("| arrays | wall time, median (min-max) | CPU time, median |")
    print("|---|---:|---:|")
    for name in runs:
        w, c = wall[name], statistics.median(cpu[name])
        print(f"| {name} | {statistics.median(w):.3f} s ({min(w):.3f}-{max(w):.3f}) | {c:.3f} s |")


if __name__ == "__main__":
    main()
