"""Unions read back (union._array, union._lay): exact values against rasterio and stackstac, the overlap rule,
one GET per member tile, with dask or NumPy-backed."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr

import stackcube
from tests.union.scenes import NODATA, RES, T0, X0, Y0, expected_union, make_items, stackstac_on_union


def test_pixel_aligned_scenes_become_one_exact_array(tmp_path) -> None:
    items = make_items(tmp_path, tmp_path.as_posix())
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(items, repo=repo, progress=False)
    assert len(cube.plan.arrays) == 4  # no two scenes share a tile grid
    (union,) = cube.plan.unions
    assert union.shape == (3, 1, 450, 470)
    assert "4 grids placed by pixel offset" in cube.plan.report().splitlines()[0]
    data = stackcube.open_dataarray(repo, union.name, mask_and_scale=False)
    assert data.dims == ("time", "band", "y", "x")
    expected, _ = expected_union(tmp_path)
    np.testing.assert_array_equal(data.values, expected)
    assert data.id.values.tolist() == ["SCENE_A,SCENE_B", "SCENE_C", "SCENE_D"]
    # coordinates: pixel centres of the union grid
    np.testing.assert_allclose(data.x.values[:2], [X0 + RES / 2, X0 + 1.5 * RES])
    np.testing.assert_allclose(data.y.values[:2], [Y0 - RES / 2, Y0 - 1.5 * RES])
    # masked: nodata becomes NaN; the tree holds the union too
    masked = stackcube.open_cube(repo)[f"{union.name}/0"]["data"]
    assert np.isnan(masked.isel(time=1).values[0, 0, 0])
    assert masked.isel(time=0).values[0, 0, 0] == expected[0, 0, 0, 0]


@pytest.mark.parametrize("mask_and_scale", [True, False])
def test_a_tree_lists_union_members_and_each_opens_on_demand_as_the_whole_tree_holds_it(
    tmp_path, mask_and_scale
) -> None:
    items = make_items(tmp_path, tmp_path.as_posix())
    repo = tmp_path / "cube.icechunk"
    (union,) = stackcube.build_cube(items, repo=repo, progress=False).plan.unions
    listed = stackcube.open_cube(repo, mask_and_scale=mask_and_scale)
    whole = stackcube.open_cube(repo, mask_and_scale=mask_and_scale, members=True)
    assert listed[union.name].attrs["members"] == whole[union.name].attrs["members"] == list(union.members)
    assert not set(union.members) & set(listed.children)  # listed, none opened
    assert set(union.members) <= set(whole.children)
    # every node the listed tree holds (the union's levels, the source table, the root) is the whole tree's
    for path, node in listed.subtree_with_keys:
        xr.testing.assert_identical(node.to_dataset().load(), whole[path].to_dataset().load())
    # each member opened on demand is the whole tree's node: values, coordinates, attributes
    for member in union.members:
        assert whole[member].children  # its levels
        for n in whole[member].children:
            single = stackcube.open_dataarray(repo, member, level=int(n), mask_and_scale=mask_and_scale)
            xr.testing.assert_identical(single.load(), whole[f"{member}/{n}"]["data"].rename(member).load())


def test_overlaps_follow_the_rule_and_nodata_never_hides_a_valid_pixel(tmp_path) -> None:
    items = make_items(tmp_path, tmp_path.as_posix())
    last = stackcube.build_cube(items, repo=tmp_path / "last.icechunk", overlap="last", progress=False)
    data = stackcube.open_dataarray(tmp_path / "last.icechunk", last.plan.unions[0].name, mask_and_scale=False)
    with rasterio.open(tmp_path / "A.tif") as a, rasterio.open(tmp_path / "B.tif") as b:
        va, vb = a.read(1), b.read(1)
    # a pixel both A and B cover: with "last", B's value
    np.testing.assert_array_equal(data.values[0, 0, 150, 200], vb[150 - 100, 200 - 170])
    # with "first" and sort_by cloud cover (B is less cloudy), B wins too; where B is nodata-free and A has a hole,
    # the value is B's either way
    by_cloud = stackcube.build_cube(items, repo=tmp_path / "cloud.icechunk", sort_by="eo:cloud_cover", progress=False)
    cloud = stackcube.open_dataarray(tmp_path / "cloud.icechunk", by_cloud.plan.unions[0].name, mask_and_scale=False)
    np.testing.assert_array_equal(cloud.values[0, 0, 150, 200], vb[50, 30])
    first = stackcube.build_cube(items, repo=tmp_path / "first.icechunk", progress=False)
    plain = stackcube.open_dataarray(tmp_path / "first.icechunk", first.plan.unions[0].name, mask_and_scale=False)
    np.testing.assert_array_equal(plain.values[0, 0, 150, 200], va[150, 200])
    hole = (120, 200)  # inside A's nodata hole and inside B
    assert va[hole] == NODATA
    assert plain.values[0, 0, hole[0], hole[1]] == vb[hole[0] - 100, hole[1] - 170] != NODATA


def merged_gets(segments: list[tuple[int, int]]) -> int:
    """How many ranged GETs fetch ``segments`` of one file when those at most MERGE_GAP apart share one."""
    from stackcube.tiff import MERGE_GAP

    gets, end = 0, None
    for offset, length in sorted(segments):
        if end is None or offset - end > MERGE_GAP:
            gets += 1
            end = offset + length
        else:
            end = max(end, offset + length)
    return gets


def tiles_of(plan, t=None, rows=None, cols=None) -> dict[str, list[tuple[int, int]]]:
    """(offset, length) of a member plan's tiles per source href (those of time ``t``, tile ``rows`` and ``cols``)."""
    found: dict[str, list[tuple[int, int]]] = {}
    nt, nb, ny, nx = plan.source_index.shape
    for ti in range(nt) if t is None else [t]:
        for b in range(nb):
            for ty in rows if rows is not None else range(ny):
                for tx in cols if cols is not None else range(nx):
                    i = int(plan.source_index[ti, b, ty, tx])
                    if i >= 0:
                        segment = (int(plan.offsets[ti, b, ty, tx]), int(plan.lengths[ti, b, ty, tx]))
                        found.setdefault(plan.sources.href[i], []).append(segment)
    return found


