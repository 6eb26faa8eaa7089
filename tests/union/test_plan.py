"""Union planning (union._plan): time steps per datetime, solar day or item; overview levels where the members
share a lattice; the stored description round-trips."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pystac
import pytest
import rasterio

import stackcube
from stackcube.union import UnionPlan
from tests.union.scenes import T0, expected_union, make_items, write_scene


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


def test_members_whose_scale_differs_within_a_time_step_make_no_union(tmp_path) -> None:
    items = make_items(tmp_path, tmp_path.as_posix())  # A and B share a datetime; C and D have their own
    for item, offset in zip(items, (0.0, -0.1, 0.0, -0.1), strict=True):
        item.assets["red"].extra_fields["raster:bands"] = [{"nodata": 0, "scale": 1e-4, "offset": offset}]
    plan = stackcube.plan_cube(items, progress=False)
    assert plan.unions == ()
    assert len(plan.arrays) == 4  # each stays readable on its own grid
    assert any("share a pixel lattice but not one scale and offset per time step; no union" in n for n in plan.notes)
    per_item = stackcube.plan_cube(items, groupby=None, progress=False)  # one step per item: one offset each
    (union,) = per_item.unions
    assert [row[0] for row in union.offset] == [0.0, -0.1, 0.0, -0.1]
    assert UnionPlan.from_dict(union.name, union.to_dict()) == union


def test_a_union_of_many_scenes_places_each_at_its_offset_in_search_order(tmp_path) -> None:
    """60 scenes on 60 tile grids (some on one datetime): the members in search order, each at its whole-pixel
    offset, a time step per datetime with its pieces in search order, a tile table row per member tile; what the
    plan held when grouping compared every grid with every other."""
    from stackcube.store.layout import union_tiles

    rng = np.random.default_rng(7)
    items, placed = [], []
    for i in range(60):
        a, b = (int(v) for v in rng.integers(0, 8, size=2))
        row, col = 64 * a + i, 64 * b + (7 * i) % 64  # a phase of its own modulo the 64 px tiles
        path = tmp_path / f"S{i:02d}.tif"
        write_scene(path, row=row, col=col, height=70, width=90, seed=i)
        item = pystac.Item(f"S{i:02d}", None, None, T0 + timedelta(days=i // 3), {})
        item.add_asset("red", pystac.Asset(path.as_posix(), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
        items.append(item)
        placed.append((row, col))
    plan = stackcube.plan_cube(items, progress=False)
    (union,) = plan.unions
    arrays = {a.name: a for a in plan.arrays}
    assert [arrays[m].items[0][0] for m in union.members] == [f"S{i:02d}" for i in range(60)]
    top, left = min(r for r, _ in placed), min(c for _, c in placed)
    assert union.offsets == tuple((r - top, c - left) for r, c in placed)
    assert union.shape == (20, 1, max(r for r, _ in placed) - top + 70, max(c for _, c in placed) - left + 90)
    assert union.steps == tuple(((3 * d, 0), (3 * d + 1, 0), (3 * d + 2, 0)) for d in range(20))
    days = [np.datetime64(T0.replace(tzinfo=None) + timedelta(days=d), "ns") for d in range(20)]
    np.testing.assert_array_equal(union.times, np.array(days))
    tiles = union_tiles([arrays[m] for m in union.members])
    table, hrefs = tiles["tiles"].values, tiles["sources"].values.tolist()
    assert [json.loads(s)["href"].rsplit("/", 1)[-1] for s in hrefs] == [f"S{i:02d}.tif" for i in range(60)]
    start = 0
    for m, name in enumerate(union.members):
        member = arrays[name]
        rows = table[start : start + member.source_index.size]
        start += member.source_index.size
        np.testing.assert_array_equal(rows[:, 0], np.where(member.source_index.ravel() >= 0, m, -1))
        np.testing.assert_array_equal(rows[:, 1], member.offsets.ravel())
        np.testing.assert_array_equal(rows[:, 2], member.lengths.ravel())
    assert start == len(table)
