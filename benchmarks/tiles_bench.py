"""Map tiles of a cube whose repository is on object storage: repository requests and wall time per tile request.

    python -m benchmarks.tiles_bench                   # 5 dates, 20 ms per request, a 3 x 3 block of tiles, 5 times
    python -m benchmarks.tiles_bench --latency-ms 50

The repository lives on the test bed's S3 server (moto) behind the latency proxy, which counts the requests; the
sources are local files, so only the repository's cost shows. ``stackcube.tiles.create_app`` serves the tiles
(FastAPI's TestClient, one request at a time, as a map asks for its tiles). Side by side in one run:

- ``kept per snapshot``: the app as it is (a branch's tip looked up per request, one small read; the cube opened
  once per snapshot);
- ``opened per request``: the same app opening the cube at every request, as it did first.

Reported: repository requests per tile request and the wall time per tile request (median and spread).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import morecantile
    from fastapi.testclient import TestClient
    from pyproj import Transformer
    from tests.twins import series

    from benchmarks.open_bench import repositories_on_s3

    with repositories_on_s3(args.latency_ms) as (work, proxy):
        import stackcube
        import stackcube.tiles
        from stackcube.tiles import CubeSource, create_app

        repo = "s3://repos/tiles-bench"
        items = series(work / "sources", (work / "sources").as_uri(), args.dates, size=1024, blocksize=256)
        (array,) = stackcube.build_cube(items, repo=repo, progress=False).plan.arrays
        lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(505_120, 3_994_880)
        centre = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 15)
        tiles = [(centre.x + dx, centre.y + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        params = {"variable": array.name, "sel": ["time=2024-06-01T10:00:00", "band=B04"], "rescale": "0,4000"}
        kept = CubeSource.open_levels

        def per_request(self: CubeSource, name: str) -> object:
            return self._open(name, self.options)

        print(
            f"\nrepository on S3 (moto) behind a {args.latency_ms:g} ms proxy, a {args.dates}-date cube of "
            f"1024 x 1024 px, sources local; {len(tiles)} tiles at z15, {args.repeat} times\n"
        )
        print("| app | repository requests per tile | wall time per tile, median (min-max) |")
        print("|---|---:|---:|")
        for name, open_levels in (("kept per snapshot", kept), ("opened per request", per_request)):
            stackcube.tiles.CubeSource.open_levels = open_levels  # type: ignore[method-assign]
            times, requests = [], []
            with TestClient(create_app(repo)) as client:
                for _ in range(args.repeat):
                    for x, y in tiles:
                        proxy.heads.clear()
                        started = time.monotonic()
                        answer = client.get(f"/tiles/WebMercatorQuad/15/{x}/{y}.png", params=params)
                        times.append(time.monotonic() - started)
                        requests.append(len(proxy.heads))
                        assert answer.status_code in {200, 404}, answer.text
            stackcube.tiles.CubeSource.open_levels = kept  # type: ignore[method-assign]
            print(
                f"| {name} | {statistics.median(requests):g} ({min(requests)}-{max(requests)}) | "
                f"{statistics.median(times) * 1000:.0f} ms ({min(times) * 1000:.0f}-{max(times) * 1000:.0f}) |"
            )


if __name__ == "__main__":
    main()
