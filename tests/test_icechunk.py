"""build_cube / open_cube on the test bed: bit-exact values, one GET per chunk, ETag-checked sources."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

import stackcube
from stackcube.errors import SourceChangedError
from stackcube.icechunk import ONE_REQUEST, container_prefixes
from tests.services.proxy import run_proxy
from tests.twins import change_in_place, corpus_items, twin_items

pytestmark = [pytest.mark.corpus, pytest.mark.network]

ASSETS = ["B02", "B03", "B04", "B08", "B05", "B01"]


def rasterio_read(href: str, nginx_root, base: str, level: int = 0) -> np.ndarray:
    """Band 1 of the served file as rasterio reads it; ``level`` n > 0 is its n-th internal overview."""
    options = {"overview_level": level - 1} if level else {}
    with rasterio.open(nginx_root / href.removeprefix(base + "/"), **options) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def served_twins(nginx, tmp_path_factory):
    """Twins of four 35MNM items behind a fault/latency proxy (faults off), so reads are counted."""
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:4]
    with run_proxy(nginx.url) as proxy:
        twins = twin_items(items, nginx.root / "cube-twins", f"{proxy.url}/cube-twins", downscale=10, assets=ASSETS)
        yield proxy, twins


def test_build_and_open_are_bit_exact(served_twins, nginx, tmp_path) -> None:
    proxy, twins = served_twins
    cube = stackcube.build_cube(twins, assets=ASSETS, repo=tmp_path / "cube.icechunk", progress=False, tag="v1")
    tree = stackcube.open_cube(tmp_path / "cube.icechunk", mask_and_scale=False)
    assert sorted(tree.children) == sorted([*(g.name for g in cube.plan.groups), "sources"])
    assert tree.attrs["stackcube"]["groups"] == [g.name for g in cube.plan.groups]
    for group in cube.plan.groups:
        assert sorted(tree[group.name].children, key=int) == [str(n) for n in range(1 + len(group.overviews))]
        for n, level in enumerate((group, *group.overviews)):
            node = tree[f"{group.name}/{n}"]
            assert node["data"].dims == ("time", "band", "y", "x")
            assert node["data"].shape == level.shape
            assert node["data"].chunks is not None
            for t in range(level.shape[0]):
                for b in range(level.shape[1]):
                    href = str(node["source_href"].values[t, b])
                    expected = rasterio_read(href, nginx.root, proxy.url, level=n)
                    np.testing.assert_array_equal(node["data"].isel(time=t, band=b).values, expected)
    assert tree["EPSG32735_100m/0"]["spatial_ref"].attrs["GeoTransform"].startswith("499980.0 100.0")
    assert tree["EPSG32735_100m/1"]["spatial_ref"].attrs["GeoTransform"].startswith("499980.0 200.0")


def test_overviews_are_levels_with_multiscales_metadata(served_twins, nginx, tmp_path) -> None:
    proxy, twins = served_twins
    cube = stackcube.build_cube(twins, assets=ASSETS, repo=tmp_path / "cube.icechunk", progress=False)
    group = next(g for g in cube.plan.groups if g.name == "EPSG32735_100m")
    first = group.sources.href[0]
    with rasterio.open(nginx.root / first.removeprefix(proxy.url + "/")) as ds:
        factors = ds.overviews(1)
    assert len(group.overviews) == len(factors) >= 1
    tree = stackcube.open_cube(tmp_path / "cube.icechunk")
    attrs = tree["EPSG32735_100m"].attrs
    assert attrs["proj:code"] == "EPSG:32735"
    assert {c["name"] for c in attrs["zarr_conventions"]} >= {"multiscales"}
    layout = attrs["multiscales"]["layout"]
    assert [entry["asset"] for entry in layout] == [str(n) for n in range(1 + len(factors))]
    assert layout[1]["derived_from"] == "0"
    assert layout[1]["transform"]["scale"] == [2.0, 2.0]
    full, half = tree["EPSG32735_100m/0"], tree["EPSG32735_100m/1"]
    assert layout[1]["spatial:shape"] == [half.sizes["y"], half.sizes["x"]]
    # every level carries the same time steps, bands and provenance; rasterio's overview grid is the level's grid
    for name in ("time", "band", "id", "source_href", "source_etag"):
        np.testing.assert_array_equal(full[name].values, half[name].values)
    href = str(half["source_href"].values[0, 0])
    with rasterio.open(nginx.root / href.removeprefix(proxy.url + "/"), overview_level=0) as ds:
        assert tuple(ds.transform)[:6] == tuple(layout[1]["spatial:transform"])
        np.testing.assert_allclose(half.x.values[:3], ds.xy(0, np.arange(3))[0])
    assert f"{len(factors)} overview levels" in cube.plan.report()
    # reading the coarsest level costs one GET per tile of it, and no header
    coarsest = tree[f"EPSG32735_100m/{len(factors)}"]["data"]
    proxy.reset()
    assert coarsest.isel(time=0).values.shape == coarsest.shape[1:]
    tiles = int((group.overviews[-1].source_index[0] >= 0).sum())
    assert proxy.stats["GET"] == proxy.stats["requests"] == tiles


def test_reads_cost_one_get_per_touched_chunk_and_no_header(served_twins, tmp_path) -> None:
    proxy, twins = served_twins
    stackcube.build_cube(twins, assets=ASSETS, repo=tmp_path / "cube.icechunk", progress=False)
    data = stackcube.open_cube(tmp_path / "cube.icechunk", mask_and_scale=False)["EPSG32735_100m/0"]["data"]
    proxy.reset()
    window = data.isel(time=slice(0, 2), band=slice(0, 3), y=slice(100, 600), x=slice(0, 10)).values
    assert window.shape == (2, 3, 500, 10)
    touched = 2 * 3 * 2 * 1  # 2 dates x 3 bands x tile rows 0-1 x tile column 0 (512-px tiles)
    assert proxy.stats["GET"] == touched
    assert proxy.stats["requests"] == touched  # no HEAD, no header read


def test_changed_source_fails_loudly_and_others_still_read(nginx, tmp_path) -> None:
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:2]
    twins = twin_items(items, nginx.root / "changed", f"{nginx.url}/changed", downscale=30, assets=["B04"])
    cube = stackcube.build_cube(twins, assets=["B04"], repo=tmp_path / "cube.icechunk", progress=False)
    changed = twins[0]["assets"]["B04"]["href"]
    change_in_place(nginx.root / changed.removeprefix(nginx.url + "/"))
    data = cube.open(mask_and_scale=False)["EPSG32735_300m/0"]["data"]
    t_changed = next(i for i, ids in enumerate(cube.plan.groups[0].items) if twins[0]["id"] in ids)
    with pytest.raises(SourceChangedError, match=r"changed since the cube was built.*refresh"):
        data.isel(time=t_changed).values  # noqa: B018
    assert data.isel(time=1 - t_changed).values.any()


def test_a_fresh_process_reopens_by_tag_and_snapshot(served_twins, tmp_path) -> None:
    _, twins = served_twins
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(twins, assets=["B04"], repo=repo, progress=False, tag="first")
    code = (
        "import sys, stackcube; "
        f"a = stackcube.open_cube({str(repo)!r}, tag='first'); "
        f"b = stackcube.open_cube({str(repo)!r}, snapshot={cube.snapshot_id!r}); "
        "g = a.attrs['stackcube']['groups'][0] + '/0'; "
        "print(a[g]['data'].shape, int(a[g]['data'].isel(time=0).max()) == int(b[g]['data'].isel(time=0).max()))"
    )
    with warnings.catch_warnings():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("True")


def test_containers_are_exactly_the_source_prefixes() -> None:
    hrefs = ["http://h:1/a/b/x.tif", "http://h:1/a/c/y.tif", "s3://bucket/p/q/z.tif", "s3://bucket/p/q/w.tif"]
    assert container_prefixes(hrefs) == ["http://h:1/a/", "s3://bucket/p/q/"]


def test_cube_on_s3_of_sources_on_s3(s3, tmp_path) -> None:
    from tests.twins import upload_dir

    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:2]
    twins = twin_items(items, tmp_path / "twins", f"s3://{s3.sources_bucket}/twins", downscale=30, assets=["B04"])
    upload_dir(s3.client(), tmp_path / "twins", s3.sources_bucket, "twins")
    repo = f"s3://{s3.repos_bucket}/cubes/35mnm"
    cube = stackcube.build_cube(twins, assets=["B04"], repo=repo, progress=False)
    data = stackcube.open_cube(repo, mask_and_scale=False)["EPSG32735_300m/0"]["data"]
    for t in range(2):
        href = str(cube.plan.groups[0].sources.href[cube.plan.groups[0].source_index[t, 0, 0, 0]])
        key = href.removeprefix(f"s3://{s3.sources_bucket}/")
        local = tmp_path / "twins" / key.removeprefix("twins/")
        with rasterio.open(local) as ds:
            np.testing.assert_array_equal(data.isel(time=t, band=0).values, ds.read(1))
    listed = s3.client().list_objects_v2(Bucket=s3.repos_bucket, Prefix="cubes/35mnm/")
    assert listed["KeyCount"] > 0
    # no credential is written into the repository
    for obj in listed["Contents"]:
        body = s3.client().get_object(Bucket=s3.repos_bucket, Key=obj["Key"])["Body"].read()
        assert s3.secret_key.encode() not in body, obj["Key"]


def test_same_values_and_coordinates_as_stackstac(stac_api, tmp_path) -> None:
    import stackstac
    from pystac_client import Client

    items = list(Client.open(stac_api.url).search(collections=["sentinel-2-l2a"], max_items=6).items())
    assets = ["B04", "B08"]
    cube = stackcube.build_cube(
        stac_api.url,
        collections=["sentinel-2-l2a"],
        max_items=6,
        assets=assets,
        repo=tmp_path / "cube.icechunk",
        progress=False,
    )
    ours = cube.open(mask_and_scale=False)["EPSG32735_100m/0"]["data"]
    # pystac 1.15 writes proj:code; stackstac 0.5.1 reads proj:epsg: give it the items as the API served them
    dicts = [i.to_dict() for i in items]
    for d in dicts:
        d["properties"]["proj:epsg"] = int(d["properties"]["proj:code"].split(":")[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = stackstac.stack(
            dicts,
            assets=assets,
            snap_bounds=False,
            xy_coords="center",
            dtype="uint16",
            fill_value=np.uint16(0),
            rescale=False,
        )
        expected = theirs.values
    np.testing.assert_array_equal(ours.x.values, theirs.x.values)
    np.testing.assert_array_equal(ours.y.values, theirs.y.values)
    np.testing.assert_array_equal(ours.time.values, theirs.time.values)
    assert list(ours.band.values) == list(theirs.band.values)
    np.testing.assert_array_equal(ours.values, expected)


def test_scale_and_offset_apply_on_open(tmp_path) -> None:
    """Landsat C2 L2 declares scale 2.75e-05 and offset -0.2 in raster:bands; GDAL metadata carries them."""
    item = corpus_items("landsat-c2-l2-pc.json")[0]
    twins = twin_items([item], tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=40, assets=["red"])
    band = item["assets"]["red"]["raster:bands"][0]
    cube = stackcube.build_cube(twins, assets=["red"], repo=tmp_path / "cube.icechunk", progress=False)
    (name,) = [g.name for g in cube.plan.groups]
    raw = cube.open(mask_and_scale=False)[f"{name}/0"]["data"].isel(time=0, band=0).values
    physical = cube.open()[f"{name}/0"]["data"].isel(time=0, band=0).values
    with rasterio.open(twins[0]["assets"]["red"]["href"].removeprefix("file://")) as ds:
        np.testing.assert_array_equal(raw, ds.read(1))
        nodata = ds.nodata
    valid = raw != nodata
    np.testing.assert_allclose(physical[valid], raw[valid] * band["scale"] + band["offset"], rtol=1e-6)
    assert np.isnan(physical[~valid]).all()


def test_build_from_the_stac_api_onto_s3_reads_one_get_per_chunk(stac_api, nginx, s3) -> None:
    """The product as a scheduled job meets it: search the pgstac API, sources on nginx, the cube on S3."""
    repo = f"s3://{s3.repos_bucket}/cubes/from-api"
    cube = stackcube.build_cube(
        stac_api.url,
        (27.0, -8.2, 27.4, -7.8),
        "2020-07",
        collections=["sentinel-2-l2a"],
        assets=["B04", "B08"],
        repo=repo,
        tag="july",
        progress=False,
    )
    (group,) = cube.plan.groups
    assert group.shape[0] == sum(1 for ids in group.items)
    assert group.window is not None  # the exact bbox is kept inside the chunk-aligned array
    # requests counted at nginx itself: exactly one ranged GET per chunk of the slice, no header read
    tree = stackcube.open_cube(repo, tag="july", mask_and_scale=False)
    data = tree[f"{group.name}/0"]["data"]
    with nginx.counting() as gets:
        values = data.isel(time=0, band=1).values
    assert len(gets) == int((group.source_index[0, 1] >= 0).sum())
    assert all(r.method == "GET" and r.range for r in gets)
    href = str(tree[f"{group.name}/0"]["source_href"].values[0, 1])
    with rasterio.open(nginx.root / href.removeprefix(nginx.url + "/")) as ds:
        a, _, x0, _, e, y0 = group.transform
        col0, row0 = round((x0 - ds.transform.c) / a), round((y0 - ds.transform.f) / e)
        window = rasterio.windows.Window(col0, row0, values.shape[1], values.shape[0])
        np.testing.assert_array_equal(values, ds.read(1, window=window, boundless=True, fill_value=0))


def test_a_given_repository_gains_the_containers_its_sources_need(tmp_path) -> None:
    import icechunk

    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:1]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=30, assets=["B04"])
    config = icechunk.RepositoryConfig.default()
    config.storage = icechunk.StorageSettings(unsafe_use_conditional_update=False)
    repository = icechunk.Repository.create(icechunk.in_memory_storage(), config=config)
    assert not repository.config.virtual_chunk_containers
    cube = stackcube.build_cube(twins, assets=["B04"], repo=repository, progress=False)
    href = twins[0]["assets"]["B04"]["href"]
    assert list(cube.repository.config.virtual_chunk_containers) == [href.rsplit("/", 1)[0] + "/"]
    # chunks are fetched whole (one GET each), and the caller's other storage settings are kept
    storage = cube.repository.config.storage
    assert storage.concurrency.ideal_concurrent_request_size == ONE_REQUEST
    assert storage.unsafe_use_conditional_update is False
    data = cube.open(mask_and_scale=False)["EPSG32735_300m/0"]["data"]
    with rasterio.open(twins[0]["assets"]["B04"]["href"].removeprefix("file://")) as ds:
        np.testing.assert_array_equal(data.isel(time=0, band=0).values, ds.read(1))


def test_open_dataarray_picks_a_grid_and_a_level(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo")
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(catalog, repo=repo, progress=False)
    tree = stackcube.open_cube(repo)
    data = stackcube.open_dataarray(repo, "EPSG32735_10m", level=1)
    assert data.name == "EPSG32735_10m"
    assert data.sizes == tree["EPSG32735_10m/1"]["data"].sizes
    with pytest.raises(ValueError, match=r"holds 2 grids .*pass group="):
        stackcube.open_dataarray(repo)
    with pytest.raises(ValueError, match=r"has no grid 'nope'; it has: EPSG32735_10m, EPSG32735_20m"):
        stackcube.open_dataarray(repo, "nope")
    with pytest.raises(ValueError, match=r"has levels 0, 1 .* not 5"):
        stackcube.open_dataarray(repo, "EPSG32735_10m", level=5)
    # chunks=False: no dask, the same values
    plain = stackcube.open_dataarray(repo, "EPSG32735_10m", chunks=False, mask_and_scale=False)
    assert plain.chunks is None
    np.testing.assert_array_equal(
        plain.isel(time=1).values, stackcube.open_dataarray(repo, "EPSG32735_10m", mask_and_scale=False)[1].values
    )
    single = tmp_path / "single.icechunk"
    stackcube.build_cube(catalog, assets=["red"], repo=single, progress=False)
    assert stackcube.open_dataarray(single).band.values.tolist() == ["red"]


def test_allow_lists_refuse_cubes_that_read_elsewhere(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import UntrustedSourceError

    catalog = write_demo_catalog(tmp_path / "demo")
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(catalog, repo=repo, progress=False)
    data_dir = (tmp_path / "demo" / "data").resolve().as_uri()
    with pytest.raises(UntrustedSourceError, match=re.escape("outside the allowed prefixes https://example.com/data/")):
        stackcube.open_cube(repo, allow=["https://example.com/data"])
    with pytest.raises(UntrustedSourceError):
        stackcube.refresh_cube(repo, allow=["https://example.com/data"], progress=False)
    tree = stackcube.open_cube(repo, allow=[data_dir])
    assert tree["EPSG32735_10m/0"]["data"].isel(time=0, band=0).values.shape == (512, 512)


KILLED_WRITER = """
import sys
from benchmarks.cube_bench import synthetic_sources
from stackcube.api import plan_sources
from stackcube.icechunk import write_plan
from stackcube.search import Query

