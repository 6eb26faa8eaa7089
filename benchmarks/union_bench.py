"""Union benchmark: 250 scenes on one pixel lattice at arbitrary whole-pixel offsets, as one array.

    python -m benchmarks.union_bench                       # 250 scenes, 20 ms latency, 3 repetitions
    python -m benchmarks.union_bench --scenes 100 --latency-ms 50
    python -m benchmarks.union_bench --scenes 5000 --build-only   # plan and commit only, files on local disk
    python -m benchmarks.union_bench --scenes 2000 --build-only --members   # also open_cube(members=True)

Scenes are 512 x 512 px tiled (256) uint16 GeoTIFFs with nodata (Landsat-like: a path/row's footprint moving by
whole 30 m pixels between dates), one date each, served by nginx behind the test bed's latency proxy. stackcube
builds a cube (one array per scene, one union), then opens the union and reads a 512 x 512 window at every
date, with the cube's repository on local disk and (``stackcube-s3``) on the test bed's S3 server behind a latency
proxy of its own (same latency), which counts the repository's requests apart from the sources'; stackstac stacks
the same items onto the same grid (nearest: pixel centres coincide) and reads the same window. Values must be
identical. All run in this process with 32 dask threads (and 32 requests in flight). Reported: medians and spreads
of wall time, GETs of sources at their proxy, repository requests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

RES = 30.0
X0, Y0 = 300_000.0, 4_500_000.0
SIZE, TILE = 512, 256


def write_scenes(directory: Path, n: int, *, constant: bool = False) -> list[tuple[str, int, int]]:
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(0)
    scenes = []
    for i in range(n):
        row, col = (int(v) for v in rng.integers(0, 200, size=2))
        path = directory / f"scene_{i:03d}.tif"
        if not path.exists():
            data = (
                np.full((1, SIZE, SIZE), i + 1, np.uint16)
                if constant
                else rng.integers(1, 60_000, (1, SIZE, SIZE), np.uint16)
            )
            profile = {
                "driver": "GTiff", "width": SIZE, "height": SIZE, "count": 1, "dtype": "uint16",
                "crs": "EPSG:32633", "transform": Affine(RES, 0, X0 + col * RES, 0, -RES, Y0 - row * RES),
                "tiled": True, "blockxsize": TILE, "blockysize": TILE, "compress": "deflate", "nodata": 0,
            }  # fmt: skip
            with rasterio.open(path, "w", **profile) as ds:
                ds.write(data)
        scenes.append((path.name, row, col))
    return scenes


def items_for(scenes: list[tuple[str, int, int]], base: str) -> list:
    import pystac

    t0 = datetime(2020, 1, 1, 10, tzinfo=UTC)
    items = []
    for i, (name, row, col) in enumerate(scenes):
        item = pystac.Item(f"scene_{i:03d}", None, None, t0 + timedelta(days=8 * i), {"proj:epsg": 32633})
        transform = [RES, 0.0, X0 + col * RES, 0.0, -RES, Y0 - row * RES]
        fields = {"proj:epsg": 32633, "proj:shape": [SIZE, SIZE], "proj:transform": transform}
        item.add_asset("red", pystac.Asset(f"{base}/{name}", media_type=pystac.MediaType.GEOTIFF, extra_fields=fields))
        items.append(item)
    return items


def build_only(n: int, repeat: int, *, members: bool = False) -> None:
    """Plan and commit a union of ``n`` scenes read from local disk (constant pixels: the build reads headers
    only), to a repository on local disk, and open the union and the cube (``members``: also the cube with every
    member opened, as ``open_cube`` did before members were listed only); the medians and spreads of each, the CPU
    time of the plan and the write (all of this process's threads: on a machine shared with other work, wall
    times follow its load, CPU times much less), and the peak RSS."""
    import resource

    import stackcube
    from stackcube.store import write_plan

    directory = Path(tempfile.gettempdir()) / "stackcube-union-build" / "scenes"
    directory.mkdir(parents=True, exist_ok=True)
    items = items_for(write_scenes(directory, n, constant=True), str(directory))
    plans, writes, opens, trees, eager = [], [], [], [], []
    cpu: dict[str, list[float]] = {"plan": [], "write": []}  # this process's CPU seconds: steadier on a shared machine
    for _ in range(repeat):
        start, used = time.perf_counter(), time.process_time()
        plan = stackcube.plan_cube(items, progress=False)
        plans.append(time.perf_counter() - start)
        cpu["plan"].append(time.process_time() - used)
        with tempfile.TemporaryDirectory() as tmp:
            start, used = time.perf_counter(), time.process_time()
            write_plan(plan, str(Path(tmp) / "cube.icechunk"), progress=False)
            writes.append(time.perf_counter() - start)
            cpu["write"].append(time.process_time() - used)
            start = time.perf_counter()
            stackcube.open_dataarray(str(Path(tmp) / "cube.icechunk"), plan.unions[0].name)
            opens.append(time.perf_counter() - start)
            start = time.perf_counter()
            stackcube.open_cube(str(Path(tmp) / "cube.icechunk"))
            trees.append(time.perf_counter() - start)
            if members:
                start = time.perf_counter()
                stackcube.open_cube(str(Path(tmp) / "cube.icechunk"), members=True)
                eager.append(time.perf_counter() - start)
    (union,) = plan.unions
    total = [p + w for p, w in zip(plans, writes, strict=True)]

    def fmt(v: list[float]) -> str:
        return f"{statistics.median(v):.2f} s ({min(v):.2f}-{max(v):.2f})"

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux, as cube_bench reports
    print(f"\n{n} scenes -> one union of {union.shape[2]} x {union.shape[3]} px x {union.shape[0]} dates; local disk")
    print(f"| plan (headers from local files) | {fmt(plans)} |\n| write and commit | {fmt(writes)} |")
    print(f"| plan, CPU time | {fmt(cpu['plan'])} |\n| write and commit, CPU time | {fmt(cpu['write'])} |")
    print(f"| total | {fmt(total)} |\n| open the union (lazy) | {fmt(opens)} |\n| open_cube | {fmt(trees)} |")
    if members:
        print(f"| open_cube(members=True) | {fmt(eager)} |")
    print(f"| peak RSS | {peak:.2f} GB |")


def main(argv: list[str] | None = None) -> None:
    import stackstac
    from rasterio.enums import Resampling
    from tests.services.nginx import run_nginx
    from tests.services.proxy import run_proxy
    from tests.services.s3 import run_moto

    import stackcube

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=250)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--build-only", action="store_true", help="plan and commit from local files; no reads")
    parser.add_argument("--members", action="store_true", help="--build-only: also time open_cube(members=True)")
    args = parser.parse_args(argv)
    if args.build_only:
        build_only(args.scenes, args.repeat, members=args.members)
        return
    warnings.simplefilter("ignore")  # stackstac 0.5's affine and pandas warnings
    import dask

    dask.config.set(scheduler="threads", num_workers=32)  # I/O-bound: 32 requests in flight for both tools

    cache = Path(tempfile.gettempdir()) / "stackcube-union-bench"
    (cache / "www" / "scenes").mkdir(parents=True, exist_ok=True)
    scenes = write_scenes(cache / "www" / "scenes", args.scenes)
    tools = ["stackcube", "stackcube-s3", "stackstac"]
    rows: dict[str, list[float]] = {tool: [] for tool in tools}
    gets: dict[str, list[int]] = {tool: [] for tool in tools}
    repository_requests: dict[str, list[int]] = {tool: [] for tool in tools}
    opens: dict[str, list[float]] = {tool: [] for tool in tools}
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_nginx(cache, None) as nginx,
        run_proxy(nginx.url, latency=args.latency_ms / 1000) as proxy,
        run_moto(Path(tempfile.mkdtemp())) as s3,
        run_proxy(s3.endpoint, latency=args.latency_ms / 1000) as repository,
    ):
        s3.client().create_bucket(Bucket="repos")
        os.environ.update({**s3.env(), "AWS_ENDPOINT_URL": repository.url})
        stackcube.settings.reset()  # the S3 server's environment read
        stackcube.settings.set(max_concurrency=32)
        items = items_for(scenes, f"{proxy.url}/scenes")
        repos = {"stackcube": str(Path(tmp) / "cube.icechunk"), "stackcube-s3": "s3://repos/union"}
        builds = {}
        for tool, repo in repos.items():
            proxy.reset()
            repository.reset()
            start = time.perf_counter()
            cube = stackcube.build_cube(items, repo=repo, progress=False)
            builds[tool] = (time.perf_counter() - start, proxy.stats["GET"], repository.stats["requests"])
        (union,) = cube.plan.unions
        a, _, x0, _, e, y0 = union.transform[:6]
        _, _, height, width = union.shape
        window = {"y": slice(100, 100 + SIZE), "x": slice(100, 100 + SIZE)}
        values = {}
        for rep in range(args.repeat):
            shift = rep % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                proxy.reset()
                repository.reset()
                start = time.perf_counter()
                if tool in repos:
                    data = stackcube.open_dataarray(repos[tool], union.name, mask_and_scale=False)
                    opens[tool].append(time.perf_counter() - start)
                else:
                    data = stackstac.stack(
                        items, assets=["red"], epsg=32633, resolution=RES,
                        bounds=(x0, y0 + e * height, x0 + a * width, y0), snap_bounds=False,
                        resampling=Resampling.nearest, dtype="uint16", fill_value=np.uint16(0), rescale=False,
                    )  # fmt: skip
                result = np.asarray(data.isel(window).values).reshape(-1, SIZE, SIZE)
                rows[tool].append(time.perf_counter() - start)
                gets[tool].append(proxy.stats["GET"])
                repository_requests[tool].append(repository.stats["requests"])
                values[tool] = result
    for tool in repos:
        assert np.array_equal(values[tool], values["stackstac"]), f"{tool} and stackstac returned different values"

    def fmt(v: list[float]) -> str:
        return f"{statistics.median(v):.2f} s ({min(v):.2f}-{max(v):.2f})"

    print(
        f"\n{args.scenes} scenes at whole-pixel offsets -> one union of {height} x {width} px x {union.shape[0]} "
        f"dates; a {SIZE} x {SIZE} window at every date; {args.latency_ms:g} ms latency; {args.repeat} repetitions\n"
    )
    print("| step | wall time | GETs of sources | repository requests |")
    print("|---|---:|---:|---:|")
    for tool in repos:
        seconds, sources, requests = builds[tool]
        counted = requests if tool == "stackcube-s3" else ""
        print(f"| {tool}: build the cube (once) | {seconds:.2f} s | {sources} | {counted} |")
    for tool in tools:
        where = "" if tool == "stackstac" else f"{statistics.median(repository_requests[tool]):g}"
        where = where if tool == "stackcube-s3" else ""
        if tool in repos:
            print(f"| {tool}: open the union (lazy) | {fmt(opens[tool])} | 0 | |")
        step = "open + read the window" if tool in repos else "stack + read the window"
        print(f"| {tool}: {step} | {fmt(rows[tool])} | {statistics.median(gets[tool]):g} | {where} |")
    print("\nvalues: identical")


if __name__ == "__main__":
    main()
