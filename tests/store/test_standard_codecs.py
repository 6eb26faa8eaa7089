"""Arrays written with Zarr's own codecs (store.write.data_array, tiff.standard_codecs): their metadata names no
stackcube codec, a process without stackcube reads them from the Icechunk repository (zarr-python and icechunk
alone) as rasterio reads the sources, and unions of such members read as they did with ``stackcube.tiff``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import stackcube
import stackcube.union._array
from stackcube.store import write
from tests.conftest import CORPUS, require
from tests.tiff.test_conformance import assert_identical
from tests.union.scenes import expected_union, make_items

STANDARD = {"bytes", "transpose", "zstd", "numcodecs.zlib"}

# corpus files served by nginx under /corpus/: the encoding each gets (IFD 0 and its overviews)
SOURCES = {
    "rio-tiler/cog_rgba.tif": ["transpose", "bytes", "numcodecs.zlib"],  # chunky uint8, 4 samples, Deflate
    "rio-tiler/cog_scale_epsg4326.tif": ["transpose", "bytes"],  # chunky int16, 2 samples, uncompressed
    "rio-tiler/scene_band1.tif": ["bytes", "numcodecs.zlib"],  # uint16 Deflate, with an overview
    "rio-tiler/web.tif": ["stackcube.tiff"],  # Deflate with a horizontal predictor: stays stackcube.tiff
}
ZSTD_BIG_ENDIAN = "standard/zstd-big-endian.tif"
"""Written here by GDAL: float32, Zstandard, big-endian (no corpus COG is)."""


def _item(n: int, href: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"source-{n}",
        "geometry": None,
        "properties": {"datetime": f"2024-06-0{n + 1}T10:00:00Z"},
        "links": [],
        "assets": {"data": {"href": href, "type": "image/tiff; application=geotiff"}},
    }


@pytest.fixture(scope="module")
def cube(nginx, tmp_path_factory):
    """(repo, {source file: its array's name}): one cube of the sources above, served over HTTP by nginx."""
    require(CORPUS.is_dir(), f"the corpus is missing at {CORPUS}")
    written = nginx.root / ZSTD_BIG_ENDIAN
    written.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(3).normal(0, 100, (1, 200, 300)).astype("float32")
    data[0, :10, :10] = -9999
    with rasterio.open(
        written,
        "w",
        driver="GTiff",
        width=300,
        height=200,
        count=1,
        dtype="float32",
        nodata=-9999,
        crs="EPSG:32635",
        transform=from_origin(600000, 9500000, 10, 10),
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress="ZSTD",
        endianness="BIG",
    ) as ds:
        ds.write(data)
    files = {name: CORPUS / "tiff" / name for name in SOURCES} | {ZSTD_BIG_ENDIAN: written}
    hrefs = {name: f"{nginx.url}/corpus/tiff/{name}" for name in SOURCES} | {
        ZSTD_BIG_ENDIAN: f"{nginx.url}/{ZSTD_BIG_ENDIAN}"
    }
    items = [_item(n, href) for n, href in enumerate(hrefs.values())]
    repo = tmp_path_factory.mktemp("standard") / "cube.icechunk"
    built = stackcube.build_cube(items, repo=repo, progress=False)
    names = {}
    for name, href in hrefs.items():
        (array,) = [a for a in built.plan.arrays if href in set(a.sources.href)]
        names[name] = array.name
    assert len(set(names.values())) == len(names)  # each source its own array
    return repo, names, files


def _codecs(repo: Path, path: str) -> list[str]:
    import icechunk
    import zarr

    storage = icechunk.local_filesystem_storage(str(repo))
    root = zarr.open_group(icechunk.Repository.open(storage).readonly_session("main").store, mode="r")
    return [c["name"] for c in root[path].metadata.to_dict()["codecs"]]


@pytest.mark.corpus
@pytest.mark.network
def test_qualifying_sources_make_arrays_of_standard_codecs_and_others_stay_tiff(cube) -> None:
    repo, names, _ = cube
    for name, codecs in [*SOURCES.items(), (ZSTD_BIG_ENDIAN, ["bytes", "zstd"])]:
        assert _codecs(repo, f"{names[name]}/0/data") == codecs, name
    assert _codecs(repo, f"{names['rio-tiler/scene_band1.tif']}/1/data") == ["bytes", "numcodecs.zlib"]  # overview
    # and stackcube reads them all as rasterio does
    tree = stackcube.open_cube(repo, mask_and_scale=False)
    for name, path in cube[2].items():
        with rasterio.open(path) as ds:
            expected = ds.read()
        assert_identical(tree[f"{names[name]}/0"]["data"].values[0], expected, name)


READER = r"""
import json, sys

class NoStackcube:  # a reader without stackcube: its modules cannot be found, however it is installed here
    def find_spec(self, name, path=None, target=None):
        if name == "stackcube" or name.startswith("stackcube."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoStackcube())
try:
    import stackcube
except ImportError:
    pass
else:
    raise SystemExit("stackcube can be imported: this is not a reader without it")

import icechunk
import numpy as np
import zarr

repo, out, paths = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
storage = icechunk.local_filesystem_storage(repo)
containers = icechunk.Repository.fetch_config(storage).virtual_chunk_containers  # as the cube declares them
access = {container.url_prefix: None for container in containers.values()}  # authorised, anonymous HTTP
session = icechunk.Repository.open(storage, authorize_virtual_chunk_access=access).readonly_session("main")
root = zarr.open_group(session.store, mode="r", zarr_format=3)
values, errors = {}, {}
for n, path in enumerate(paths):
    try:
        values[str(n)] = root[path][...]
    except Exception as exc:
        errors[path] = f"{type(exc).__name__}: {exc}"
np.savez(out, **values)
loaded = sorted(m for m in sys.modules if m == "stackcube" or m.startswith("stackcube."))
print(json.dumps({"errors": errors, "stackcube_modules": loaded, "prefixes": sorted(access)}))
"""


@pytest.mark.corpus
@pytest.mark.network
def test_a_process_without_stackcube_reads_them_as_rasterio_reads_the_sources(cube, tmp_path) -> None:
    """The key property: zarr-python and icechunk alone, in a process where stackcube cannot be imported, open
    the repository read-only (the virtual chunk containers the cube declares authorised) and read level 0's data
    arrays; their raw values are rasterio's, bit for bit. The array of ``stackcube.tiff`` fails there, which shows
    the process really has no stackcube."""
    repo, names, files = cube
    standard = [name for name, codecs in SOURCES.items() if codecs != ["stackcube.tiff"]] + [ZSTD_BIG_ENDIAN]
    paths = [f"{names[name]}/0/data" for name in standard]
    tiff_only = f"{names['rio-tiler/web.tif']}/0/data"
    out = tmp_path / "values.npz"
    done = subprocess.run(
        [sys.executable, "-I", "-c", READER, str(repo), str(out), json.dumps([*paths, tiff_only])],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["stackcube_modules"] == []
    assert report["prefixes"]  # the HTTP host the sources are on
    assert list(report["errors"]) == [tiff_only]  # no stackcube, no stackcube.tiff codec
    assert "No module named 'stackcube'" in report["errors"][tiff_only]  # zarr looked for the codec's module
    with np.load(out) as read:
        assert len(read.files) == len(standard)
        for n, name in enumerate(standard):
            with rasterio.open(files[name]) as ds:
                expected = ds.read()
            assert_identical(read[str(n)][0], expected, name)


# --- unions of members with Zarr's own codecs ---------------------------------------------------------------------
def _union(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, *, tiff: bool):
    """A union of the union tests' scenes (tiled uint16 Deflate, no predictor: standard codecs), built into
    ``name``; with ``tiff``, its members written with ``stackcube.tiff`` as before."""
    scenes = tmp_path / name.removesuffix(".icechunk")
    scenes.mkdir()
    items = make_items(scenes, scenes.as_posix())
    repo = tmp_path / name
    with monkeypatch.context() as patch:
        if tiff:
            patch.setattr(write, "standard_codecs", lambda *args, **kwargs: None)
        (union,) = stackcube.build_cube(items, repo=repo, progress=False).plan.unions
    return repo, union, scenes


@pytest.mark.parametrize("sync", [True, False], ids=["sync-codecs", "codec-pipeline"])
def test_a_union_of_standard_members_reads_as_one_of_tiff_members(tmp_path, monkeypatch, sync) -> None:
    """Member tiles fetched by merged ranged GETs decode through the members' Zarr codecs (each codec's synchronous
    decode; or, where zarr has none, the codec pipeline), bit for bit as through ``stackcube.tiff`` before."""
    standard_repo, union, scenes = _union(tmp_path, "standard.icechunk", monkeypatch, tiff=False)
    tiff_repo, _, _ = _union(tmp_path, "tiff.icechunk", monkeypatch, tiff=True)
    for member in union.members:
        assert set(_codecs(standard_repo, f"{member}/0/data")) <= STANDARD
        assert _codecs(tiff_repo, f"{member}/0/data") == ["stackcube.tiff"]
    expected, _ = expected_union(scenes)
    tiff_values = stackcube.open_dataarray(tiff_repo, union.name, mask_and_scale=False).values
    assert_identical(tiff_values, expected, "stackcube.tiff members")
    calls: dict[str, int] = {"decode_segment": 0, "_decode_with_zarr": 0}
    for name in calls:
        real = getattr(stackcube.union._array, name)

        def counted(*args: Any, _name: str = name, _real: Any = real, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(stackcube.union._array, name, counted)
    in_thread = stackcube.union._array._decode_in_thread
    answers: list[bool] = []

    def asked(codecs: Any) -> bool:  # without sync: as zarr-python before 3.2, whose codecs have no synchronous decode
        answers.append(in_thread(codecs) if sync else False)
        return answers[-1]

    monkeypatch.setattr(stackcube.union._array, "_decode_in_thread", asked)
    for chunks in (None, False):  # with dask, and NumPy-backed
        data = stackcube.open_dataarray(standard_repo, union.name, mask_and_scale=False, chunks=chunks)
        assert_identical(data.values, tiff_values, f"standard members, chunks={chunks}")
        window = data.isel(time=0, y=slice(90, 170), x=slice(150, 260)).values
        assert_identical(window, tiff_values[0, :, 90:170, 150:260], "a window across members")
    assert calls["_decode_with_zarr"] > 0  # the merged reads decoded member tiles themselves
    assert len(answers) == calls["_decode_with_zarr"]
    if sync:  # each codec's own decode in the reading thread (without: the pipeline, as the stub makes it)
        assert all(answers)
    assert calls["decode_segment"] == 0  # none through stackcube.tiff's decoder


# --- cubes written with stackcube.tiff before ------------------------------------------------------------------
def _series(root: Path, dates: int, compress: str = "deflate") -> Path:
    """``dates`` uint16 tiled GeoTIFFs on one grid, Deflate without predictor (or ``compress``: either way Zarr's own
    codecs describe them), written where they are not yet, and an ItemCollection of the first ``dates``: the
    catalog a cube is built from and refreshed against."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    profile = {
        "driver": "GTiff",
        "height": 256,
        "width": 256,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(500_000, 4_000_000, 10, 10),
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
        "compress": compress,
        "nodata": 0,
    }
    items = []
    for n in range(dates):
        path = root / f"d{n}.tif"
        if not path.exists():
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(rng.integers(1, 4000, (1, 256, 256), dtype="uint16"))
        items.append(_item(n, path.as_posix()))
    catalog = root / "items.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return catalog


def test_a_cube_written_with_the_tiff_codec_grows_by_appending_and_keeps_it(tmp_path, monkeypatch) -> None:
    """A cube written before Zarr's own codecs, of sources they now describe: its next refresh appends the new date
    to the ``stackcube.tiff`` array as it is (not a rewrite of the whole array), and reads as rasterio does."""
    catalog = _series(tmp_path / "series", 2)
    repo = tmp_path / "cube.icechunk"
    with monkeypatch.context() as patch:
        patch.setattr(write, "standard_codecs", lambda *args, **kwargs: None)
        (array,) = stackcube.build_cube(str(catalog), repo=repo, progress=False).plan.arrays
    assert _codecs(repo, f"{array.name}/0/data") == ["stackcube.tiff"]
    _series(tmp_path / "series", 3)
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.added == ("source-2",)
    assert report.appended
    assert _codecs(repo, f"{array.name}/0/data") == ["stackcube.tiff"]
    values = stackcube.open_dataarray(repo, mask_and_scale=False, chunks=False).values
    for n in range(3):
        with rasterio.open(tmp_path / "series" / f"d{n}.tif") as src:
            np.testing.assert_array_equal(values[n, 0], src.read(1))
    fresh = tmp_path / "fresh.icechunk"  # the same sources built now: Zarr's own codecs
    stackcube.build_cube(str(catalog), repo=fresh, progress=False)
    assert _codecs(fresh, f"{array.name}/0/data") == ["bytes", "numcodecs.zlib"]


def _longer_segments(path: Path) -> None:
    """Make each tile's byte count 2 longer than the tile (a writer that pads its segments; GDAL still reads it)."""
    import tifffile

    with path.open("ab") as f:
        f.write(b"\0" * 16)  # the last tile's longer count stays inside the file
    with tifffile.TiffFile(path, mode="r+") as tif:
        tag = tif.pages[0].tags["TileByteCounts"]
        tag.overwrite(tuple(v + 2 for v in tag.value))


def test_uncompressed_sources_of_longer_segments_keep_the_tiff_codec_at_build_and_refresh(tmp_path) -> None:
    """``bytes`` refuses a segment longer than the chunk, where ``stackcube.tiff`` reads its first bytes as GDAL
    does: such a source keeps its array on ``stackcube.tiff``, whether it is there at the build or comes with a
    refresh of an array of Zarr's own codecs (which is then written again), and every date reads as rasterio."""
    root = tmp_path / "series"
    _series(root, 3, compress="none")
    _longer_segments(root / "d2.tif")
    catalog = _series(root, 2, compress="none")  # the padded third comes with the refresh
    repo = tmp_path / "cube.icechunk"
    (array,) = stackcube.build_cube(str(catalog), repo=repo, progress=False).plan.arrays
    path = f"{array.name}/0/data"
    assert _codecs(repo, path) == ["bytes"]

    _series(root, 3, compress="none")
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.added == ("source-2",)
    assert not report.appended  # the array is written again, with stackcube.tiff
    assert _codecs(repo, path) == ["stackcube.tiff"]
    fresh = tmp_path / "fresh.icechunk"
    stackcube.build_cube(str(catalog), repo=fresh, progress=False)
    assert _codecs(fresh, path) == ["stackcube.tiff"]
    for cube in (repo, fresh):
        values = stackcube.open_dataarray(cube, mask_and_scale=False, chunks=False).values
        for n in range(3):
            with rasterio.open(root / f"d{n}.tif") as src:
                np.testing.assert_array_equal(values[n, 0], src.read(1))
