"""Refresh benchmark: a cube of 1,000 items gains 5; what does the refresh cost?

    python -m benchmarks.refresh_bench                 # 1,000 items + 5, 20 ms latency, 5 repetitions
    python -m benchmarks.refresh_bench --items 200 --latency-ms 50

The items are a static ItemCollection file whose assets are distinct URLs of one Sentinel-2-sized COG (10980 x
10980, 512-pixel tiles) on ``benchmarks.latency_server``, which counts requests. The cube is built once; each
repetition refreshes a branch made from that snapshot, so every refresh does the same work. Reported: wall time
(median and spread), and the GETs and header reads the server and the report count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.header_bench import Server, make_cogs


def items(server_url: str, n: int) -> list[dict]:
    t0 = datetime(2019, 1, 1, 8, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        when = t0 + timedelta(days=5 * i)
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


def main(argv: list[str] | None = None) -> None:
    import stackcube
    from stackcube.store import open_repository

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--new", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    cache = Path(tempfile.gettempdir()) / "stackcube-bench-cogs"
    cache.mkdir(exist_ok=True)
    make_cogs(cache)
    server = Server(cache, args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            catalog = Path(tmp) / "items.json"
            everything = items(server.url, args.items + args.new)
            catalog.write_text(json.dumps({"type": "FeatureCollection", "features": everything[: args.items]}))
            repo = Path(tmp) / "cube.icechunk"
            server.reset()
            start = time.perf_counter()
            cube = stackcube.build_cube(str(catalog), repo=repo, progress=False)
            build = time.perf_counter() - start
            build_gets = server.stats().get("GET", 0)
            catalog.write_text(json.dumps({"type": "FeatureCollection", "features": everything}))

            repository = open_repository(repo)
            times, gets, requests, headers = [], [], [], []
            for rep in range(args.repeat):
                branch = f"rep{rep}"
                repository.create_branch(branch, cube.snapshot_id)
                server.reset()
                start = time.perf_counter()
                report = stackcube.refresh_cube(repo, branch=branch, progress=False)
                times.append(time.perf_counter() - start)
                stats = server.stats()
                gets.append(stats.get("GET", 0))
                requests.append(sum(v for k, v in stats.items() if k in {"GET", "HEAD"}))
                headers.append(report.headers_read)
                assert report.committed
                assert len(report.added) == args.new
                assert report.headers_read == args.new
    finally:
        server.close()

    def fmt(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"

    refs = cube.plan.arrays[0].n_chunks
    print(
        f"\n{args.items:,} items ({refs:,} virtual references, one 10980 x 10980 COG each), +{args.new} new; "
        f"{args.latency_ms:g} ms latency; {args.repeat} refreshes\n"
    )
    print("| step | wall time | GETs at the server | headers read |")
    print("|---|---:|---:|---:|")
    print(f"| build the cube of {args.items:,} items (once) | {build:.2f} s | {build_gets:,} | {args.items:,} |")
    print(
        f"| refresh: +{args.new} items | {fmt(times)} | {statistics.median(gets):g} "
        f"(all: {sorted(set(gets))}; requests incl. HEAD: {sorted(set(requests))}) | {statistics.median(headers):g} |"
    )


if __name__ == "__main__":
    main()