@pytest.mark.network
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # stackstac 0.5 multiplies affines with *
def test_union_equals_stackstac_nearest_and_reads_adjacent_tiles_with_one_get(nginx, tmp_path, monkeypatch) -> None:
    import stackstac
    from rasterio.enums import Resampling

    from tests.services.proxy import run_proxy

    directory = nginx.root / "union-scenes"
    directory.mkdir(exist_ok=True)
    with run_proxy(nginx.url) as proxy:
        items = make_items(directory, f"{proxy.url}/union-scenes")
        # distinct datetimes, so stackstac's one step per item is our one step per datetime
        for k, item in enumerate(items):
            item.datetime = T0 + timedelta(days=3 * k)
        repo = tmp_path / "cube.icechunk"
        cube = stackcube.build_cube(items, repo=repo, progress=False)
        (union,) = cube.plan.unions
        members = {a.name: a for a in cube.plan.arrays}
        by_source = {h: s for m in union.members for h, s in tiles_of(members[m]).items()}
        stored_tiles = sum(len(s) for s in by_source.values())
        merged = sum(merged_gets(s) for s in by_source.values())
        assert merged < stored_tiles / 2  # the scenes' tiles lie side by side in their files
        data = stackcube.open_dataarray(repo, union.name, mask_and_scale=False)
        proxy.reset()
        ours = data.values
        assert proxy.stats["GET"] == proxy.stats["requests"] == merged  # no header read either
        full_bytes = proxy.stats["bytes"]
        assert full_bytes >= sum(n for s in by_source.values() for _, n in s)
        # dask blocks that cut through member tiles: a tile on a border feeds several blocks and is read once (with
        # ranges merged only where tiles touch, the bytes are then exactly the tiles')
        monkeypatch.setattr("stackcube.tiff._read.MERGE_GAP", 0)
        small = stackcube.open_dataarray(repo, union.name, mask_and_scale=False, chunks={"y": 100, "x": 100})
        assert len(small.chunks[2]) > 1
        proxy.reset()
        np.testing.assert_array_equal(small.values, ours)
        assert merged <= proxy.stats["GET"] <= stored_tiles
        assert proxy.stats["bytes"] == sum(n for s in by_source.values() for _, n in s)
        monkeypatch.undo()
        plain = stackcube.open_dataarray(repo, union.name, mask_and_scale=False, chunks=False)
        proxy.reset()
        np.testing.assert_array_equal(plain.values, ours)  # without dask: the same pixels and requests
        assert proxy.stats["GET"] == proxy.stats["requests"] == merged
        plain = stackcube.open_dataarray(repo, union.name, mask_and_scale=False, chunks=False)  # nothing read yet
        proxy.reset()
        window = plain.isel(time=0, y=slice(100, 160), x=slice(150, 200)).values
        np.testing.assert_array_equal(window, ours[0, :, 100:160, 150:200])
        # the first date is scene A alone, at (0, 0) in 64-px tiles: rows 100-159 and columns 150-199 are 2 x 2 tiles
        first = members[union.members[0]]
        ((_, segments),) = tiles_of(first, t=0, rows=[1, 2], cols=[2, 3]).items()
        assert proxy.stats["GET"] == merged_gets(segments) < 4
        a, _, x0, _, e, y0 = union.transform[:6]
        _, _, height, width = union.shape
        theirs = stackstac.stack(
            items,
            assets=["red"],
            epsg=32633,
            resolution=RES,
            bounds=(x0, y0 + e * height, x0 + a * width, y0),
            snap_bounds=False,
            resampling=Resampling.nearest,
            dtype="uint16",
            fill_value=np.uint16(NODATA),
            rescale=False,
        ).values
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.corpus
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # stackstac 0.5 multiplies affines with *
def test_sentinel2_tiles_of_one_zone_and_day_are_one_array_equal_to_stackstac(tmp_path) -> None:
    """Twins of three real MGRS tiles of one overpass (origins 9998 px apart, never whole tiles): one union."""
    import pyproj

    from tests.conftest import CORPUS, require
    from tests.twins import corpus_items, twin_items

    require(CORPUS.is_dir(), "the corpus is missing")
    items = corpus_items("site1-20200606-tall-strip-africa.geojson")[:3]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=2, assets=["B04"])
    to_lonlat = pyproj.Transformer.from_crs("EPSG:32735", "EPSG:4326", always_xy=True)
    # a window across the boundary of the first two tiles (their footprints overlap by 980 m)
    bbox = to_lonlat.transform_bounds(560_000, 9_085_000, 580_000, 9_105_000)
    plan = stackcube.plan_cube(twins, bbox, assets=["B04"], groupby=None, progress=False)
    (union,) = plan.unions
    assert len(union.members) == 2  # the third tile lies outside the bbox
    assert union.shape[0] == 2
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(twins, bbox, assets=["B04"], groupby=None, repo=repo, progress=False)
    ours = stackcube.open_dataarray(repo, union.name, mask_and_scale=False)

    wanted = set(",".join(ours.id.values.tolist()).split(","))
    theirs = stackstac_on_union([d for d in twins if d["id"] in wanted], union, "B04", 32735)
    for t, item_id in enumerate(ours.id.values.tolist()):
        np.testing.assert_array_equal(ours.isel(time=t).values, theirs.sel(time=theirs.id == item_id).values[0])

    # one step per datetime: the first valid pixel in search order
    default = stackcube.build_cube(twins, bbox, assets=["B04"], repo=tmp_path / "one.icechunk", progress=False)
    merged = stackcube.open_dataarray(tmp_path / "one.icechunk", default.plan.unions[0].name, mask_and_scale=False)
    assert merged.sizes["time"] == 1
    first, second = (ours.isel(time=t).values for t in range(2))
    expected = np.where(first != 0, first, second)
    np.testing.assert_array_equal(merged.isel(time=0).values, expected)


