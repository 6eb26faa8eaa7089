"""One tool, one workload, in a fresh process (cold: no cache, no open file, no warm connection).

    python -m benchmarks.compare_worker '{"tool": "stackstac", "workload": "window", ...}'

Prints one JSON line: seconds (from before opening anything to the values in hand), the SHA-256 and shape of the
values as uint16 (time, band, y, x), and the process's peak RSS. Only the standard library and NumPy are imported
at the top, so the same file runs in the separate lazycogs and rasteret environments.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 32
"""Requests (or dask threads) in flight for every tool: I/O-bound reads, the same cap for all."""

GDAL_ENV = {
    # the settings stackstac and odc-stac recommend for COGs over HTTP, the same for both
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "VSI_CACHE": "TRUE",
}


def _dask_threads() -> None:
    import dask

    dask.config.set(scheduler="threads", num_workers=THREADS)


def _items(spec: dict[str, Any]) -> list[Any]:
    import pystac

    features = json.loads(Path(spec["items"]).read_text())["features"]
    return [pystac.Item.from_dict(f) for f in features]


def _repo(spec: dict[str, Any]) -> str:
    """Where the cube's repository is: on local disk, or (the -s3 configurations) on the S3 server."""
    return str(spec["s3_repo"] if spec["tool"].endswith("-s3") else spec["repo"])


def read_stackcube(spec: dict[str, Any]) -> np.ndarray:
    import zarr

    import stackcube

    zarr.config.set({"async.concurrency": THREADS})
    stackcube.settings.set(max_concurrency=THREADS)
    _dask_threads()
    chunks = False if "nodask" in spec["tool"] else None
    data = stackcube.open_dataarray(_repo(spec), spec["array"], mask_and_scale=False, chunks=chunks)
    r0, r1, c0, c1 = spec["window"]
    sel = data.isel(time=spec["times"], y=slice(r0, r1), x=slice(c0, c1)).sel(band=spec["bands"])
    return sel.values


def read_stackstac(spec: dict[str, Any]) -> np.ndarray:
    import stackstac
    from rasterio.enums import Resampling

    _dask_threads()
    stack = stackstac.stack(
        _items(spec),
        assets=spec["bands"],
        epsg=spec["epsg"],
        resolution=spec["resolution"],
        bounds=tuple(spec["bounds"]),
        snap_bounds=False,
        chunksize=spec["tile"],
        dtype="uint16",
        fill_value=np.uint16(0),
        rescale=False,
        resampling=Resampling.nearest,
        gdal_env=stackstac.DEFAULT_GDAL_ENV.updated(GDAL_ENV),
    )
    return stack.isel(time=spec["times"]).values


def read_odc_stac(spec: dict[str, Any]) -> np.ndarray:
    import odc.stac
    from affine import Affine
    from odc.geo.geobox import GeoBox

    _dask_threads()
    r0, r1, c0, c1 = spec["window"]
    minx, _, _, maxy = spec["bounds"]
    res = spec["resolution"]
    geobox = GeoBox((r1 - r0, c1 - c0), Affine(res, 0.0, minx, 0.0, -res, maxy), f"EPSG:{spec['epsg']}")
    ds = odc.stac.load(
        _items(spec),
        bands=spec["bands"],
        geobox=geobox,
        chunks={"x": spec["tile"], "y": spec["tile"]},
        groupby="id",
        resampling="nearest",
        dtype="uint16",
        nodata=0,
    )
    ds = ds.sortby("time")
    return ds.isel(time=spec["times"]).to_dataarray("band").transpose("time", "band", "y", "x").values


def _duckdb_client() -> Any:
    """rustac's DuckDB with the spatial, icu and parquet extensions from PyPI wheels (DuckDB would download them)."""
    import importlib
    import tempfile

    import rustac

    directory = Path(tempfile.mkdtemp())
    names = ["spatial", "icu", "parquet"]
    for name in names:
        package = Path(importlib.import_module(f"duckdb_extension_{name}").__file__ or "").parent
        for built in package.glob("extensions/v*/*.duckdb_extension"):
            target = directory / built.parent.name / "linux_amd64" / built.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(built)
    return rustac.DuckdbClient(extension_directory=str(directory), install_extensions=False, extensions=names)


