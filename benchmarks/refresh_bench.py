"""Refresh benchmark: cubes of 1,000 and 10,000 items gain 5 after their last date; what does a refresh cost?

    python -m benchmarks.refresh_bench                          # 1,000 and 10,000 items + 5, 20 ms, 5 repetitions
    python -m benchmarks.refresh_bench --items 1000,10000,100000 --repeat 3
    python -m benchmarks.refresh_bench --catalog pgstac          # the same items in stac-fastapi-pgstac

The items are a static ItemCollection file (or, with ``--catalog pgstac``, a collection of a real STAC API on
PostgreSQL/pgstac: the cube's items ingested three days before the build, the new ones just before the refresh,
STAC ``updated`` set then, as Earth Search does) whose assets are distinct URLs of one Sentinel-2-sized COG (10980 x
10980, 512-pixel tiles) on ``benchmarks.latency_server``, which counts requests. Each cube is built once; each
repetition refreshes a branch made from that snapshot, so every refresh does the same work. Reported per size: the
whole refresh (median and spread) and its stages as the refresh report times them (reading the cube's description
and source table, the search - a static file is read whole, a STAC API is asked for what can be new -, comparing,
reading the new headers, planning, writing and committing), the bytes written to the repository, the GETs at the
server, and whether it appended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.header_bench import Server, make_cogs


def items(server_url: str, n: int) -> list[dict]:
    """``n`` items, 5 days apart (a Sentinel-2 tile's revisit); 2 hours apart above 50,000 items, whose dates 5
    days apart would pass 2262, the end of datetime64[ns]."""
    t0 = datetime(2019, 1, 1, 8, 0, tzinfo=UTC)
    step = timedelta(days=5) if n <= 50_000 else timedelta(hours=2)
    out = []
    for i in range(n):
        when = t0 + step * i
        out.append(
            {
                "type": "Feature",
                "stac_version": "1.1.0",
                "id": f"S2_BENCH_{i:05d}",
                "geometry": {"type": "Point", "coordinates": [27.9, -4.5]},
                "bbox": [27.9, -4.5, 27.9, -4.5],
                "properties": {"datetime": when.isoformat().replace("+00:00", "Z")},
                "links": [],
                "assets": {
                    "B04": {
                        "href": f"{server_url}/s2_10m/{i}.tif",
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"],
                    }
                },
            }
        )
    return out


def ingested(features: list[dict], collection: str, ago: timedelta) -> list[dict]:
    """``features`` in ``collection`` with STAC ``updated`` set to when they were ingested, as Earth Search sets it."""
    stamp = (datetime.now(UTC) - ago).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [{**f, "collection": collection, "properties": {**f["properties"], "updated": stamp}} for f in features]


COLLECTION = {
    "type": "Collection",
    "stac_version": "1.1.0",
    "id": "bench",
    "description": "refresh_bench's items",
    "license": "proprietary",
    "extent": {
        "spatial": {"bbox": [[27.9, -4.5, 27.9, -4.5]]},
        "temporal": {"interval": [["2019-01-01T00:00:00Z", None]]},
    },
    "links": [],
}


def _files(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file()}


STAGES = ("read cube", "search", "compare", "headers", "plan", "write")


def main(argv: list[str] | None = None) -> None:
    import stackcube
    from stackcube.store import open_repository

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1000,10000", help="cube sizes, comma-separated")
    parser.add_argument("--new", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--catalog", choices=["static", "pgstac"], default="static")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.items.split(",")]

    cache = Path(tempfile.gettempdir()) / "stackcube-bench-cogs"
    cache.mkdir(exist_ok=True)
    make_cogs(cache)
    server = Server(cache, args.latency_ms)
    rows = []
    with contextlib.ExitStack() as stack:
        stack.callback(server.close)
        api = None
        if args.catalog == "pgstac":
            from tests.services.pgstac import run_stac_api

            api = stack.enter_context(run_stac_api(Path(stack.enter_context(tempfile.TemporaryDirectory()))))
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                catalog = Path(tmp) / "items.json"
                everything = items(server.url, size + args.new)
                repo = Path(tmp) / "cube.icechunk"
                if api is not None:
                    collection = f"bench-{size}"
                    api.load([{**COLLECTION, "id": collection}], ingested(everything[:size], collection, timedelta(3)))
                    search = {"catalog": api.url, "collections": [collection]}
                else:
                    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": everything[:size]}))
                    search = {"catalog": str(catalog)}
                server.reset()
                start = time.perf_counter()
                cube = stackcube.build_cube(**search, repo=repo, progress=False)
                build = time.perf_counter() - start
                if api is not None:
                    api.load(items=ingested(everything[size:], collection, timedelta(0)))
                else:
                    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": everything}))
                repository = open_repository(repo)
                total, stages, gets, written, appended, found = [], {s: [] for s in STAGES}, [], [], [], []
                for rep in range(args.repeat):
                    branch = f"rep{rep}"
                    repository.create_branch(branch, cube.snapshot_id)
                    server.reset()
                    files = _files(repo)
                    start = time.perf_counter()
                    report = stackcube.refresh_cube(repo, branch=branch, progress=False)
                    total.append(time.perf_counter() - start)
                    for stage in STAGES:
                        stages[stage].append(report.timings.get(stage, 0.0))
                    gets.append(server.stats().get("GET", 0))
                    written.append(sum(n for f, n in _files(repo).items() if f not in files))
                    appended.append(report.appended)
                    found.append(report.found)
                    assert report.committed
                    assert len(report.added) == args.new
                    assert report.headers_read == args.new
                rows.append((size, cube.plan.arrays[0].n_chunks, build, total, stages, found, gets, written, appended))
                print(f"  {size:,} items: refresh {statistics.median(total):.2f} s ({report.search})", file=sys.stderr)

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}"

    where = "A pgstac STAC API collection" if args.catalog == "pgstac" else "A static ItemCollection"
    print(
        f"\n{where} of N items (one 10980 x 10980 COG each, 484 references), +{args.new} new ones "
        f"after the last date; {args.latency_ms:g} ms latency; {args.repeat} refreshes each from the same snapshot; "
        "seconds, median (min-max of the whole refresh)\n"
    )
    print(
        "| items | references | build | refresh | read cube | search | found | compare | headers | plan | write "
        "| written to the repository | GETs | appended |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for size, refs, build, total, stages, found, gets, written, appended in rows:
        print(
            f"| {size:,} | {refs:,} | {build:.1f} | {med(total)} ({min(total):.2f}-{max(total):.2f}) | "
            + " | ".join(med(stages[s]) for s in STAGES[:2])
            + f" | {statistics.median(found):g} | "
            + " | ".join(med(stages[s]) for s in STAGES[2:])
            + f" | {statistics.median(written) / 1e6:.2f} MB | {statistics.median(gets):g} | "
            + f"{'yes' if all(appended) else 'no'} |"
        )


if __name__ == "__main__":
    main()