@pytest.mark.corpus
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # stackstac 0.5 multiplies affines with *
def test_landsat_rows_of_one_path_are_one_array_and_the_other_zone_its_own(tmp_path) -> None:
    """Twins of real Landsat 9 C2 L2 items: rows 088-090 of path 089 (EPSG:32655, whole 30 m pixels apart) and
    row 087 in EPSG:32656. Downscaled 10x, which keeps their origins whole pixels apart."""

    from tests.conftest import CORPUS, require
    from tests.twins import corpus_items, twin_items

    require(CORPUS.is_dir(), "the corpus is missing")
    items = corpus_items("landsat-c2-l2-pc.json")
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=10, assets=["red"])
    plan = stackcube.plan_cube(twins, assets=["red"], groupby=None, progress=False)
    (union,) = plan.unions
    assert len(union.members) == 3
    assert plan.report().startswith("2 arrays: EPSG:32655 300 m, 3 grids placed by pixel offset")
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(twins, assets=["red"], groupby=None, repo=repo, progress=False)
    ours = stackcube.open_dataarray(repo, union.name, mask_and_scale=False)
    wanted = set(ours.id.values.tolist())
    in_zone = [d for d in twins if d["id"] in wanted]
    assert len(in_zone) == 3
    theirs = stackstac_on_union(in_zone, union, "red", 32655)
    assert sorted(ours.id.values.tolist()) == sorted(theirs.id.values.tolist())
    assert (ours.values != 0).mean() > 0.3  # the twins' pixels, not just fill
    for t, item_id in enumerate(ours.id.values.tolist()):
        np.testing.assert_array_equal(ours.isel(time=t).values, theirs.sel(time=theirs.id == item_id).values[0])


