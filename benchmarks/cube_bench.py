"""Writer benchmarks: commit a plan of 1,000,000 virtual references; open the metadata of a 10,000-date cube.

    python -m benchmarks.cube_bench                   # 10,000 dates x 4 bands x 5 x 5 tiles = 1,000,000 references
    python -m benchmarks.cube_bench --dates 1000      # smaller
    python -m benchmarks.cube_bench --tiles 16 --repeat 1   # 10,240,000 references
    python -m benchmarks.cube_bench --workers 2       # and the same commit by a LocalCluster of 2 workers

Peak RSS (the process's, so planning's too) is reported after planning and after the commits.

The plan is synthetic (sources are never read: committing and opening metadata touch no source), on a local
Icechunk repository. Each figure is the median of ``--repeat`` runs with its spread. With ``--workers``, a
``dask.distributed`` LocalCluster of that many worker processes (one thread each, started before the clock) writes
the references of the same plan (``write_plan(workers=...)``: blocks of ``BLOCK_REFS`` references into forks of
one session, merged and committed here), alternating with the commit in this process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from stackcube.cube import CubePlan
from stackcube.grid import grid_key
from stackcube.plan import build_array
from stackcube.search import Query
from stackcube.sources import Source
from stackcube.tiff import Geo, IfdManifest, Recipe, TiffManifest

TILE = 512


def synthetic_sources(dates: int, bands: int, tiles: int) -> list[Source]:
    size = tiles * TILE
    recipe = Recipe(
        compression=8,
        predictor=2,
        byteorder="<",
        dtype="uint16",
        bitspersample=16,
        samples=1,
        segment_length=TILE,
        segment_width=TILE,
        image_length=size,
        image_width=size,
        tiled=True,
        photometric=1,
    )
    geo = Geo(crs="EPSG:32735", transform=(10.0, 0.0, 499980.0, 0.0, -10.0, 9200020.0))
    offsets = (np.arange(tiles * tiles, dtype=np.uint64) * 100_000 + 16_384).reshape(1, tiles, tiles)
    lengths = np.full((1, tiles, tiles), 90_000, np.uint64)
    t0 = datetime(2017, 1, 1, tzinfo=UTC)
    out = []
    for d in range(dates):
        for b in range(bands):
            href = f"file:///data/s2/{d:05d}/B{b:02d}.tif"
            ifd = IfdManifest(
                path=(0,),
                role="image",
                level=0,
                shape=(1, size, size),
                dtype=np.dtype("uint16"),
                chunk_shape=(1, TILE, TILE),
                offsets=offsets,
                lengths=lengths,
                recipe=recipe,
                fill_value=0,
                geo=geo,
            )
            manifest = TiffManifest(
                href=href,
                etag=None,
                last_modified=datetime(2024, 1, 1, tzinfo=UTC),
                size=10**9,
                byteorder="<",
                bigtiff=False,
                ifds=(ifd,),
            )
            out.append(
                Source(
                    item_id=f"S2_{d:05d}",
                    asset=f"B{b:02d}",
                    band=f"B{b:02d}",
                    datetime=t0 + timedelta(hours=6 * d),
                    properties={"eo:cloud_cover": float(d % 100)},
                    manifest=manifest,
                )
            )
    return out


def main(argv: list[str] | None = None) -> None:
    from stackcube.api import open_cube
    from stackcube.store import write_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", type=int, default=10_000)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--tiles", type=int, default=5, help="tiles per side")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="also commit on a LocalCluster of this many workers")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    sources = synthetic_sources(args.dates, args.bands, args.tiles)
    key = grid_key(sources[0])
    array = build_array("EPSG32735_10m", key, sources)
    assert array is not None
    # the source table (every manifest, for refreshes) is committed with the references, as build_cube does
    plan = CubePlan(query=Query(catalog="synthetic"), arrays=(array,), sources=tuple(sources))
    planning = time.perf_counter() - start
    refs = array.n_chunks
    planned_rss = _peak_rss()

    client = _cluster(args.workers) if args.workers else None
    commits, opens, on_workers = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(tmp) / "cube.icechunk"
            start = time.perf_counter()
            write_plan(plan, repo)
            commits.append(time.perf_counter() - start)
            for _ in range(3):
                start = time.perf_counter()
                tree = open_cube(repo)
                assert tree[f"{array.name}/0"]["data"].shape == array.shape
                opens.append(time.perf_counter() - start)
            if client is not None:
                start = time.perf_counter()
                write_plan(plan, Path(tmp) / "workers.icechunk", workers=client)
                on_workers.append(time.perf_counter() - start)
                there = open_cube(Path(tmp) / "workers.icechunk")[f"{array.name}/0"]["data"]
                assert there.shape == array.shape

    def fmt(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"

    print(
        f"\n{refs:,} virtual references: {args.dates:,} dates x {args.bands} bands x {args.tiles}x{args.tiles} "
        f"tiles (planning the synthetic array took {planning:.1f} s)\n"
    )
    print("| step | median (min-max) | target |")
    print("|---|---:|---:|")
    print(f"| commit the plan to a local Icechunk repository | {fmt(commits)} | 10 s |")
    print(f"| open the cube's metadata (open_cube, lazy) | {fmt(opens)} | 1 s |")
    if client is not None:
        print(f"| commit the plan, references written by {args.workers} workers | {fmt(on_workers)} | |")
        client.close()
    print(f"\npeak RSS: {planned_rss:.2f} GB after planning, {_peak_rss():.2f} GB after the commits")


def _cluster(workers: int) -> Any:
    """A client of a LocalCluster of ``workers`` processes, one thread each, its workers up."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster, set_as_default=False)
    client.wait_for_workers(workers)
    return client


def _peak_rss() -> float:
    """This process's peak resident set size so far, in GB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


if __name__ == "__main__":
    main()