def _lazycogs_store(spec: dict[str, Any]) -> dict[str, Any]:
    """lazycogs takes an http://127.0.0.1:port URL for an Azurite emulator: give it the HTTP store and paths."""
    from urllib.parse import urlparse

    from obstore.store import HTTPStore

    features = json.loads(Path(spec["items"]).read_text())["features"]
    href = urlparse(features[0]["assets"][spec["bands"][0]]["href"])
    store = HTTPStore.from_url(f"{href.scheme}://{href.netloc}", client_options={"allow_http": True})
    return {"store": store, "path_from_href": lambda h: urlparse(h).path.lstrip("/")}


def read_lazycogs(spec: dict[str, Any]) -> np.ndarray:
    import lazycogs

    data = lazycogs.open(
        spec["parquet"],
        bbox=tuple(spec["bounds"]),
        crs=f"EPSG:{spec['epsg']}",
        resolution=spec["resolution"],
        bands=spec["bands"],
        time_period=None,
        dtype="uint16",
        nodata=0,
        max_concurrent_reads=THREADS,
        duckdb_client=_duckdb_client(),
        **_lazycogs_store(spec),
    )
    return data.isel(time=spec["times"]).transpose("time", "band", "y", "x").values


def _scratch(spec: dict[str, Any], name: str) -> str:
    if spec.get("prepare"):
        return spec[name]
    import tempfile

    Path(spec["scratch"]).mkdir(parents=True, exist_ok=True)
    return str(Path(tempfile.mkdtemp(dir=spec["scratch"])) / Path(spec[name]).name)


def oneoff_stackcube(spec: dict[str, Any]) -> np.ndarray:
    import stackcube

    if spec["tool"].endswith("-s3"):
        repo = spec["s3_repo"] if spec.get("prepare") else f"{spec['s3_repo']}-{os.getpid()}-{time.time_ns()}"
    else:
        repo = _scratch(spec, "repo")
    cube = stackcube.build_cube(spec["items"], assets=spec["bands"], repo=repo, progress=False)
    return np.zeros((len(cube.plan.sources),), np.uint16)


def oneoff_stackstac(spec: dict[str, Any]) -> np.ndarray:
    import stackstac

    stack = stackstac.stack(_items(spec), assets=spec["bands"], epsg=spec["epsg"], resolution=spec["resolution"])
    return np.zeros((stack.shape[0],), np.uint16)


def oneoff_odc_stac(spec: dict[str, Any]) -> np.ndarray:
    import odc.stac

    ds = odc.stac.load(_items(spec), bands=spec["bands"], chunks={"x": spec["tile"], "y": spec["tile"]})
    return np.zeros((ds.sizes["time"],), np.uint16)


def oneoff_lazycogs(spec: dict[str, Any]) -> np.ndarray:
    import lazycogs
    import rustac

    features = json.loads(Path(spec["items"]).read_text())["features"]
    parquet = _scratch(spec, "parquet")
    rustac.write_sync(parquet, {"type": "FeatureCollection", "features": features})
    data = lazycogs.open(
        parquet,
        bbox=tuple(spec["bounds"]),
        crs=f"EPSG:{spec['epsg']}",
        resolution=spec["resolution"],
        bands=spec["bands"],
        duckdb_client=_duckdb_client(),
        **_lazycogs_store(spec),
    )
    return np.zeros((data.sizes["time"],), np.uint16)


def _rasteret_backend(spec: dict[str, Any]) -> Any:
    """rasteret's obstore backend for plain http:// (its default one builds stores that refuse http)."""
    from urllib.parse import urlparse

    from obstore.store import HTTPStore
    from rasteret.cloud import ObstoreBackend

    features = json.loads(Path(spec["items"]).read_text())["features"]
    href = urlparse(features[0]["assets"][spec["bands"][0]]["href"])
    root = f"{href.scheme}://{href.netloc}/"
    return ObstoreBackend(HTTPStore.from_url(root, client_options={"allow_http": True}), url_prefix=root)


