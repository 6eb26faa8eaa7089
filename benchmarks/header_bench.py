"""Header benchmark: GETs per COG header, and headers per second at a fixed latency with 64 requests in flight.

Side by side, in alternating order, over several repetitions: stackcube's ``read_tiff_async``, async-tiff's
``TIFF.open`` (the reader virtual-tiff parses headers with), virtual-tiff's VirtualiZarr parser (header to
manifest store, every IFD), and rasterio/GDAL opening over ``/vsicurl/`` (the header read stackstac and odc-stac pay
on every open). Every URL is distinct, so no client cache helps.

    python -m benchmarks.header_bench                 # 20 ms latency, 64 in flight, 1000 headers x 5 repetitions
    python -m benchmarks.header_bench --latency-ms 0 --headers 300 --repeat 3

The server (``benchmarks.latency_server``) runs in its own process and counts requests and bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

FILES = {
    # name: (height, width, block, dtype) - a Sentinel-2 10 m band and a Landsat band, as COGs with overviews
    "s2_10m": (10980, 10980, 512, "uint16"),
    "landsat": (7821, 7951, 512, "uint16"),
}


def make_cogs(directory: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    for name, (height, width, block, dtype) in FILES.items():
        path = directory / f"{name}.tif"
        if path.exists():
            continue
        rows = np.arange(height, dtype=np.uint32)[:, None]
        with rasterio.open(
            path.with_suffix(".tmp.tif"),
            "w",
            driver="GTiff",
            height=height,
            width=width,
            count=1,
            dtype=dtype,
            crs="EPSG:32635",
            transform=from_origin(600000, 9500000, 10, 10),
            tiled=True,
            blockxsize=block,
            blockysize=block,
            compress="DEFLATE",
        ) as ds:
            for top in range(0, height, 2048):
                h = min(2048, height - top)
                data = ((rows[top : top + h] // 64 + np.arange(width)[None, :] // 64) % 7).astype(dtype)
                ds.write(data[None], window=rasterio.windows.Window(0, top, width, h))
        with rasterio.open(path.with_suffix(".tmp.tif")) as src:
            profile = src.profile | {
                "driver": "COG",
                "blocksize": block,
                "compress": "DEFLATE",
                "predictor": 2,
                "overview_resampling": "nearest",
            }
            for key in ("blockxsize", "blockysize", "tiled", "interleave"):
                profile.pop(key, None)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read())
        path.with_suffix(".tmp.tif").unlink()


class Server:
    def __init__(self, root: Path, latency_ms: float) -> None:
        from tests.services.nginx import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.latency_server", str(root), str(self.port), str(latency_ms)],
            cwd=Path(__file__).resolve().parents[1],
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)

    def cpu(self) -> float:
        """CPU seconds the server process has used (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_stats") as r:
            return json.loads(r.read())

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/_reset", method="POST")
        with urllib.request.urlopen(req):
            pass

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_stackcube(urls: list[str], inflight: int) -> None:
    from stackcube.settings import Settings
    from stackcube.tiff import read_tiff_async

    settings = Settings(max_concurrency=inflight)

    async def main() -> None:
        manifests = await asyncio.gather(*(read_tiff_async(u, settings=settings) for u in urls))
        assert all(m.ifds for m in manifests)

    asyncio.run(main())


def run_async_tiff(urls: list[str], inflight: int) -> None:
    from async_tiff import TIFF
    from obstore.store import HTTPStore

    base = urls[0].split("/", 3)
    store = HTTPStore.from_url("/".join(base[:3]), client_options={"allow_http": True})

    async def main() -> None:
        semaphore = asyncio.Semaphore(inflight)

        async def one(url: str):
            async with semaphore:
                return await TIFF.open(url.split("/", 3)[3], store=store)

        tiffs = await asyncio.gather(*(one(u) for u in urls))
        assert all(len(t.ifds) for t in tiffs)

    asyncio.run(main())


def run_virtual_tiff(urls: list[str], inflight: int) -> None:
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import HTTPStore
    from virtual_tiff import VirtualTIFF

    base = "/".join(urls[0].split("/", 3)[:3])
    registry = ObjectStoreRegistry({base: HTTPStore.from_url(base, client_options={"allow_http": True})})
    parser = VirtualTIFF(ifd=None, ifd_layout="nested")
    # the parser is synchronous (it blocks on zarr's event loop per file), so threads give it its concurrency
    with ThreadPoolExecutor(inflight) as pool:
        stores = list(pool.map(lambda u: parser(u, registry), urls))
    assert all(stores)


def run_rasterio(urls: list[str], inflight: int) -> None:
    import rasterio

    def one(url: str) -> int:
        with rasterio.open(url) as ds:
            return len(ds.overviews(1)) + ds.width

    env = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
        "GDAL_HTTP_MAX_RETRY": "0",
        "VSI_CACHE": "FALSE",
        "CPL_VSIL_CURL_CHUNK_SIZE": "16384",
    }
    with rasterio.Env(**env), ThreadPoolExecutor(inflight) as pool:
        results = list(pool.map(one, urls))
    assert all(results)


