"""Scenes on one pixel lattice but not one tile grid become one exact array on the union grid (issue: unions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine

import stackcube

T0 = datetime(2021, 5, 1, 10, 0, tzinfo=UTC)
RES = 30.0
X0, Y0 = 600_000.0, 5_000_010.0
NODATA = 0


def write_scene(path, *, row: int, col: int, height: int, width: int, seed: int, hole: bool = False) -> None:
    """A tiled (64 px) uint16 GeoTIFF whose origin is ``row``, ``col`` whole pixels from (X0, Y0)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 60_000, size=(1, height, width), dtype=np.uint16)
    if hole:
        data[:, height // 3 : height // 2, width // 2 :] = NODATA
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": Affine(RES, 0.0, X0 + col * RES, 0.0, -RES, Y0 - row * RES),
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
        "compress": "deflate",
        "nodata": NODATA,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)


SCENES = [
    # name, (row, col), (height, width), days after T0, hole
    ("A", (0, 0), (300, 280), 0, True),
    ("B", (100, 170), (260, 300), 0, False),  # same datetime as A, overlapping it
    ("C", (250, 40), (200, 220), 16, False),
    ("D", (7, 13), (150, 150), 32, False),
]


def make_items(directory, base_href: str) -> list[pystac.Item]:
    items = []
    for i, (name, (row, col), (height, width), days, hole) in enumerate(SCENES):
        write_scene(directory / f"{name}.tif", row=row, col=col, height=height, width=width, seed=i, hole=hole)
        item = pystac.Item(
            id=f"SCENE_{name}",
            geometry=None,
            bbox=None,
            datetime=T0 + timedelta(days=days),
            properties={"eo:cloud_cover": float(10 * (3 - i)), "proj:epsg": 32633},
        )
        item.add_asset(
            "red",
            pystac.Asset(
                href=f"{base_href}/{name}.tif",
                media_type=pystac.MediaType.GEOTIFF,
                roles=["data"],
                extra_fields={
                    "proj:epsg": 32633,
                    "proj:shape": [height, width],
                    "proj:transform": [RES, 0.0, X0 + col * RES, 0.0, -RES, Y0 - row * RES],
                },
            ),
        )
        items.append(item)
    return items


def expected_union(directory) -> tuple[np.ndarray, list[str]]:
    """What the union must hold, from rasterio reads: per datetime, the first valid pixel in search order."""
    height = max(r + h for _, (r, _), (h, _), _, _ in SCENES)
    width = max(c + w for _, (_, c), (_, w), _, _ in SCENES)
    days = sorted({d for *_, d, _ in SCENES})
    out = np.full((len(days), 1, height, width), NODATA, np.uint16)
    for t, day in enumerate(days):
        for name, (row, col), (h, w), d, _ in SCENES:
            if d != day:
                continue
            with rasterio.open(directory / f"{name}.tif") as ds:
                values = ds.read(1)
            window = out[t, 0, row : row + h, col : col + w]
            take = (window == NODATA) & (values != NODATA)
            window[take] = values[take]
    return out, [f"SCENE_{n}" for n, *_ in SCENES]


def stackstac_on_union(items: list, union, asset: str, epsg: int):
    """stackstac.stack of ``items`` onto a union's grid, nearest (pixel centres coincide: nothing is resampled)."""
    import stackstac
    from rasterio.enums import Resampling

    for d in items:
        d["properties"]["proj:epsg"] = epsg
    a, _, x0, _, e, y0 = union.transform
    _, _, height, width = union.shape
    return stackstac.stack(
        items,
        assets=[asset],
        epsg=epsg,
        resolution=abs(a),
        bounds=(x0, y0 + e * height, x0 + a * width, y0),
        snap_bounds=False,
        resampling=Resampling.nearest,
        dtype="uint16",
        fill_value=np.uint16(0),
        rescale=False,
    )


def test_pixel_aligned_scenes_become_one_exact_array(tmp_path) -> None:
    items = make_items(tmp_path, tmp_path.as_posix())
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(items, repo=repo, progress=False)
    assert len(cube.plan.groups) == 4  # no two scenes share a tile grid
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


