"""stackcube against the tools users would pick instead, side by side in one run: ``make bench-compare``.

    python -m benchmarks.compare_bench                          # 20 ms per request, 3 repetitions
    python -m benchmarks.compare_bench --latency-ms 50 --repeat 5 --tools stackcube stackstac
    python -m benchmarks.compare_bench --profile stackcube window      # where the time of one cold read goes

Data: twins of the 13 real Sentinel-2 L2A items of tile 35MNM (``tests/twins.py``: GDAL COGs on the declared
grids, downscaled 4x to 40 m, 2745 x 2745 px, 512-pixel tiles) plus 17 more dates made the same way (30 in all),
bands B02, B03, B04, B08, served by nginx behind the latency proxy of the test bed, which counts requests and
bytes. Every tool reads the same native grid (nearest resampling onto pixel centres that coincide, so no tool
resamples), and the values must be identical.

Workloads (each run in a fresh process, cold):
1. ``window``: 13 dates x 4 bands x a 1024 x 1024 window (3 x 3 tiles per band and date);
2. ``series``: 30 dates at one pixel of B04;
3. ``tile``: one full 512 x 512 tile of B04 for one date;
4. ``oneoff``: what each tool does once before reading (stackcube: ``build_cube``; stackstac and odc-stac: the
   lazy array from the items; lazycogs: the item geoparquet and its lazy array; rasteret: the item geoparquet and
   its index with every COG header).

Tools: stackcube (the default dask chunks, one per source tile; and ``stackcube-nodask``, ``chunks=False``: one
Zarr call per read), each in two configurations: the cube's repository on local disk, and (``stackcube-s3``,
``stackcube-nodask-s3``) on the test bed's S3 server (moto) behind a latency proxy of its own with the same latency,
which counts the repository's requests apart from the sources'; stackstac, odc-stac (GDAL, same GDAL settings),
lazycogs (async-geotiff) and rasteret (its Parquet index with COG header metadata, then ``read_window``), in
alternating order. lazycogs and rasteret run in
environments of their own (``TOOL_ENVS``, made on first use from PyPI) because their pins clash with the
project's. Concurrency is 32 requests (dask threads, or the tool's own cap) for every tool.
The floor of a workload is its chunks x latency / 32 (at least one round trip).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BANDS = ["B02", "B03", "B04", "B08"]
DOWNSCALE = 4
TILE = 512
THREADS = 32
TOOL_ENVS = {
    # tools whose pins clash with the project's environment run in their own (made on first use)
    # lazycogs needs pandas >= 3 (stackstac pins < 3), and DuckDB extensions it would download: the PyPI wheels of
    # the ones rustac 0.9.17's DuckDB (1.5.5) loads
    "lazycogs": (
        ROOT / ".venv-lazycogs",
        [
            "lazycogs==0.7.0",
            "rustac[arrow]==0.9.17",
            "duckdb-extension-spatial==1.5.5",
            "duckdb-extension-icu==1.5.5",
            "duckdb-extension-parquet==1.5.5",
        ],
    ),
    "rasteret": (ROOT / ".venv-rasteret", ["rasteret==0.4.1", "rustac"]),  # pins rasterio 1.4, which NumPy 2.5 warns on
}

NOT_RUN: dict[str, str] = {}
"""Tools of the issue that this benchmark does not run, and why."""

WORKLOADS = {
    # name: (time indices, bands, (row0, row1, col0, col1)) in the 2745 x 2745 grid
    "window": (list(range(13)), BANDS, (700, 1724, 900, 1924)),
    "series": (list(range(30)), ["B04"], (1500, 1501, 1500, 1501)),
    "tile": ([0], ["B04"], (1024, 1536, 1024, 1536)),
}


def chunks_touched(workload: str) -> int:
    times, bands, (r0, r1, c0, c1) = WORKLOADS[workload]
    rows = (r1 - 1) // TILE - r0 // TILE + 1
    cols = (c1 - 1) // TILE - c0 // TILE + 1
    return len(times) * len(bands) * rows * cols


def make_twins(workdir: Path) -> list[dict[str, Any]]:
    """30 items (13 real, 17 more dates) as twins under ``workdir/www/twins``; cached between runs."""
    from tests.twins import corpus_items, twin_items

    done = workdir / "items.json"
    if done.exists():
        return json.loads(done.read_text())["features"]
    items = sorted(corpus_items("site2-2020_jun_jul-35MNM.geojson"), key=lambda i: i["properties"]["datetime"])
    last = datetime.fromisoformat(items[-1]["properties"]["datetime"].replace("Z", "+00:00"))
    extra = []
    for k in range(30 - len(items)):
        clone = copy.deepcopy(items[k % len(items)])
        clone["id"] = f"{clone['id']}_LATER{k:02d}"
        clone["properties"]["datetime"] = (last + timedelta(days=5 * (k + 1))).isoformat().replace("+00:00", "Z")
        extra.append(clone)
    twins = twin_items([*items, *extra], workdir / "www" / "twins", "TWINS", downscale=DOWNSCALE, assets=BANDS)
    done.write_text(json.dumps({"type": "FeatureCollection", "features": twins}))
    return twins


def items_file(twins: list[dict[str, Any]], base_url: str, path: Path) -> dict[str, Any]:
    """The items with hrefs at ``base_url`` (and ``proj:epsg``, which stackstac 0.5 reads); returns the grid."""
    out = []
    for twin in twins:
        item = copy.deepcopy(twin)
        for asset in item["assets"].values():
            asset["href"] = asset["href"].replace("TWINS", base_url)
            props = item["properties"]
            code = asset.get("proj:code") or props.get("proj:code")
            epsg = asset.get("proj:epsg") or props.get("proj:epsg") or int(str(code).split(":")[1])
            asset["proj:epsg"] = int(epsg)
        out.append(item)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": out}))
    asset = out[0]["assets"]["B04"]
    return {"transform": asset["proj:transform"], "shape": asset["proj:shape"], "epsg": asset["proj:epsg"]}


def spec_for(tool: str, workload: str, grid: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    a, _, x0, _, e, y0 = grid["transform"][:6]
    spec: dict[str, Any] = {"tool": tool, "workload": workload, "epsg": grid["epsg"], "resolution": a, "tile": TILE}
    spec.update(paths)
    if workload == "oneoff":
        times, bands, (r0, r1, c0, c1) = [0], BANDS, (0, 1, 0, 1)
    else:
        times, bands, (r0, r1, c0, c1) = WORKLOADS[workload]
    spec.update(times=times, bands=bands, window=[r0, r1, c0, c1])
    spec["bounds"] = [x0 + a * c0, y0 + e * r1, x0 + a * c1, y0 + e * r0]
    return spec


def python_for(tool: str) -> list[str]:
    if tool not in TOOL_ENVS:
        return [sys.executable]
    env, packages = TOOL_ENVS[tool]
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return [str(python)]


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker; with ``spec["profile"]`` its cProfile summary goes to our stderr."""
    out = subprocess.run(
        [*python_for(spec["tool"]), "-m", "benchmarks.compare_worker", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        msg = f"{spec['tool']} {spec['workload']} failed:\n{out.stderr[-3000:]}"
        raise RuntimeError(msg)
    if spec.get("profile"):
        print(out.stderr, file=sys.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from tests.services.nginx import run_nginx
    from tests.services.proxy import run_proxy
    from tests.services.s3 import run_moto

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--tools",
        nargs="+",
        default=[
            "stackcube",
            "stackcube-nodask",
            "stackcube-s3",
            "stackcube-nodask-s3",
            "stackstac",
            "odc-stac",
            "lazycogs",
            "rasteret",
        ],
    )
    parser.add_argument("--workloads", nargs="+", default=["oneoff", *WORKLOADS])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "stackcube-compare")
    parser.add_argument(
        "--profile",
        nargs=2,
        metavar=("TOOL", "WORKLOAD"),
        help="run one cold read under cProfile and print where the time goes",
    )
    args = parser.parse_args(argv)

    args.cache.mkdir(parents=True, exist_ok=True)
    twins = make_twins(args.cache)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_nginx(args.cache, None) as nginx,
        run_proxy(nginx.url, latency=args.latency_ms / 1000) as proxy,
        run_moto(Path(tempfile.mkdtemp())) as s3,
        run_proxy(s3.endpoint, latency=args.latency_ms / 1000) as repository,
    ):
        run = Path(tmp)
        s3.client().create_bucket(Bucket="repos")
        grid = items_file(twins, f"{proxy.url}/twins", run / "items.json")
        paths = {
            "items": str(run / "items.json"),
            "repo": str(run / "cube.icechunk"),
            "parquet": str(run / "items.parquet"),
            "rasteret": str(run / "rasteret"),
            "array": f"EPSG{grid['epsg']}_{grid['transform'][0]:g}m",
            "scratch": str(run / "scratch"),
            # the -s3 configurations: the repository on S3 behind its own proxy (credentials are moto's dummies)
            "s3_repo": "s3://repos/cube",
            "s3_env": {**s3.env(), "AWS_ENDPOINT_URL": repository.url},
        }
        # what the read workloads need, made once (the oneoff workload times the same steps)
        # --profile prepares the profiled tool's data alone (else every default tool's, lazycogs' and rasteret's
        # environments made from PyPI included); -nodask reads stackcube's cube
        for tool in [args.profile[0].replace("-nodask", "")] if args.profile else args.tools:
            if tool in {"stackcube", "stackcube-s3", "lazycogs", "rasteret"}:  # (-nodask reads the same cube)
                run_worker({**spec_for(tool, "oneoff", grid, paths), "prepare": True})
        if args.profile:
            tool, workload = args.profile
            proxy.reset()
            repository.reset()
            result = run_worker({**spec_for(tool, workload, grid, paths), "profile": True})
            print(
                f"{tool} {workload}: {result['seconds']:.2f} s, {proxy.stats['GET']} GETs of sources, "
                f"{repository.stats['requests']} repository requests",
                file=sys.stderr,
            )
            return 0
        for rep in range(args.repeat):
            for workload in args.workloads:
                shift = rep % len(args.tools)
                for tool in args.tools[shift:] + args.tools[:shift]:
                    if workload == "oneoff" and "nodask" in tool:
                        continue  # the same build as stackcube's
                    proxy.reset()
                    repository.reset()
                    result = run_worker(spec_for(tool, workload, grid, paths))
                    result["repository"] = repository.stats["requests"]
                    result["gets"] = proxy.stats["GET"]
                    result["requests"] = proxy.stats["requests"]
                    result["bytes"] = proxy.stats["bytes"]
                    result["inflight"] = proxy.stats["max_inflight"]
                    results.setdefault((workload, tool), []).append(result)
    return report(results, args)