def _served_union(directory, base_url: str, repo):
    """The scenes written into ``directory`` (served at ``base_url``) built into a cube of one union."""
    directory.mkdir(exist_ok=True)
    cube = stackcube.build_cube(make_items(directory, base_url), repo=repo, progress=False)
    (union,) = cube.plan.unions
    return cube, union


@pytest.mark.network
def test_a_source_changed_between_two_merged_reads_fails_loudly(nginx, tmp_path) -> None:
    from stackcube.errors import SourceChangedError
    from tests.services.proxy import run_proxy
    from tests.twins import change_in_place

    directory = nginx.root / "union-changing"
    with run_proxy(nginx.url) as proxy:
        repo = tmp_path / "cube.icechunk"
        _, union = _served_union(directory, f"{proxy.url}/union-changing", repo)
        first = stackcube.open_dataarray(repo, union.name, mask_and_scale=False).isel(time=1).values
        expected, _ = expected_union(directory)
        np.testing.assert_array_equal(first, expected[1])
        changed = sorted(directory.glob("*.tif"))
        for path in changed:
            change_in_place(path)
        for chunks in (None, False):
            again = stackcube.open_dataarray(repo, union.name, mask_and_scale=False, chunks=chunks)
            with pytest.raises(SourceChangedError, match="changed since the cube was built"):
                _ = again.isel(time=1).values


@pytest.mark.network
def test_a_union_written_before_its_tile_table_reads_through_icechunk(nginx, tmp_path) -> None:
    """A cube written before the union tile table (or one that lost it) reads each member tile through Icechunk,
    one GET each, and a tile on the border of two dask blocks once."""
    from tests.services.proxy import run_proxy

    directory = nginx.root / "union-untabled"
    with run_proxy(nginx.url) as proxy:
        repo = tmp_path / "cube.icechunk"
        cube, union = _served_union(directory, f"{proxy.url}/union-untabled", repo)
        session = cube.repository.writable_session("main")
        root = zarr.open_group(session.store, mode="r+")
        assert set(root[union.name]["0"].array_keys()) == {"tiles", "sources"}
        del root[union.name]
        session.commit("a union without its tile table")
        members = {a.name: a for a in cube.plan.arrays}
        stored_tiles = sum(len(s) for m in union.members for s in tiles_of(members[m]).values())
        expected, _ = expected_union(directory)
        for chunks in (None, False, {"y": 100, "x": 100}):
            data = stackcube.open_dataarray(repo, union.name, mask_and_scale=False, chunks=chunks)
            proxy.reset()
            np.testing.assert_array_equal(data.values, expected)
            assert proxy.stats["GET"] == stored_tiles, chunks  # blocks of 100 px cut through 64-px tiles: each once


