"""A static-file HTTP server with Range and ETag (aiohttp's FileResponse), a fixed added latency, and counters.

Run in its own process: ``python -m benchmarks.latency_server DIR PORT LATENCY_MS``. Any path ``/<name>/<n>.tif``
serves ``DIR/<name>.tif`` (so one file can stand for many distinct URLs). ``GET /_stats`` returns request and byte
counts as JSON; ``POST /_reset`` zeroes them. The latency is added before each response, as a distant object
store would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

from aiohttp import web


def make_app(root: Path, latency: float) -> web.Application:
    stats: Counter[str] = Counter()

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = root / f"{name}.tif"
        if not path.is_file():
            raise web.HTTPNotFound
        await asyncio.sleep(latency)
        stats[request.method] += 1
        if "Range" in request.headers:
            stats["ranged"] += 1
        response = web.FileResponse(path)
        response.enable_compression = lambda *a, **k: None  # type: ignore[method-assign]
        return response

    @web.middleware
    async def count_bytes(request: web.Request, handler):  # type: ignore[no-untyped-def]
        response = await handler(request)
        if request.path.startswith("/_"):
            return response
        rng = request.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start, _, stop = rng[6:].partition("-")
            size = (root / f"{request.match_info.get('name', '')}.tif").stat().st_size
            end = min(int(stop) if stop else size - 1, size - 1)
            stats["bytes"] += max(0, end - int(start or 0) + 1)
        elif request.method == "GET":
            stats["bytes"] += (root / f"{request.match_info['name']}.tif").stat().st_size
        return response

    async def get_stats(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(dict(stats)), content_type="application/json")

    async def reset(_: web.Request) -> web.Response:
        stats.clear()
        return web.Response(text="{}")

    app = web.Application(middlewares=[count_bytes])
    app.router.add_get("/_stats", get_stats)
    app.router.add_post("/_reset", reset)
    app.router.add_route("*", "/{name}/{n}.tif", serve)
    return app


def main() -> None:
    root, port, latency_ms = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    web.run_app(
        make_app(root, latency_ms / 1000), host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024
    )


if __name__ == "__main__":
    main()
