"""Header reads on a Dask cluster against one process: the stage ``build_cube(client=...)`` spreads over workers.

    python -m benchmarks.distributed_bench                     # 20,000 headers, 20 ms latency, 2 repetitions
    python -m benchmarks.distributed_bench --headers 2000 --repeat 3

Every URL is distinct (``benchmarks.latency_server`` serves one of header_bench's synthetic COGs, a Sentinel-2
10 m band or a Landsat band with overviews, under many names, in its own process, counting requests). Side by
side in one run: this process reading every header (stackcube's ``read_headers``, 64 in flight), and a
``dask.distributed`` LocalCluster of 1 and of 2 worker processes (two threads each) reading them in stackcube's
batches (``sources._read_on_workers``, each worker 64 in flight), the cluster started before the clock. The
manifests must be the same. Reported: wall time (median, spread), headers per second, GETs at the server.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headers", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from benchmarks.header_bench import FILES, Server, make_cogs
    from stackcube import _sync
    from stackcube.settings import Settings
    from stackcube.sources import _read_on_workers, read_headers

    cache = Path(tempfile.gettempdir()) / "stackcube-header-bench"
    cache.mkdir(exist_ok=True)
    make_cogs(cache)
    server = Server(cache, args.latency_ms)
    names = list(FILES)
    urls = [f"{server.url}/{names[n % len(names)]}/{n}.tif" for n in range(args.headers)]
    settings = Settings(max_concurrency=64)
    times: dict[str, list[float]] = {}
    gets: dict[str, list[int]] = {}
    reference: list[dict[str, Any]] | None = None

    def record(name: str, call: Any) -> None:
        nonlocal reference
        server.reset()
        start = time.perf_counter()
        manifests = call()
        times.setdefault(name, []).append(time.perf_counter() - start)
        gets.setdefault(name, []).append(server.stats().get("GET", 0))
        found = [m.to_dict() for m in manifests]
        if reference is None:
            reference = found
        assert found == reference, f"{name}: other manifests than the first configuration's"

    try:
        clusters = {
            n: LocalCluster(n_workers=n, threads_per_worker=2, processes=True, dashboard_address=":0") for n in (1, 2)
        }
        clients = {n: Client(cluster) for n, cluster in clusters.items()}
        for rep in range(args.repeat):
            order = ["one process", "cluster, 1 worker", "cluster, 2 workers"]
            for name in order[rep % 3 :] + order[: rep % 3]:
                if name == "one process":
                    record(name, lambda: _sync.run(read_headers(urls, settings)))
                else:
                    client = clients[1 if "1 worker" in name else 2]
                    record(name, lambda c=client: _read_on_workers(c, urls, settings, lambda _: None))
        for client in clients.values():
            client.close()
        for cluster in clusters.values():
            cluster.close()
    finally:
        server.close()

    print(
        f"\n{args.headers} distinct COG headers, {args.latency_ms:g} ms per request, 64 in flight per process, "
        f"{args.repeat} repetitions in alternating order, the same manifests from every configuration\n"
    )
    print("| configuration | wall time, median (min-max) | headers/s | GETs |")
    print("|---|---:|---:|---:|")
    base = statistics.median(times["one process"])
    for name, values in times.items():
        median = statistics.median(values)
        speed = f" ({base / median:.2f}x)" if name != "one process" else ""
        print(
            f"| {name} | {median:.2f} s ({min(values):.2f}-{max(values):.2f}){speed} | {args.headers / median:,.0f} "
            f"| {statistics.median(gets[name]):g} |"
        )


if __name__ == "__main__":
    main()
