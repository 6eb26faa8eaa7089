"""stac-geoparquet benchmark: a bbox + datetime search that keeps 1,000 of 200,000 Sentinel-2 items.

    python -m benchmarks.parquet_bench                  # 200,000 items, 5 repetitions (the JSON's once: minutes)
    python -m benchmarks.parquet_bench --items 20000 --repeat 5 --json-repeat 3

The items are copies of a real Planetary Computer Sentinel-2 L2A item (24 assets, 33 properties; the corpus's
35MNM scene), spread over 200 one-degree tiles and one date a day, written once in date order as stac-geoparquet
writes them (``stac_geoparquet.arrow.to_parquet``; its default row groups) and as an ItemCollection JSON file. Each
search runs in a fresh process, so its peak RSS (``VmHWM``, imports included) is the search's own; reported
beside it is the process's RSS after imports. Side by side, in alternating order:

- ``geoparquet``: ``search_items(file.parquet, bbox=..., datetime=...)`` (pushdown, then exact matching);
- ``geoparquet, directory by month``: the same items as a directory of monthly files (as Planetary Computer
  partitions its exports);
- ``ItemCollection JSON``: ``search_items(file.json, ...)``, every item read and matched.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

TILES = 200  # 20 x 10 one-degree tiles
BBOX = (20.05, -9.95, 21.95, -8.05)  # 2 x 2 tiles
DAYS = ("2019-03-01", "2019-11-06")  # 250 dates: with 4 tiles, 1,000 items


def template() -> dict:
    corpus = Path(__file__).resolve().parents[2] / "shared" / "corpus"
    path = corpus / "stac" / "odc-stac" / "site2-2020_jun_jul-35MNM.geojson"
    item = json.loads(path.read_text())["features"][0]
    item.pop("links", None)
    return item


def items(n: int, start: int = 0) -> Iterator[dict]:
    """Items ``start`` to ``n`` (one day after another, 200 tiles a day), made one at a time."""
    base = template()
    t0 = datetime(2019, 1, 1, 8, 0, tzinfo=UTC)
    text = json.dumps(base)
    for i in range(start, n):
        day, tile = divmod(i, TILES)
        west, south = 20.0 + tile % 20, -10.0 + tile // 20
        item = json.loads(text.replace(base["id"], f"S2X_MSIL2A_{day:04d}_T{tile:03d}"))
        ring = [[west, south], [west + 1, south], [west + 1, south + 1], [west, south + 1], [west, south]]
        item["geometry"] = {"type": "Polygon", "coordinates": [ring]}
        item["bbox"] = [west, south, west + 1, south + 1]
        item["properties"]["datetime"] = (t0 + timedelta(days=day)).isoformat().replace("+00:00", "Z")
        item["properties"]["eo:cloud_cover"] = (i * 37) % 100
        yield item


def write(root: Path, n: int) -> None:
    """The items as one stac-geoparquet file, a directory of a file per month, and an ItemCollection JSON; streamed,
    so that writing 200,000 items does not hold them all."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    done = root / f"done-{n}"
    if done.exists():
        return
    to_parquet(parse_stac_items_to_arrow(items(n), chunk_size=20_000), root / "items.parquet")
    (root / "by-month").mkdir(exist_ok=True)
    for month, mine in itertools.groupby(items(n), key=lambda i: i["properties"]["datetime"][:7]):
        to_parquet(parse_stac_items_to_arrow(mine, chunk_size=20_000), root / "by-month" / f"{month}.parquet")
    with (root / "items.json").open("w") as f:
        f.write('{"type": "FeatureCollection", "features": [')
        for i, item in enumerate(items(n)):
            f.write(("," if i else "") + json.dumps(item))
        f.write("]}")
    done.touch()


SEARCH = """
import json, sys, time
import stackcube.search, pystac, shapely, pyarrow, rustac, duckdb

def peak():  # the high-water mark of this process (ru_maxrss would carry the parent's over exec)
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

after_imports = peak()
start = time.perf_counter()
_, found = stackcube.search.search_items(sys.argv[1], bbox={bbox}, datetime="{days}")
elapsed = time.perf_counter() - start
peak = peak()
print(json.dumps({{"seconds": elapsed, "found": len(found), "peak": peak, "imports": after_imports,
                  "ids": sorted(i.id for i in found)[:3]}}))
"""


def run(catalog: Path) -> dict:
    code = SEARCH.format(bbox=BBOX, days="/".join(DAYS))
    out = subprocess.run([sys.executable, "-c", code, str(catalog)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json-repeat", type=int, default=1, help="runs of the ItemCollection JSON (0: none)")
    parser.add_argument(
        "--cache",
        default=os.environ.get("STACKCUBE_BENCH_CACHE", str(Path(tempfile.gettempdir()) / "stackcube-bench")),
    )
    args = parser.parse_args(argv)
    root = Path(args.cache) / f"geoparquet-{args.items}"
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write(root, args.items)
    print(f"items written (or cached) in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    inputs = {
        "geoparquet (one file)": root / "items.parquet",
        "geoparquet (a file per month)": root / "by-month",
    }
    if args.json_repeat:
        inputs["ItemCollection JSON"] = root / "items.json"
    results: dict[str, list[dict]] = {name: [] for name in inputs}
    for rep in range(max(args.repeat, args.json_repeat)):
        order = list(inputs)[rep % len(inputs) :] + list(inputs)[: rep % len(inputs)]
        for name in order:
            if len(results[name]) >= (args.json_repeat if name == "ItemCollection JSON" else args.repeat):
                continue
            results[name].append(run(inputs[name]))
            r = results[name][-1]
            print(
                f"  rep {rep + 1} {name}: {r['seconds']:.2f} s, {r['found']} items, {r['peak'] / 1e6:.0f} MB",
                file=sys.stderr,
            )
    found = {r["found"] for rs in results.values() for r in rs}
    size = {
        name: sum(f.stat().st_size for f in ([p] if p.is_file() else p.glob("*.parquet"))) for name, p in inputs.items()
    }
    print(
        f"\n{args.items:,} Sentinel-2 L2A items (24 assets each), bbox {BBOX} and {DAYS[0]}/{DAYS[1]}: "
        f"{'/'.join(map(str, sorted(found)))} items found; {os.cpu_count()} cores, "
        f"{args.repeat} repetitions (JSON: {args.json_repeat})\n"
    )
    print("| input | size on disk | search (median) | spread | peak RSS (median) | RSS after imports |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        secs = [r["seconds"] for r in rs]
        peaks = [r["peak"] for r in rs]
        print(
            f"| {name} | {size[name] / 1e6:,.0f} MB | {statistics.median(secs):.2f} s | "
            f"{min(secs):.2f}-{max(secs):.2f} s | {statistics.median(peaks) / 1e6:,.0f} MB | "
            f"{statistics.median(r['imports'] for r in rs) / 1e6:.0f} MB |"
        )


if __name__ == "__main__":
    main()