def test_a_union_on_s3_reads_merged_ranges_checked_against_the_etag(s3, tmp_path, use_settings) -> None:
    """Scenes on S3 (moto): the union's adjacent member tiles come with one ranged GET each run, through obstore
    with the environment's credentials and If-Match, and a scene replaced on S3 is refused."""
    from stackcube.errors import SourceChangedError
    from stackcube.settings import S3Settings
    from tests.services.proxy import run_proxy
    from tests.twins import upload_dir

    (tmp_path / "scenes").mkdir()
    items = make_items(tmp_path / "scenes", f"s3://{s3.sources_bucket}/union")
    upload_dir(s3.client(), tmp_path / "scenes", s3.sources_bucket, "union")
    with run_proxy(s3.endpoint) as proxy:
        use_settings(s3=S3Settings(proxy.url, "us-east-1", signed=True))
        repo = tmp_path / "cube.icechunk"
        cube = stackcube.build_cube(items, repo=repo, progress=False)
        (union,) = cube.plan.unions
        members = {a.name: a for a in cube.plan.arrays}
        by_source = {h: s for m in union.members for h, s in tiles_of(members[m]).items()}
        proxy.reset()
        values = stackcube.open_dataarray(repo, union.name, mask_and_scale=False).values
        expected, _ = expected_union(tmp_path / "scenes")
        np.testing.assert_array_equal(values, expected)
        assert proxy.stats["GET"] == sum(merged_gets(s) for s in by_source.values())
        s3.client().put_object(
            Bucket=s3.sources_bucket, Key="union/A.tif", Body=(tmp_path / "scenes" / "B.tif").read_bytes()
        )
        with pytest.raises(SourceChangedError, match=r"union/A\.tif changed since the cube was built"):
            _ = stackcube.open_dataarray(repo, union.name, mask_and_scale=False).isel(time=0).values


@pytest.mark.network
def test_a_tile_table_that_names_another_host_is_refused_before_any_request(nginx, tmp_path) -> None:
    """A cube made by someone else is untrusted: a union whose tile table was edited to name another host (whose
    files would read fine) is refused by every reader, with or without ``allow=``, and that host hears nothing."""
    from stackcube.errors import UntrustedSourceError
    from tests.services.proxy import run_proxy
    from tests.store.test_tiles import name_another_host

    directory = nginx.root / "union-tampered"
    with run_proxy(nginx.url) as real, run_proxy(nginx.url) as other:
        repo = tmp_path / "cube.icechunk"
        cube, union = _served_union(directory, f"{real.url}/union-tampered", repo)
        name_another_host(cube, union, lambda href: href.replace(real.url, other.url))
        other.reset()
        for allow in (None, [f"{real.url}/union-tampered/"]):
            for chunks in (None, False):
                data = stackcube.open_dataarray(repo, union.name, mask_and_scale=False, chunks=chunks, allow=allow)
                with pytest.raises(UntrustedSourceError, match="under none of the source prefixes the cube declares"):
                    _ = data.values
        assert other.stats["GET"] == 0
        assert other.stats["HEAD"] == 0


@pytest.mark.network
def test_opens_of_two_cubes_keep_tiles_within_one_budget_and_refetch_what_it_pushed_out(
    nginx, tmp_path, monkeypatch
) -> None:
    """Every open keeps the tiles it read in the process's one place, within one budget (not 64 MiB each): reading a
    second cube pushes the first one's tiles out, and the first one's next read fetches them again, counted at
    the server. Kept apart by open: the same rows of another cube are never served for this one's."""
    from stackcube import _share
    from tests.services.proxy import run_proxy

    recent = _share.Recent(_share.RECENT_BYTES)
    monkeypatch.setattr(_share, "RECENT", recent)  # this test's reads only, counted from nothing
    with run_proxy(nginx.url) as proxy:
        opened = {}
        for name in ("first", "second"):
            cube, union = _served_union(nginx.root / f"union-{name}", f"{proxy.url}/union-{name}", tmp_path / name)
            members = {a.name: a for a in cube.plan.arrays}
            merged = sum(merged_gets(s) for m in union.members for s in tiles_of(members[m]).values())
            opened[name] = (stackcube.open_dataarray(tmp_path / name, union.name, mask_and_scale=False), merged)
        expected, _ = expected_union(nginx.root / "union-first")
        first, merged = opened["first"]
        proxy.reset()
        np.testing.assert_array_equal(first.values, expected)
        assert proxy.stats["GET"] == merged
        one_cube = recent.size
        proxy.reset()
        np.testing.assert_array_equal(first.values, expected)  # kept: read again without a request
        assert proxy.stats["GET"] == 0
        recent.budget = one_cube  # room for one cube's tiles, shared by both opens
        second, merged_second = opened["second"]
        proxy.reset()
        np.testing.assert_array_equal(second.values, expected)  # the same scenes: the same rows, its own bytes
        assert proxy.stats["GET"] == merged_second
        assert recent.size <= one_cube
        proxy.reset()
        np.testing.assert_array_equal(first.values, expected)  # pushed out by the second cube's: fetched again
        assert proxy.stats["GET"] == merged