def repository_requests(tool: str, runs: list[dict[str, Any]]) -> str:
    """The requests to the cube's repository on S3 (median): only the -s3 configurations keep it there."""
    if not tool.endswith("-s3"):
        return ""
    return f"{statistics.median(r['repository'] for r in runs):g}"


def report(results: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace) -> int:
    latency = args.latency_ms / 1000
    print(
        f"\n{args.repeat} repetitions, {args.latency_ms:g} ms per request, {THREADS} in flight, tools in alternating "
        "order, each run a fresh process\n"
    )
    print(
        "| workload | tool | wall time, median (min-max) | GETs | requests | repository requests | MB transferred "
        "| most in flight | peak RSS MB | values |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    failed = False
    for workload in args.workloads:
        tools = [tool for tool in args.tools if (workload, tool) in results]
        hashes = {tool: {r["sha256"] for r in results[(workload, tool)]} for tool in tools}
        reference = hashes.get("stackcube") or next(iter(hashes.values()))
        for tool in tools:
            runs = results[(workload, tool)]
            seconds = [r["seconds"] for r in runs]

            def median(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            same = "n/a" if workload == "oneoff" else ("same" if hashes[tool] == reference else "DIFFERENT")
            failed = failed or same == "DIFFERENT"
            print(
                f"| {workload} | {tool} | {statistics.median(seconds):.2f} s ({min(seconds):.2f}-{max(seconds):.2f}) "
                f"| {median('gets'):g} | {median('requests'):g} | {repository_requests(tool, runs)} "
                f"| {median('bytes') / 1e6:.1f} "
                f"| {median('inflight'):g} | {median('peak_rss') / 1e6:.0f} | {same} |"
            )
        if workload != "oneoff":
            n = chunks_touched(workload)
            floor = max(latency, n * latency / THREADS)
            print(
                f"| {workload} | floor: {n} chunks x {args.latency_ms:g} ms / {THREADS} | {floor:.2f} s | {n} "
                f"| {n} | | | {THREADS} | | |"
            )
    for tool, why in NOT_RUN.items():
        print(f"\n{tool}: not run: {why}")
    if failed:
        print("\nsome tool returned different values: see the rows marked DIFFERENT", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
