"""Build benchmark: the wall time and peak memory of ``build_cube`` as the item count grows.

    python -m benchmarks.build_bench                                  # 2,000 and 20,000 items, 3 repetitions
    python -m benchmarks.build_bench --items 100000 --repeat 1        # a continent-year's worth of one tile's band
    python -m benchmarks.build_bench --items 2000,20000 --cog landsat # a smaller COG (341 references a file)

The items are real Sentinel-2 L2A items of Earth Search (tile 35MNM, ``../shared/corpus/stac/odc-stac``: 24
assets, 33 properties, about 16 kB of JSON each), copied N times with their own ids and dates 12 hours apart, in a
stac-geoparquet file (``--catalog json``: an ItemCollection, which Python's json reads whole). Their ``B04`` asset
points at a distinct URL of one COG on ``benchmarks.latency_server`` (20 ms per request): ``s2_10m``, 10980 x
10980 px in 512-pixel tiles (484 references at full resolution, 650 with its overviews), or ``--cog landsat``
(7821 x 7951 px, 341 with its overviews); its projection fields are the file's, as a producer's are. The build asks
for ``B04`` only. Each build runs in a fresh process (imports excluded from the time, included in the memory),
which reports its wall time and peak RSS (``VmHWM``: every byte the process held at once, the imports' about 200
MB too). Reported per size: the median and spread of both, the references written, and the GETs at the server.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.header_bench import FILES, Server, make_cogs

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "stac" / "odc-stac" / "site2-2020_jun_jul-35MNM.geojson"
STEP = timedelta(hours=12)
"""Apart enough to be distinct time steps, close enough that 1,000,000 dates stay before 2262 (datetime64[ns])."""


def bench_items(server_url: str, n: int, cog: str) -> list[dict[str, Any]]:
    """``n`` copies of a real Sentinel-2 item, each with its own id, date and B04 URL on the server."""
    import rasterio

    template = json.loads(CORPUS.read_text())["features"][0]
    template["links"] = []  # pystac would resolve the root link over the network
    with rasterio.open(Path(tempfile.gettempdir()) / "stackcube-bench-cogs" / f"{cog}.tif") as src:
        t = src.transform
        b04 = template["assets"]["B04"]
        b04.update(
            {
                "proj:shape": [src.height, src.width],
                "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
                "proj:bbox": list(src.bounds),
            }
        )
        template["properties"]["proj:epsg"] = src.crs.to_epsg()
    t0 = datetime(2019, 1, 1, 8, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        item = copy.deepcopy(template)
        item["id"] = f"S2_BENCH_{i:07d}"
        item["properties"]["datetime"] = (t0 + STEP * i).isoformat().replace("+00:00", "Z")
        item["assets"]["B04"]["href"] = f"{server_url}/{cog}/{i}.tif"
        out.append(item)
    return out


def high_water_mark() -> int:
    """This process's peak RSS in bytes: Linux's ``VmHWM``, which starts afresh at ``exec`` (``ru_maxrss`` keeps the
    parent's peak across ``fork`` and ``exec``, so a child would report the benchmark's own items)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: an upper bound


def child(catalog: str, repo: str) -> None:
    """One build in this (fresh) process; prints its time, peak RSS and reference count as JSON."""
    import stackcube

    start = time.perf_counter()
    cube = stackcube.build_cube(catalog, repo=repo, assets=["B04"], progress=False)
    seconds = time.perf_counter() - start
    refs = sum(level.n_chunks for a in cube.plan.arrays for level in a.levels)
    peak = high_water_mark()
    print(json.dumps({"seconds": seconds, "peak": peak, "refs": refs}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="2000,20000", help="item counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--cog", choices=sorted(FILES), default="s2_10m")
    parser.add_argument(
        "--catalog",
        choices=["json", "parquet"],
        default="parquet",
        help="the items as a stac-geoparquet file (read a row group at a time) or an ItemCollection JSON (read whole)",
    )
    parser.add_argument("--child", nargs=2, metavar=("CATALOG", "REPO"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return
    cache = Path(tempfile.gettempdir()) / "stackcube-bench-cogs"
    cache.mkdir(exist_ok=True)
    make_cogs(cache)
    server = Server(cache, args.latency_ms)
    rows = []
    try:
        for n in (int(x) for x in args.items.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                features = bench_items(server.url, n, args.cog)
                if args.catalog == "parquet":
                    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

                    catalog = Path(tmp) / "items.parquet"
                    to_parquet(parse_stac_items_to_arrow(features, chunk_size=20_000), catalog)
                else:
                    catalog = Path(tmp) / "items.json"
                    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
                del features
                runs, gets = [], []
                for rep in range(args.repeat):
                    server.reset()
                    repo = Path(tmp) / f"cube{rep}.icechunk"
                    out = subprocess.run(
                        [sys.executable, "-m", "benchmarks.build_bench", "--child", str(catalog), str(repo)],
                        cwd=ROOT,
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    gets.append(server.stats().get("GET", 0))
                    print(
                        f"  {n:,} items, run {rep + 1}: {runs[-1]['seconds']:.1f} s, "
                        f"{runs[-1]['peak'] / 2**20:,.0f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
                rows.append((n, runs, gets))
    finally:
        server.close()
    print(
        f"\n{args.cog}, items in {args.catalog}, {args.latency_ms:g} ms per request, {args.repeat} builds per size, "
        "each in a fresh process\n"
    )
    print("| items | references | build, median (min-max) | peak RSS, median (min-max) | GETs |")
    print("|---:|---:|---:|---:|---:|")
    for n, runs, gets in rows:
        secs = [r["seconds"] for r in runs]
        mbs = [r["peak"] / 2**20 for r in runs]
        print(
            f"| {n:,} | {runs[0]['refs']:,} | {statistics.median(secs):.1f} s ({min(secs):.1f}-{max(secs):.1f}) "
            f"| {statistics.median(mbs):,.0f} MB ({min(mbs):,.0f}-{max(mbs):,.0f}) | {statistics.median(gets):,.0f} |"
        )


if __name__ == "__main__":
    main()
