"""Refresh benchmark: cubes of 1,000 and 10,000 items gain 5 after their last date; what does a refresh cost?

    python -m benchmarks.refresh_bench                          # 1,000 and 10,000 items + 5, 20 ms, 5 repetitions
    python -m benchmarks.refresh_bench --items 1000,10000,100000 --repeat 3
    python -m benchmarks.refresh_bench --catalog pgstac          # the same items in stac-fastapi-pgstac
    python -m benchmarks.refresh_bench --catalog pgstac --items 1000,10000,100000 --cog small --updated-queryable

The items are a static ItemCollection file (or, with ``--catalog pgstac``, a collection of a real STAC API on
PostgreSQL/pgstac: the cube's items ingested three days before the build, the new ones just before the refresh,
STAC ``updated`` set then, as Earth Search does) whose assets are distinct URLs of one COG on
``benchmarks.latency_server``, which counts requests. Each cube is built once, in a process of its own (whose
peak RSS is reported; what the build held is not in the way of the refreshes); each repetition refreshes a branch
made from that snapshot, so every refresh does the same work, in a fresh process per set of repetitions, as a
scheduled refresh runs (its imports are not timed; its first refresh probes the sources' host: 3 GETs more).
Reported per size: the whole refresh (median and spread) and its stages as the refresh report times them (reading
the cube's description and source table, the search - a static file is read whole, a STAC API is asked for what
can be new -, comparing, reading the new headers, planning, writing and committing), the source-table rows the
refresh read, the bytes written to the repository, the GETs at the server, and whether it appended.
``--baseline SRC`` refreshes the same cubes again with the stackcube of another source tree (the ``src`` folder of
a checkout of an earlier commit): before and after a change, on the same cube.

The COG (``--cog``): ``s2_10m`` (the default), a Sentinel-2-sized band, 10980 x 10980 in 512-pixel tiles with its
overviews: 484 references at full resolution, and a 100,000-item build that reads 100,000 such headers peaks at
14-16 GB; ``small``, 4096 x 4096 in 512-pixel tiles with its overviews (64 references at full resolution, 85 in
all): the same refresh on a cube whose build fits in a few GB (the 100,000-item build peaked at 3.1 GB; a refresh's
cost is its source table, its search and its new items, not the references its stored items hold).

``--updated-queryable`` (pgstac only) measures each size twice from the same build: as pgstac comes (its default
queryables index ``id``, ``geometry`` and ``datetime``, not ``updated``: a search on ``updated`` reads every item
of the collection), then with ``updated`` declared a queryable with a BTREE index
(:data:`UPDATED_QUERYABLE`, the statement the README recommends).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.header_bench import Server, make_cogs

SMALL = ("s2_small", 4096, 512)
"""``--cog small``: its name on the server, its size and its tile size (uint16, EPSG:32635, 10 m, as ``s2_10m``)."""

UPDATED_QUERYABLE = (
    "SET search_path TO pgstac, public",
    "INSERT INTO queryables (name, definition, property_index_type) VALUES ('updated', "
    """'{"title": "Last update", "type": "string", "format": "date-time"}', 'BTREE')""",
)
"""Declares STAC ``updated`` a pgstac queryable read as a timestamp, with a BTREE index, for every collection: pgstac
builds the index on every collection's partition (its queryables trigger, which needs pgstac's search path), and a
search filtered on ``updated`` (a refresh's) uses it. The benchmark declares it for one collection at a time
(``collection_ids``), so that each size is measured without it first."""


def make_small_cog(directory: Path) -> None:
    """Write the ``--cog small`` COG (a pattern, DEFLATE with a predictor, nearest overviews), once."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    name, size, block = SMALL
    path = directory / f"{name}.tif"
    if path.exists():
        return
    rows = np.arange(size, dtype=np.uint32)[:, None]
    data = ((rows // 64 + np.arange(size)[None, :] // 64) % 7).astype("uint16")
    profile = {
        "driver": "COG", "height": size, "width": size, "count": 1, "dtype": "uint16", "crs": "EPSG:32635",
        "transform": from_origin(600000, 9500000, 10, 10), "blocksize": block, "compress": "DEFLATE",
        "predictor": 2, "overview_resampling": "nearest",
    }  # fmt: skip
    with rasterio.open(path.with_suffix(".tmp.tif"), "w", **profile) as dst:
        dst.write(data[None])
    path.with_suffix(".tmp.tif").rename(path)


def declare_updated_queryable(dsn: str, collection: str) -> None:
    """Run :data:`UPDATED_QUERYABLE` for ``collection`` on the pgstac database at ``dsn`` (its index is built before
    it returns)."""
    import psycopg

    setting, insert = UPDATED_QUERYABLE
    columns, values = insert.split(" VALUES (")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(setting)
        conn.execute(f"{columns[:-1]}, collection_ids) VALUES ({values[:-1]}, %s)", ([collection],))


def items(server_url: str, n: int, cog: str = "s2_10m") -> list[dict]:
    """``n`` items, 5 days apart (a Sentinel-2 tile's revisit); 2 hours apart above 50,000 items, whose dates 5
    days apart would pass 2262, the end of datetime64[ns]. Each asset is a distinct URL of the COG ``cog``."""
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
                        "href": f"{server_url}/{cog}/{i}.tif",
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


def build(search: dict, repo: str) -> tuple[str, int, float, float]:
    """Build the cube (in a process of its own: :func:`main`): its snapshot, its full resolution's references,
    the seconds it took and the process's peak RSS in GB."""
    import stackcube

    start = time.perf_counter()
    cube = stackcube.build_cube(**search, repo=repo, progress=False)
    took = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    return cube.snapshot_id, cube.plan.arrays[0].n_chunks, took, peak


def refreshes(params: dict) -> dict:
    """``params["repeat"]`` refreshes of the cube at ``params["repo"]``, each on its own branch made from
    ``params["snapshot"]``: their times, stages and counts (run in a fresh process, as a scheduled refresh is:
    :data:`REFRESHER`)."""
    import stackcube
    from stackcube.store import open_repository

    def server(call: str, method: str = "GET") -> dict:
        with urllib.request.urlopen(urllib.request.Request(f"{params['server']}/{call}", method=method)) as r:
            return json.loads(r.read() or b"{}")

    repo = Path(params["repo"])
    repository = open_repository(repo)
    out: dict = {"total": [], "stages": {s: [] for s in STAGES}, "gets": [], "written": [], "appended": []}
    out |= {"found": [], "rows": []}
    for rep in range(params["repeat"]):
        branch = f"{params['label']}{rep}"
        repository.create_branch(branch, params["snapshot"])
        server("_reset", "POST")
        files = _files(repo)
        start = time.perf_counter()
        report = stackcube.refresh_cube(repo, branch=branch, progress=False)
        out["total"].append(time.perf_counter() - start)
        for stage in STAGES:
            out["stages"][stage].append(report.timings.get(stage, 0.0))
        out["gets"].append(server("_stats").get("GET", 0))
        out["written"].append(sum(n for f, n in _files(repo).items() if f not in files))
        out["appended"].append(report.appended)
        out["found"].append(report.found)
        out["rows"].append(getattr(report, "rows_read", -1))  # -1: a stackcube that does not count them
        assert report.committed
        assert len(report.added) == params["new"]
        assert report.headers_read == params["new"]
    out["search"] = report.search
    return out


REFRESHER = (
    "import json, sys; from benchmarks.refresh_bench import refreshes; "
    "print(json.dumps(refreshes(json.load(sys.stdin))))"
)
"""What the process that refreshes runs (its imports are not timed)."""


def refreshed(params: dict, source: str | None = None) -> dict:
    """:func:`refreshes` in a fresh process, with stackcube from ``source`` (a ``src`` folder) when given."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", REFRESHER],
        input=json.dumps(params),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1000,10000", help="cube sizes, comma-separated")
    parser.add_argument("--new", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--catalog", choices=["static", "pgstac"], default="static")
    parser.add_argument("--cog", choices=["s2_10m", "small"], default="s2_10m", help="the COG every asset is")
    parser.add_argument(
        "--updated-queryable",
        action="store_true",
        help="pgstac: measure again with `updated` declared an indexed queryable (UPDATED_QUERYABLE)",
    )
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also refresh with the stackcube of another source tree (its `src` folder: a checkout of an earlier "
        "commit), on the same cubes",
    )
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.items.split(",")]
    if args.updated_queryable and args.catalog != "pgstac":
        parser.error("--updated-queryable needs --catalog pgstac")

    cache = Path(tempfile.gettempdir()) / "stackcube-bench-cogs"
    cache.mkdir(exist_ok=True)
    if args.cog == "small":
        make_small_cog(cache)
    else:
        make_cogs(cache)
    cog = SMALL[0] if args.cog == "small" else "s2_10m"
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
                everything = items(server.url, size + args.new, cog)
                repo = Path(tmp) / "cube.icechunk"
                if api is not None:
                    collection = f"bench-{size}"
                    api.load([{**COLLECTION, "id": collection}], ingested(everything[:size], collection, timedelta(3)))
                    search = {"catalog": api.url, "collections": [collection]}
                else:
                    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": everything[:size]}))
                    search = {"catalog": str(catalog)}
                server.reset()
                with multiprocessing.get_context("spawn").Pool(1) as pool:  # its memory is given back after
                    snapshot, refs, took, peak = pool.apply(build, (search, str(repo)))
                if api is not None:
                    api.load(items=ingested(everything[size:], collection, timedelta(0)))
                else:
                    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": everything}))
                del everything
                params = {"repo": str(repo), "snapshot": snapshot, "server": server.url} | vars(args)
                codes = {"": None} | ({"baseline": args.baseline} if args.baseline else {})
                pgstacs = ["as it comes", "updated indexed"] if args.updated_queryable else ["as it comes"]
                for n_pg, pg in enumerate(pgstacs):
                    if n_pg:
                        assert api is not None
                        declare_updated_queryable(api.dsn, collection)
                    for code, source in codes.items():
                        label = f"{code}{n_pg}"
                        m = refreshed(params | {"label": label}, source)
                        rows.append((size, pg, code, refs, took, peak, m))
                        print(
                            f"  {size:,} items ({pg}{', ' + code if code else ''}): refresh "
                            f"{statistics.median(m['total']):.2f} s ({m['search']})",
                            file=sys.stderr,
                        )

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}"

    where = "A pgstac STAC API collection" if args.catalog == "pgstac" else "A static ItemCollection"
    what = f"{SMALL[1]} x {SMALL[1]} COG" if args.cog == "small" else "10980 x 10980 COG"
    print(
        f"\n{where} of N items (one {what} each, {rows[0][3] // rows[0][0]:,} references at full resolution), "
        f"+{args.new} new ones "
        f"after the last date; {args.latency_ms:g} ms latency; {args.repeat} refreshes each from the same snapshot; "
        "seconds, median (min-max of the whole refresh)\n"
    )
    print(
        "| items | pgstac | stackcube | references | build | build peak RSS | refresh | read cube | search | found "
        "| compare | headers | plan | write | rows read | written to the repository | GETs | appended |"
    )
    print("|---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for size, pg, code, refs, took, peak, m in rows:
        total, stages = m["total"], m["stages"]
        print(
            f"| {size:,} | {pg} | {code or 'this'} | {refs:,} | {took:.1f} | {peak:.1f} GB | "
            f"{med(total)} ({min(total):.2f}-{max(total):.2f}) | "
            + " | ".join(med(stages[s]) for s in STAGES[:2])
            + f" | {statistics.median(m['found']):g} | "
            + " | ".join(med(stages[s]) for s in STAGES[2:])
            + f" | {statistics.median(m['rows']):,g} | {statistics.median(m['written']) / 1e6:.2f} MB | "
            + f"{statistics.median(m['gets']):g} | {'yes' if all(m['appended']) else 'no'} |"
        )


if __name__ == "__main__":
    main()
