"""Reading cubes (store.read): versions, arrays and levels, changed sources, what other readers recognise, and
every keyword of every public reader taking effect."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stackcube
from stackcube.errors import SourceChangedError
from tests.twins import change_in_place, corpus_items, read_served, twin_items

pytestmark = [pytest.mark.corpus, pytest.mark.network]


def test_changed_source_fails_loudly_and_others_still_read(nginx, tmp_path) -> None:
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:2]
    twins = twin_items(items, nginx.root / "changed", f"{nginx.url}/changed", downscale=30, assets=["B04"])
    cube = stackcube.build_cube(twins, assets=["B04"], repo=tmp_path / "cube.icechunk", progress=False)
    changed = twins[0]["assets"]["B04"]["href"]
    change_in_place(nginx.root / changed.removeprefix(nginx.url + "/"))
    data = cube.open(mask_and_scale=False)["EPSG32735_300m/0"]["data"]
    t_changed = next(i for i, ids in enumerate(cube.plan.arrays[0].items) if twins[0]["id"] in ids)
    with pytest.raises(SourceChangedError, match=rf"^{re.escape(changed)} changed since the cube was built.*refresh"):
        data.isel(time=t_changed).values  # noqa: B018
    assert data.isel(time=1 - t_changed).values.any()


def _local_cube(tmp_path):
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:2]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=30, assets=["B04"])
    cube = stackcube.build_cube(twins, assets=["B04"], repo=tmp_path / "cube.icechunk", progress=False)
    path = Path(twins[0]["assets"]["B04"]["href"].removeprefix("file://"))
    t = next(i for i, ids in enumerate(cube.plan.arrays[0].items) if twins[0]["id"] in ids)
    return cube, path, t


def test_a_local_source_restored_with_an_older_time_fails_loudly(tmp_path) -> None:
    cube, path, t = _local_cube(tmp_path)
    other = tmp_path / "other.tif"
    shutil.copyfile(path, other)
    change_in_place(other)
    before = path.stat()
    os.utime(other, (before.st_atime - 3600, before.st_mtime - 3600))
    subprocess.run(["cp", "-p", str(other), str(path)], check=True)  # same inode, older time, other bytes
    after = path.stat()
    assert (after.st_ino, after.st_mtime) == (before.st_ino, before.st_mtime - 3600)
    data = cube.open(mask_and_scale=False)["EPSG32735_300m/0"]["data"]
    with pytest.raises(SourceChangedError, match=path.name):
        data.isel(time=t).values  # noqa: B018
    assert data.isel(time=1 - t).values.any()


def test_a_deleted_local_source_is_named_like_a_changed_one(tmp_path) -> None:
    cube, path, t = _local_cube(tmp_path)
    path.unlink()
    data = cube.open(mask_and_scale=False)["EPSG32735_300m/0"]["data"]
    with pytest.raises(SourceChangedError, match=rf"{path.name} no longer exists.*refresh"):
        data.isel(time=t).values  # noqa: B018
    assert data.isel(time=1 - t).values.any()


def test_a_deleted_source_on_http_or_s3_is_named(nginx, s3, tmp_path) -> None:
    from tests.twins import upload_dir

    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:1]
    on_http = twin_items(items, nginx.root / "deleted", f"{nginx.url}/deleted", downscale=30, assets=["B04"])
    on_s3 = twin_items(items, tmp_path / "twins", f"s3://{s3.sources_bucket}/deleted", downscale=30, assets=["B04"])
    upload_dir(s3.client(), tmp_path / "twins", s3.sources_bucket, "deleted")
    deletes = {
        "http": lambda href: (nginx.root / href.removeprefix(f"{nginx.url}/")).unlink(),
        "s3": lambda href: s3.client().delete_object(
            Bucket=s3.sources_bucket, Key=href.removeprefix(f"s3://{s3.sources_bucket}/")
        ),
    }
    for name, twins in {"http": on_http, "s3": on_s3}.items():
        cube = stackcube.build_cube(twins, assets=["B04"], repo=tmp_path / f"{name}.icechunk", progress=False)
        href = twins[0]["assets"]["B04"]["href"]
        deletes[name](href)
        data = cube.open(mask_and_scale=False)["EPSG32735_300m/0"]["data"]
        with pytest.raises(SourceChangedError, match=rf"^{re.escape(href)} no longer exists.*refresh"):
            data.values  # noqa: B018


def test_a_deleted_source_of_a_union_member_on_s3_is_named(s3, tmp_path) -> None:
    """A member opened alone reads through Icechunk, whose S3 error does not name the file; the member's level
    stores no ``source_href`` (its node keeps it), and the error still names the file from there."""
    import pystac

    from stackcube.demo import write_demo_offset_catalog
    from tests.twins import upload_dir

    catalog = write_demo_offset_catalog(tmp_path / "offsets")
    upload_dir(s3.client(), tmp_path / "offsets" / "data", s3.sources_bucket, "offsets")
    items = []
    for item in pystac.Catalog.from_file(catalog).get_items(recursive=True):
        d = item.to_dict()
        for asset in d["assets"].values():
            asset["href"] = f"s3://{s3.sources_bucket}/offsets/{Path(asset['href']).name}"
        items.append(d)
    cube = stackcube.build_cube(items, repo=tmp_path / "cube.icechunk", progress=False)
    (union,) = cube.plan.unions
    member, (item_id,) = union.members[0], union.member_ids[0]
    (href,) = (a["href"] for d in items if d["id"] == item_id for a in d["assets"].values())
    s3.client().delete_object(Bucket=s3.sources_bucket, Key=href.removeprefix(f"s3://{s3.sources_bucket}/"))
    opened = stackcube.open_dataarray(cube.repository, member, snapshot=cube.snapshot_id, mask_and_scale=False)
    in_tree = cube.open(mask_and_scale=False, members=True)[f"{member}/0"]["data"]
    for data in (opened, in_tree):
        with pytest.raises(SourceChangedError, match=rf"^{re.escape(href)} no longer exists.*refresh"):
            data.values  # noqa: B018


def test_a_fresh_process_reopens_by_tag_and_snapshot(served_twins, tmp_path) -> None:
    _, twins = served_twins
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(twins, assets=["B04"], repo=repo, progress=False, tag="first")
    code = (
        "import sys, stackcube; "
        f"a = stackcube.open_cube({str(repo)!r}, tag='first'); "
        f"b = stackcube.open_cube({str(repo)!r}, snapshot={cube.snapshot_id!r}); "
        "g = stackcube.store.CubeMetadata.from_attrs(a.attrs).arrays[0] + '/0'; "
        "print(a[g]['data'].shape, int(a[g]['data'].isel(time=0).max()) == int(b[g]['data'].isel(time=0).max()))"
    )
    with warnings.catch_warnings():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("True")


def test_open_dataarray_picks_an_array_and_a_level(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo")
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(catalog, repo=repo, progress=False)
    tree = stackcube.open_cube(repo)
    data = stackcube.open_dataarray(repo, "EPSG32735_10m", level=1)
    assert data.name == "EPSG32735_10m"
    assert data.sizes == tree["EPSG32735_10m/1"]["data"].sizes
    with pytest.raises(ValueError, match=r"holds 2 arrays .*pass array="):
        stackcube.open_dataarray(repo)
    with pytest.raises(ValueError, match=r"has no array 'nope'; it has: EPSG32735_10m, EPSG32735_20m"):
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


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rioxarray 0.23 multiplies affines with *
def test_rioxarray_and_odc_geo_recognise_every_opened_array(tmp_path) -> None:
    import odc.geo.xr  # noqa: F401 - registers the .odc accessor
    import rioxarray  # noqa: F401 - registers the .rio accessor

    from stackcube.demo import write_demo_catalog, write_demo_offset_catalog

    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(write_demo_catalog(tmp_path / "demo"), repo=repo, progress=False)
    offsets = tmp_path / "offsets.icechunk"
    scenes = stackcube.build_cube(write_demo_offset_catalog(tmp_path / "offsets"), repo=offsets, progress=False)
    cases = [(repo, a.name, n, level.transform) for a in cube.plan.arrays for n, level in enumerate(a.levels)]
    cases += [(offsets, u.name, 0, u.transform) for u in scenes.plan.unions]
    for path, name, level, transform in cases:
        data = stackcube.open_dataarray(path, name, level=level)
        assert data.rio.crs.to_epsg() == 32735, name
        assert tuple(data.rio.transform())[:6] == tuple(transform)[:6], name
        geobox = data.odc.geobox
        assert geobox.crs.epsg == 32735
        assert geobox.shape == (data.sizes["y"], data.sizes["x"])
        assert tuple(geobox.affine)[:6] == tuple(transform)[:6]


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """A demo cube in three versions (tag v1: 4 bands; branch dev: 1 band; main: 2 bands) and a cube of one union."""
    from stackcube.demo import write_demo_catalog, write_demo_offset_catalog

    root = tmp_path_factory.mktemp("versions")
    catalog = write_demo_catalog(root / "demo", dates=2)
    repo = root / "cube.icechunk"
    first = stackcube.build_cube(catalog, assets=["red", "green", "blue", "nir"], repo=repo, tag="v1", progress=False)
    first.repository.create_branch("dev", first.snapshot_id)
    stackcube.build_cube(catalog, assets=["nir"], repo=repo, branch="dev", progress=False)
    stackcube.build_cube(catalog, assets=["red", "green"], repo=repo, progress=False)
    scenes = stackcube.build_cube(write_demo_offset_catalog(root / "offsets"), repo=root / "union.icechunk")
    return {
        "array": (repo, "EPSG32735_10m"),
        "union": (root / "union.icechunk", scenes.plan.unions[0].name),
        "first": first,
        "data": (root / "demo" / "data").resolve().as_uri(),
        "offsets": (root / "offsets" / "data").resolve().as_uri(),
    }


READERS = {
    "open_cube": lambda repo, name, **kw: stackcube.open_cube(repo, **kw)[f"{name}/0"]["data"],
    "open_dataarray": stackcube.open_dataarray,
}


@pytest.mark.parametrize("kind", ["array", "union"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_chunks_and_mask_and_scale_reach_every_reader(versions, reader, kind) -> None:
    import dask

    repo, name = versions[kind]
    read = READERS[reader]
    default = read(repo, name, mask_and_scale=False)
    assert dask.is_dask_collection(default)
    assert default.dtype == np.uint16
    expected = default.values

    plain = read(repo, name, chunks=False, mask_and_scale=False)  # no dask: NumPy-backed, read when asked
    assert plain.chunks is None
    assert not dask.is_dask_collection(plain)
    assert isinstance(plain.isel(time=0).values, np.ndarray)
    np.testing.assert_array_equal(plain.values, expected)

    rows, cols = (512, 256) if kind == "array" else (256, 128)  # whole source tiles: no tile read twice
    sized = read(repo, name, chunks={"y": rows, "x": cols}, mask_and_scale=False)
    assert sized.chunks[2][0] == min(rows, sized.sizes["y"])
    assert set(sized.chunks[2][:-1]) <= {rows}
    assert sized.chunks[3][0] == cols
    assert set(sized.chunks[3][:-1]) <= {cols}
    np.testing.assert_array_equal(sized.values, expected)

    for chunks in (None, False):
        masked = read(repo, name, chunks=chunks)
        assert masked.dtype == np.float32
        values = masked.values
        assert np.isnan(values[expected == 0]).all()  # nodata 0 is masked
        np.testing.assert_array_equal(values[expected != 0], expected[expected != 0])


@pytest.mark.parametrize("reader", sorted(READERS))
def test_version_and_allow_reach_every_reader(versions, reader) -> None:
    from stackcube.errors import UntrustedSourceError

    repo, name = versions["array"]
    read = READERS[reader]
    bands = {
        "main": read(repo, name).sizes["band"],
        "branch": read(repo, name, branch="dev").sizes["band"],
        "tag": read(repo, name, tag="v1").sizes["band"],
        "snapshot": read(repo, name, snapshot=versions["first"].snapshot_id).sizes["band"],
    }
    assert bands == {"main": 2, "branch": 1, "tag": 4, "snapshot": 4}
    with pytest.raises(ValueError, match="at most one of branch, tag and snapshot"):
        read(repo, name, branch="dev", tag="v1")
    with pytest.raises(UntrustedSourceError, match=r"outside the allowed prefixes https://example\.com/"):
        read(repo, name, allow=["https://example.com/"])
    assert read(repo, name, allow=[versions["data"]]).sizes["band"] == 2


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine * in odc-geo
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo 0.5 on shapely 2.2
def test_the_other_readers_pass_their_keywords_on(versions) -> None:
    import dask

    repo, name = versions["array"]
    first = versions["first"]
    opened = first.open(chunks=False, mask_and_scale=False)[f"{name}/0"]["data"]  # Cube.open: its own snapshot
    assert opened.sizes["band"] == 4
    assert opened.chunks is None
    assert opened.dtype == np.uint16
    warped = stackcube.to_grid(repo, crs="EPSG:32735", resolution=20.0, tag="v1", allow=[versions["data"]])
    assert warped.sizes["band"] == 4
    assert stackcube.to_grid(first, crs="EPSG:32735", resolution=20.0, branch="dev").sizes["band"] == 1
    assert stackcube.open_dataarray(repo, name, level=1, tag="v1").sizes["y"] == 256
    with pytest.warns(DeprecationWarning, match="use array="):
        old = stackcube.open_dataarray(repo, group=name, tag="v1")
    assert old.sizes["band"] == 4
    union_repo, union = versions["union"]
    tree = stackcube.open_cube(union_repo, chunks=False, allow=[versions["offsets"]])
    assert not dask.is_dask_collection(tree[f"{union}/0"]["data"])
    members = tree[union].attrs["members"]  # listed, not opened; members=True opens them too
    assert members
    assert not set(members) & set(tree.children)
    assert set(members) <= set(stackcube.open_cube(union_repo, members=True).children)
    with pytest.raises(TypeError, match=r"open_cube\(\) got an unexpected keyword argument 'chunk'"):
        stackcube.open_cube(repo, chunk=False)
    with pytest.raises(TypeError, match=r"open_dataarray\(\) got an unexpected keyword argument 'mask'"):
        stackcube.open_dataarray(repo, name, mask=False)


def test_a_built_cube_has_band_metadata_and_selects_bands_by_common_name(tmp_path) -> None:
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:2]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=30, assets=["B04", "B08"])
    cube = stackcube.build_cube(twins, assets=["B04", "B08"], repo=tmp_path / "cube.icechunk", progress=False)
    data = stackcube.open_dataarray(tmp_path / "cube.icechunk")
    assert list(data.common_name.values) == ["red", "nir"]
    assert list(data.center_wavelength.values) == [0.665, 0.842]
    assert data.sel(band="red").equals(data.sel(band="B04"))
    assert cube.open()["EPSG32735_300m/0"]["data"].sel(band="nir").band.item() == "B08"


@pytest.mark.parametrize("where", ["nginx", "s3"])
def test_reads_through_five_percent_faults_equal_a_fault_free_read(where, nginx, s3, tmp_path, use_settings) -> None:
    """A 30-date cube read while 5% of requests fail (500, 503, 429 with Retry-After, resets, stalls, truncated
    bodies), with five fault sequences: every read equals the fault-free one, in bounded time."""
    import time

    from stackcube._retry import THROTTLED_WAIT
    from stackcube.settings import S3Settings
    from tests.services.proxy import run_proxy
    from tests.twins import series, upload_dir

    upstream = nginx.url if where == "nginx" else s3.endpoint
    with run_proxy(upstream, dialect="http" if where == "nginx" else "s3") as proxy:
        if where == "nginx":
            items = series(nginx.root / "faults", f"{proxy.url}/faults", 30, size=512)
        else:
            items = series(tmp_path / "faults", f"s3://{s3.sources_bucket}/faults", 30, size=512)
            upload_dir(s3.client(), tmp_path / "faults", s3.sources_bucket, "faults")
            use_settings(s3=S3Settings(endpoint=proxy.url, region="us-east-1", signed=True))
        settings = use_settings(request_timeout=1.0, retries=8)
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(items, repo=repo, progress=False)
        started = time.monotonic()
        clean = stackcube.open_dataarray(repo, mask_and_scale=False).values
        clean_seconds = time.monotonic() - started
        assert clean.shape == (30, 1, 512, 512)
        assert clean.all()  # every pixel read (the series has no nodata)
        proxy.stall_seconds = 2.0
        for seed in range(5):
            proxy.seed, proxy.fault_rate = seed, 0.05
            proxy.reset()
            started = time.monotonic()
            faulty = stackcube.open_dataarray(repo, mask_and_scale=False).values
            seconds = time.monotonic() - started
            faults = sum(n for k, n in proxy.stats.items() if k.startswith("fault:"))
            proxy.fault_rate = 0.0
            assert faults >= 5, f"seed {seed}: the proxy should have injected faults: {proxy.stats}"
            np.testing.assert_array_equal(faulty, clean)
            # waiting is bounded: per fault at most one timed-out attempt and one throttled wait, plus backoff
            bound = clean_seconds + faults * (settings.request_timeout + THROTTLED_WAIT + 1.0) + 5.0
            assert seconds < bound, f"seed {seed}: {seconds:.1f} s for {faults} faults: {proxy.stats}"


def test_opening_a_cube_on_s3_costs_these_repository_requests(s3, tmp_path, use_settings) -> None:
    """Repository requests, counted at a proxy in front of the S3 server (sources local, so only the repository's
    requests count). Opening is Icechunk's open (the repository's info, with the branch's v1 ref file and the v1
    configuration file asked for at the same time: Icechunk cannot know the format before) and its read-only
    session (the repository's info again, the snapshot), and nothing else: the coordinates read at open are kept
    in the snapshot. A tile then costs the manifest of the array it is in. Unions alike, per member touched."""
    from stackcube.demo import write_demo_offset_catalog
    from stackcube.settings import S3Settings
    from tests.services.proxy import run_proxy
    from tests.twins import series

    items = series(tmp_path / "src", (tmp_path / "src").as_uri(), 5)
    with run_proxy(s3.endpoint, record=True) as proxy:
        use_settings(s3=S3Settings(proxy.url, "us-east-1", signed=True))
        repo = f"s3://{s3.repos_bucket}/counted"
        stackcube.build_cube(items, repo=repo, progress=False)
        union = f"s3://{s3.repos_bucket}/union"
        stackcube.build_cube(write_demo_offset_catalog(tmp_path / "offsets"), repo=union, progress=False)

        def counted(read: Any) -> dict[str, int]:
            proxy.heads.clear()
            read()
            found: dict[str, int] = {}
            for head in proxy.heads:
                parts = head.split(b" ")[1].decode().split("?")[0].split("/")
                part = parts[3] if len(parts) > 3 else "/".join(parts)
                found[part] = found.get(part, 0) + 1
            return found

        opening = {"repo": 2, "refs": 1, "config.yaml": 1, "snapshots": 1}
        tile = {"time": 0, "band": 0, "y": slice(0, 10), "x": slice(0, 10)}
        assert counted(lambda: stackcube.open_dataarray(repo)) == opening
        assert counted(lambda: stackcube.open_dataarray(repo, mask_and_scale=False)) == opening
        assert counted(lambda: stackcube.open_dataarray(repo).isel(tile).values) == {**opening, "manifests": 1}
        assert counted(lambda: stackcube.open_dataarray(repo, chunks=False).isel(tile).values) == {
            **opening,
            "manifests": 1,
        }
        assert counted(lambda: stackcube.open_cube(repo)) == opening
        level = f"{stackcube.store.read_metadata(repo).arrays[0]}/0"
        assert counted(lambda: stackcube.open_cube(repo)[level]["data"].isel(tile).values) == {
            **opening,
            "manifests": 1,
        }
        assert counted(lambda: stackcube.open_dataarray(union)) == opening
        # a union's reads take where its member tiles lie from its tile table (two arrays: the tiles, the sources),
        # however many members a read touches, and no member's manifest
        inside = {"time": 0, "band": 0, "y": slice(110, 120), "x": slice(50, 60)}
        for chunks in (None, False):
            assert counted(lambda c=chunks: stackcube.open_dataarray(union, chunks=c).isel(inside).values) == {
                **opening,
                "manifests": 2,
            }
        assert counted(lambda: stackcube.open_dataarray(union).values) == {**opening, "manifests": 2}
        # (what a refresh reads first: tests/store/test_stored.py)


def test_default_dask_chunks_span_tiles_and_read_only_what_is_selected(nginx, tmp_path, use_settings) -> None:
    """Default dask chunks are whole tiles up to about 2048 pixels, one date and band each; a selection inside a
    chunk reads only its own tiles (one GET each), a list of dates only those dates, and however many tiles a
    read touches, no more than ``max_concurrency`` requests are in flight."""
    from tests.services.proxy import run_proxy
    from tests.twins import series

    with run_proxy(nginx.url, latency=0.01) as proxy:
        items = series(nginx.root / "chunked", f"{proxy.url}/chunked", 4, size=512, blocksize=128)
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(items, repo=repo, progress=False)
        data = stackcube.open_dataarray(repo, mask_and_scale=False)
        assert data.chunks == ((1, 1, 1, 1), (1,), (512,), (512,))  # 4 x 4 tiles of 128 in one chunk
        assert all(not hasattr(data[name].data, "dask") for name in data.coords)  # the data alone is dask
        assert dict(stackcube.open_dataarray(repo, chunks={"y": 256, "x": 256}).chunksizes) == {
            "time": (1, 1, 1, 1),
            "band": (1,),
            "y": (256, 256),
            "x": (256, 256),
        }

        proxy.reset()
        np.testing.assert_array_equal(
            data.isel(time=0, band=0, y=slice(130, 140), x=slice(0, 10)).values,
            read_served(items[0]["assets"]["B04"]["href"], nginx.root, proxy.url)[130:140, 0:10],
        )
        assert proxy.stats["GET"] == 1
        proxy.reset()
        _ = data.isel(time=[0, 2], band=0, y=slice(0, 10), x=slice(0, 10)).values
        assert proxy.stats["GET"] == 2
        use_settings(max_concurrency=4)
        proxy.reset()
        _ = stackcube.open_dataarray(repo, mask_and_scale=False).values
        assert proxy.stats["GET"] == 4 * 16
        assert proxy.stats["max_inflight"] <= 4


def test_members_is_the_trees_keyword_alone(tmp_path) -> None:
    """``members=`` puts a union's members in open_cube's tree; a reader of one array refuses it rather than
    ignoring it."""
    import stackcube
    from stackcube.demo import write_demo_catalog

    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(write_demo_catalog(tmp_path / "demo", dates=1, size=256), repo=repo, progress=False)
    with pytest.raises(TypeError, match=r"open_dataarray\(\) takes no members=.*open_cube\(repo, members=True\)"):
        stackcube.open_dataarray(repo, members=True)
    with pytest.raises(TypeError, match=r"to_grid\(\) takes no members="):
        stackcube.to_grid(repo, crs="EPSG:32735", resolution=60.0, members=True)
    assert stackcube.open_cube(repo, members=True).children.keys() == stackcube.open_cube(repo).children.keys()