plan = plan_sources(Query(catalog=None), synthetic_sources(int(sys.argv[2]), 4, 5), options={})
print("writing", flush=True)
write_plan(plan, sys.argv[1], progress=True)
print("committed", flush=True)
"""


def test_a_write_killed_mid_way_leaves_the_branch_where_it_was(tmp_path) -> None:
    import signal
    import time

    from benchmarks.cube_bench import synthetic_sources

    from stackcube.api import plan_sources
    from stackcube.icechunk import open_repository, write_plan
    from stackcube.search import Query

    repo = tmp_path / "cube.icechunk"
    small = plan_sources(Query(catalog=None), synthetic_sources(10, 4, 5), options={})
    _, first = write_plan(small, repo)
    for delay in (0.2, 0.8, 1.6):  # kill it at different moments of the write
        with subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(repo), "4000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "writing"
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            assert child.returncode == -signal.SIGKILL
            assert "committed" not in child.stdout.read()
        assert open_repository(repo).lookup_branch("main") == first
        assert stackcube.open_dataarray(repo).sizes["time"] == 10
    _, second = write_plan(plan_sources(Query(catalog=None), synthetic_sources(20, 4, 5), options={}), repo)
    assert open_repository(repo).lookup_branch("main") == second
    assert stackcube.open_dataarray(repo).sizes["time"] == 20


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rioxarray 0.23 multiplies affines with *
def test_rioxarray_and_odc_geo_recognise_every_opened_array(tmp_path) -> None:
    import odc.geo.xr  # noqa: F401 - registers the .odc accessor
    import rioxarray  # noqa: F401 - registers the .rio accessor
    from affine import Affine

    from stackcube.demo import write_demo_catalog, write_demo_offset_catalog

    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(write_demo_catalog(tmp_path / "demo"), repo=repo, progress=False)
    offsets = tmp_path / "offsets.icechunk"
    scenes = stackcube.build_cube(write_demo_offset_catalog(tmp_path / "offsets"), repo=offsets, progress=False)
    cases = [
        (repo, g.name, n, (g, *g.overviews)[n].transform) for g in cube.plan.groups for n in range(1 + len(g.overviews))
    ]
    cases += [(offsets, u.name, 0, u.transform) for u in scenes.plan.unions]
    for path, name, level, transform in cases:
        data = stackcube.open_dataarray(path, name, level=level)
        assert data.rio.crs.to_epsg() == 32735, name
        assert tuple(data.rio.transform())[:6] == tuple(Affine(*transform))[:6], name
        geobox = data.odc.geobox
        assert geobox.crs.epsg == 32735
        assert geobox.shape == (data.sizes["y"], data.sizes["x"])
        assert tuple(geobox.affine)[:6] == tuple(Affine(*transform))[:6]


def test_cube_repr_html_and_quicklook(tmp_path) -> None:
    import imagecodecs

    from stackcube.demo import write_demo_catalog, write_demo_offset_catalog

    cube = stackcube.build_cube(write_demo_catalog(tmp_path / "demo"), repo=tmp_path / "a.icechunk", progress=False)
    html = cube._repr_html_()
    assert cube.snapshot_id in html
    assert "<code>EPSG32735_10m</code>" in html
    assert "16 sources" in html
    look = cube.quicklook()
    assert look.bands == ("B04", "B03", "B02")
    assert look.array == "EPSG32735_10m/0"  # the coarsest level still >= 512 px
    image = imagecodecs.png_decode(look._repr_png_())
    assert image.shape == (512, 512, 3)
    assert image.std() > 0
    assert cube.quicklook(size=256).array == "EPSG32735_10m/1"  # the 256 px overview is enough
    grey = cube.quicklook(bands=["B11"], size=64)
    assert imagecodecs.png_decode(grey.png).shape == (256, 256)
    with pytest.raises(ValueError, match="no array of the cube has the bands"):
        cube.quicklook(bands=["nope"])
    scenes = stackcube.build_cube(
        write_demo_offset_catalog(tmp_path / "offsets"), repo=tmp_path / "b.icechunk", progress=False
    )
    assert "6 grids" in scenes._repr_html_()
    one = scenes.quicklook()  # no RGB: the first band of the union
    assert one.array.startswith("EPSG32735_30m_union/")
    assert one.bands == ("red",)
    assert look.save(tmp_path / "q.png").read_bytes() == look.png