TOOLS: dict[str, Callable[[list[str], int], None]] = {
    "stackcube": run_stackcube,
    "async-tiff (virtual-tiff's reader)": run_async_tiff,
    "virtual-tiff (VirtualiZarr parser)": run_virtual_tiff,
    "rasterio / GDAL vsicurl": run_rasterio,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--headers", type=int, default=1000, help="headers per tool per repetition")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--cache", default=os.environ.get("STACKCUBE_BENCH_CACHE", str(Path(tempfile.gettempdir()) / "stackcube-bench"))
    )
    args = parser.parse_args(argv)

    root = Path(args.cache)
    root.mkdir(parents=True, exist_ok=True)
    make_cogs(root)
    server = Server(root, args.latency_ms)
    names = list(FILES)
    rates: dict[str, list[float]] = {t: [] for t in TOOLS}
    gets: dict[str, list[float]] = {t: [] for t in TOOLS}
    kib: dict[str, list[float]] = {t: [] for t in TOOLS}
    cpu: dict[str, list[float]] = {t: [] for t in TOOLS}
    server_cpu: dict[str, list[float]] = {t: [] for t in TOOLS}
    try:
        for tool, run in TOOLS.items():  # warm-up, untimed: imports, connection pools
            run([f"{server.url}/{names[0]}/warmup-{hash(tool) & 0xFFFF}-{i}.tif" for i in range(16)], args.inflight)
        for rep in range(args.repeat):
            order = list(TOOLS)[rep % len(TOOLS) :] + list(TOOLS)[: rep % len(TOOLS)]
            for tool in order:
                urls = [
                    f"{server.url}/{names[i % len(names)]}/{rep}-{hash(tool) & 0xFFFF}-{i}.tif"
                    for i in range(args.headers)
                ]
                server.reset()
                served, used = server.cpu(), _cpu()
                start = time.perf_counter()
                TOOLS[tool](urls, args.inflight)
                elapsed = time.perf_counter() - start
                cpu[tool].append((_cpu() - used) / args.headers)
                server_cpu[tool].append((server.cpu() - served) / args.headers)
                stats = server.stats()
                rates[tool].append(args.headers / elapsed)
                gets[tool].append(stats.get("GET", 0) / args.headers)
                kib[tool].append(stats.get("bytes", 0) / args.headers / 1024)
                print(
                    f"  rep {rep + 1} {tool}: {args.headers / elapsed:,.0f} headers/s, "
                    f"{stats.get('GET', 0) / args.headers:.2f} GETs + {stats.get('HEAD', 0) / args.headers:.2f} "
                    f"HEADs per header",
                    file=sys.stderr,
                )
    finally:
        server.close()

    floor = args.latency_ms / 1000 / args.inflight
    print(
        f"\nCOG headers ({', '.join(names)}), {args.latency_ms:g} ms latency per request, {args.inflight} in flight, "
        f"{os.cpu_count()} cores, {args.headers} headers x {args.repeat} repetitions"
    )
    if floor > 0:
        print(f"latency floor at one GET per header: {1 / floor:,.0f} headers/s\n")
    print(
        "| reader | GETs per header | KiB per header | headers/s (median) | spread (min-max) "
        "| reader CPU per header | headers/s per core | server CPU per header |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for tool in TOOLS:
        r = rates[tool]
        used = statistics.median(cpu[tool])
        print(
            f"| {tool} | {statistics.median(gets[tool]):.2f} | {statistics.median(kib[tool]):.1f} | "
            f"{statistics.median(r):,.0f} | {min(r):,.0f}-{max(r):,.0f} | {used * 1e3:.2f} ms | "
            f"{1 / used:,.0f} | {statistics.median(server_cpu[tool]) * 1e3:.2f} ms |"
        )
    print(
        "\nreader CPU: user + system time of this process (its HTTP threads included) per header; the server "
        "(another process) shares the machine's cores"
    )


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


if __name__ == "__main__":
    main()
