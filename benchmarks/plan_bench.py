"""Planning benchmark: 100,000 sources (items x bands) grouped into arrays; time and peak RSS.

    python -m benchmarks.plan_bench                      # 25,000 items x 4 bands, 3 repetitions
    python -m benchmarks.plan_bench --items 2500 --repeat 5

The sources are what a build holds after reading headers: the manifest of the benchmark's Sentinel-2-sized COG
(10980 x 10980 in 512-pixel tiles with five overviews: six IFDs, 484 tiles at full resolution), parsed once, then
given to every source with its own offset and length arrays (as every header read makes them), over 50 MGRS-like
tiles in two UTM zones (each tile its own grid) and one date every day; properties as a Sentinel-2 item carries
them. Each repetition runs in a fresh process: it makes the sources (reported: the RSS they take), then plans
them (``stackcube.cube.plan_sources``: grouping by grid, ordering in time, the source table, the chunk index);
the time and the peak RSS (``VmHWM``) are the planning's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import dataclasses, json, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stackcube.cube import plan_sources
from stackcube.search import Query
from stackcube.sources import Source
from stackcube.tiff._model import Geo
from stackcube.tiff._parse import SparseFile, parse_manifest

def rss(field):
    line = next(x for x in open("/proc/self/status") if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024

items, bands, path = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
fh = SparseFile(path.stat().st_size, str(path))
fh.add(0, path.read_bytes()[:65536])
template = parse_manifest(path.as_uri(), fh)
before = rss("VmRSS")
t0 = datetime(2019, 1, 1, 8, tzinfo=UTC)
sources = []
for i in range(items):
    day, tile = divmod(i, 50)
    zone = 32735 if tile < 25 else 32736
    x0, y0 = 199980.0 + 109800.0 * (tile % 5), 9200020.0 - 109800.0 * (tile % 25 // 5)
    ifds = []
    for ifd in template.ifds:
        scale = ifd.geo.transform[0] if ifd.geo else 10.0 * 10980 / ifd.shape[2]
        geo = Geo(crs=f"EPSG:{zone}", transform=(scale, 0.0, x0, 0.0, -scale, y0))
        ifds.append(dataclasses.replace(ifd, offsets=ifd.offsets + i, lengths=ifd.lengths.copy(), geo=geo))
    for b in range(bands):
        manifest = dataclasses.replace(template, href=f"https://example.com/s2/{i:06d}/B{b:02d}.tif", ifds=tuple(ifds),
                                       etag=f'"{i:x}-{b}"')
        sources.append(Source(item_id=f"S2X_{i:06d}", asset=f"B{b:02d}", band=f"B{b:02d}",
                              datetime=t0 + timedelta(days=day, minutes=tile), manifest=manifest,
                              properties={"eo:cloud_cover": float(i % 100), "s2:mgrs_tile": f"T{tile:02d}",
                                          "platform": "sentinel-2a", "view:sun_azimuth": 140.0 + tile}))
held = rss("VmRSS") - before
start = time.perf_counter()
plan = plan_sources(Query(catalog=None), sources)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak": rss("VmHWM"), "held": held, "arrays": len(plan.arrays),
                  "sources": len(plan.sources)}))
"""


def main(argv: list[str] | None = None) -> None:
    from benchmarks.header_bench import make_cogs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=25_000)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cache",
        default=os.environ.get("STACKCUBE_BENCH_CACHE", str(Path(tempfile.gettempdir()) / "stackcube-bench")),
    )
    args = parser.parse_args(argv)
    root = Path(args.cache)
    root.mkdir(parents=True, exist_ok=True)
    make_cogs(root)
    runs = []
    for rep in range(args.repeat):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.items), str(args.bands), str(root / "s2_10m.tif")],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        print(f"  rep {rep + 1}: {r['seconds']:.1f} s, peak {r['peak'] / 1e9:.2f} GB", file=sys.stderr)
    secs = [r["seconds"] for r in runs]
    peaks = [r["peak"] for r in runs]
    r = runs[0]
    print(
        f"\n{r['sources']:,} sources ({args.items:,} items x {args.bands} bands, six IFDs each) -> "
        f"{r['arrays']} arrays; "
        f"{os.cpu_count()} cores, {args.repeat} repetitions\n"
    )
    print("| planning (median) | spread | peak RSS (median) | RSS the sources hold |")
    print("|---:|---:|---:|---:|")
    print(
        f"| {statistics.median(secs):.1f} s | {min(secs):.1f}-{max(secs):.1f} s | "
        f"{statistics.median(peaks) / 1e9:.2f} GB | {statistics.median(x['held'] for x in runs) / 1e9:.2f} GB |"
    )


if __name__ == "__main__":
    main()
