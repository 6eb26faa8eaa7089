"""Opening a cube whose repository is on object storage: repository requests and wall time, per way of opening.

    python -m benchmarks.open_bench                    # 5 dates, 20 ms per request, 7 repetitions
    python -m benchmarks.open_bench --latency-ms 50

The repository lives on the test bed's S3 server (moto) behind the latency proxy, which counts the requests; the
sources are local files, so only the repository's cost shows. Each call runs in this process on a fresh
repository object (nothing cached between calls). Reported: the requests at the proxy by kind (repository info,
branch, configuration, snapshot, manifests) and the wall time (median and spread).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _kinds(heads: list[bytes]) -> Counter[str]:
    found: Counter[str] = Counter()
    for head in heads:
        parts = head.split(b" ")[1].decode().split("?")[0].split("/")
        found[parts[3] if len(parts) > 3 else "/".join(parts)] += 1
    return found


@contextlib.contextmanager
def repositories_on_s3(latency_ms: float) -> Iterator[tuple[Path, Any]]:
    """(a scratch folder, the latency proxy): moto's S3 server with the bucket ``repos``, behind the test bed's proxy
    adding ``latency_ms`` a request and recording each, and the environment (stackcube's settings read again)
    pointing S3 at the proxy."""
    from tests.services.proxy import run_proxy
    from tests.services.s3 import run_moto

    work = Path(tempfile.mkdtemp())
    (work / "moto").mkdir()
    with run_moto(work / "moto") as server:
        server.client().create_bucket(Bucket="repos")
        with run_proxy(server.endpoint, record=True, latency=latency_ms / 1000) as proxy:
            os.environ.update({**server.env(), "AWS_ENDPOINT_URL": proxy.url})
            import stackcube

            stackcube.settings.reset()
            yield work, proxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from tests.twins import series

    with repositories_on_s3(args.latency_ms) as (work, proxy):
        import stackcube

        repo = "s3://repos/bench"
        items = series(work / "sources", (work / "sources").as_uri(), args.dates)
        stackcube.build_cube(items, repo=repo, progress=False)

        def tile() -> Any:
            data = stackcube.open_dataarray(repo, mask_and_scale=False)
            return data.isel(time=0, band=0, y=slice(0, 10), x=slice(0, 10)).values

        calls: dict[str, Callable[[], Any]] = {
            "open_dataarray": lambda: stackcube.open_dataarray(repo),
            "open_dataarray + one tile": tile,
            "open_cube": lambda: stackcube.open_cube(repo),
        }
        print(
            f"\nrepository on S3 (moto) behind a {args.latency_ms:g} ms proxy, a {args.dates}-date cube, sources "
            f"local; {args.repeat} repetitions\n"
        )
        print("| call | repository requests | of which manifests | wall time, median (min-max) |")
        print("|---|---:|---:|---:|")
        for name, call in calls.items():
            times, kinds = [], Counter[str]()
            for _ in range(args.repeat):
                proxy.heads.clear()
                started = time.monotonic()
                call()
                times.append(time.monotonic() - started)
                kinds = _kinds(proxy.heads)
            print(
                f"| {name} | {sum(kinds.values())} | {kinds['manifests']} | {statistics.median(times):.2f} s "
                f"({min(times):.2f}-{max(times):.2f}) |"
            )


if __name__ == "__main__":
    main()