@pytest.mark.network
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # stackstac 0.5 multiplies affines with *
def test_union_equals_stackstac_nearest_and_reads_each_tile_once(nginx, tmp_path) -> None:
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
        data = stackcube.open_dataarray(repo, union.name, mask_and_scale=False)
        proxy.reset()
        ours = data.values
        stored_tiles = sum(int((g.source_index >= 0).sum()) for g in cube.plan.groups)
        assert proxy.stats["GET"] == proxy.stats["requests"] == stored_tiles  # each tile once, no header
        a, _, x0, _, e, y0 = union.transform
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


def test_time_steps_per_datetime_per_item_or_per_solar_day(tmp_path) -> None:
    items = make_items(tmp_path, tmp_path.as_posix())
    items[1].datetime = items[0].datetime + timedelta(minutes=5)  # B: the same overpass, minutes later
    per_datetime = stackcube.plan_cube(items, progress=False).unions[0]
    assert per_datetime.shape[0] == 4
    solar = stackcube.plan_cube(items, groupby="solar_day", progress=False).unions[0]
    assert solar.shape[0] == 3
    assert solar.steps[0] == ((0, 0), (1, 0))  # A and B share the first step
    assert solar.time[0] == np.datetime64(items[0].datetime.replace(tzinfo=None), "ns")

    items[1].datetime = items[0].datetime  # same datetime again: groupby=None keeps them apart, like stackstac
    per_item = stackcube.plan_cube(items, groupby=None, progress=False).unions[0]
    assert per_item.shape[0] == 4
    assert per_item.time[0] == per_item.time[1]

    cube = stackcube.build_cube(items, groupby="solar_day", repo=tmp_path / "solar.icechunk", progress=False)
    data = stackcube.open_dataarray(tmp_path / "solar.icechunk", cube.plan.unions[0].name, mask_and_scale=False)
    expected, _ = expected_union(tmp_path)
    np.testing.assert_array_equal(data.values, expected)  # same pixels as one step per datetime when A, B share one
    with pytest.raises(ValueError, match="groupby must be"):
        stackcube.plan_cube(items, groupby="week", progress=False)


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


def test_overviews_of_a_union_where_the_members_share_a_lattice_there(tmp_path) -> None:
    from rasterio.enums import Resampling

    # even offsets: the members' 2x overviews still line up (offsets 50, 85 ...); 4x would be half pixels apart
    scenes = [("E", (0, 0)), ("F", (100, 170)), ("G", (250, 42))]
    items = []
    for i, (name, (row, col)) in enumerate(scenes):
        path = tmp_path / f"{name}.tif"
        write_scene(path, row=row, col=col, height=256, width=256, seed=10 + i)
        with rasterio.open(path, "r+") as ds:
            ds.build_overviews([2, 4], Resampling.nearest)
        item = pystac.Item(f"SCENE_{name}", None, None, T0 + timedelta(days=i), {})
        item.add_asset("red", pystac.Asset(path.as_posix(), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        items.append(item)
    cube = stackcube.build_cube(items, repo=tmp_path / "cube.icechunk", progress=False)
    (union,) = cube.plan.unions
    assert [v.shape for v in union.overviews] == [(3, 1, 253, 213)]  # level 2 would put G half a pixel off
    half = stackcube.open_dataarray(tmp_path / "cube.icechunk", union.name, level=1, mask_and_scale=False)
    assert half.sizes["y"] == 253
    for t, (name, (row, col)) in enumerate(scenes):
        with rasterio.open(tmp_path / f"{name}.tif", overview_level=0) as ds:
            expected = ds.read(1)
        r, c = row // 2, col // 2
        np.testing.assert_array_equal(half.values[t, 0, r : r + 128, c : c + 128], expected)
    tree = stackcube.open_cube(tmp_path / "cube.icechunk")
    assert sorted(tree[union.name].children) == ["0", "1"]
    with pytest.raises(ValueError, match=r"has levels 0, 1 \(0 is full resolution\), not 2"):
        stackcube.open_dataarray(tmp_path / "cube.icechunk", union.name, level=2)


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