def oneoff_rasteret(spec: dict[str, Any]) -> np.ndarray:
    import rasteret
    import rustac

    features = json.loads(Path(spec["items"]).read_text())["features"]
    table = _scratch(spec, "rasteret")
    rustac.write_sync(table + ".parquet", {"type": "FeatureCollection", "features": features})
    collection = rasteret.build_from_table(
        table + ".parquet",
        workspace_dir=table,
        enrich_cog=True,
        band_codes=spec["bands"],
        force=True,
        backend=_rasteret_backend(spec),
    )
    return np.zeros((collection.to_table(columns=["id"]).num_rows,), np.uint16)


def read_rasteret(spec: dict[str, Any]) -> np.ndarray:
    import rasteret

    features = json.loads(Path(spec["items"]).read_text())["features"]
    ids = [f["id"] for f in sorted(features, key=lambda f: f["properties"]["datetime"])]
    collection = rasteret.load(spec["rasteret"])
    res = float(spec["resolution"])
    return collection.read_window(
        record_ids=[ids[t] for t in spec["times"]],
        bounds=tuple(spec["bounds"]),
        res=(res, res),
        bands=spec["bands"],
        target_crs=spec["epsg"],
        group_by="id",
        max_concurrent=THREADS,
        backend=_rasteret_backend(spec),
    )


READERS = {
    "stackcube": read_stackcube,
    "stackcube-nodask": read_stackcube,
    "stackcube-s3": read_stackcube,
    "stackcube-nodask-s3": read_stackcube,
    "stackstac": read_stackstac,
    "odc-stac": read_odc_stac,
    "lazycogs": read_lazycogs,
    "rasteret": read_rasteret,
}

ONEOFF = {
    "stackcube": oneoff_stackcube,
    "stackcube-s3": oneoff_stackcube,
    "stackstac": oneoff_stackstac,
    "odc-stac": oneoff_odc_stac,
    "lazycogs": oneoff_lazycogs,
    "rasteret": oneoff_rasteret,
}


_STACKCUBE = ["stackcube", "stackcube.api", "zarr", "icechunk", "xarray", "dask.array"]
# stackcube.api: ``import stackcube`` no longer loads the pipeline (stackcube.open_dataarray imports it on first
# use, 0.4-0.9 s on 2 cores), so it is named here, as stackstac's and odc-stac's own modules are; cold starts with
# the imports are benchmarks/start_bench.py's
# (xarray imports dask.array itself where dask is installed, on its first array)
IMPORTS = {
    "stackcube": _STACKCUBE,
    "stackcube-nodask": _STACKCUBE,
    "stackcube-s3": _STACKCUBE,
    "stackcube-nodask-s3": _STACKCUBE,
    "stackstac": ["stackstac", "rasterio", "pystac", "dask.array"],
    "odc-stac": ["odc.stac", "odc.geo.geobox", "rasterio", "pystac", "dask.array"],
    "lazycogs": ["lazycogs", "rustac"],
    "rasteret": ["rasteret", "rustac"],
}
"""Imported before the clock starts: a notebook has its libraries loaded; the data is what is cold."""


def main() -> None:
    import importlib

    spec = json.loads(sys.argv[1])
    os.environ.update(GDAL_ENV)
    if spec["tool"].endswith("-s3"):
        os.environ.update(spec["s3_env"])
    for module in IMPORTS[spec["tool"]]:
        importlib.import_module(module)
    call = (ONEOFF if spec["workload"] == "oneoff" else READERS)[spec["tool"]]
    start = time.perf_counter()
    if spec.get("profile"):
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        values = profiler.runcall(call, spec)
        seconds = time.perf_counter() - start
        stats = pstats.Stats(profiler, stream=sys.stderr)
        order, lines = os.environ.get("PROFILE_SORT", "tottime"), int(os.environ.get("PROFILE_LINES", "25"))
        stats.sort_stats(order).print_stats(lines)
    else:
        values = call(spec)
        seconds = time.perf_counter() - start
    values = np.ascontiguousarray(np.asarray(values).astype(np.uint16))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
                "shape": list(values.shape),
                "peak_rss": peak,
            }
        )
    )


if __name__ == "__main__":
    main()
